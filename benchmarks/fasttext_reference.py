"""fastText as the reference a pipeline would pick instead: same input, same job, end to end.

    python benchmarks/fasttext_reference.py train [--dir var/bench/fasttext]
    python benchmarks/fasttext_reference.py tag IN.jsonl OUT.jsonl [--dir ...]

One supervised model per head (one-vs-all loss: a clause may carry several labels),
trained on ``labels/clauses.jsonl`` tokenised by the project's tokeniser (jieba-next with
the bundle's user dictionary), word bigrams. ``tag`` is what a pipeline would run: JSONL
in, tokenise, predict every head, JSONL out with labels and their probabilities, in one
process. Needs the ``bench`` extra (``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
HEADS = ("topic", "measure", "industry", "kind")
SINGLE = ("kind",)  # one label per clause: a softmax model, its top label
DEFAULT_DIR = ROOT / "var" / "bench" / "fasttext"


def _tokenizer():
    from tagger.model.features import Tokenizer

    return Tokenizer(ROOT / "models" / "policy-tagger" / "userdict.txt")


def train(folder: Path) -> None:
    import fasttext

    folder.mkdir(parents=True, exist_ok=True)
    tok = _tokenizer()
    recs = [json.loads(l) for l in (ROOT / "labels" / "clauses.jsonl").read_text(encoding="utf-8").splitlines() if l.strip()]
    t0 = time.perf_counter()
    for h in HEADS:
        path = folder / f"{h}.train.txt"
        with path.open("w", encoding="utf-8") as fh:
            for r in recs:
                labels = f"__label__{r[h]}" if h in SINGLE else (" ".join(f"__label__{l}" for l in r[h]) or "__label__none")
                fh.write(f"{labels} {tok(r['text'])}\n")
        model = fasttext.train_supervised(str(path), loss="softmax" if h in SINGLE else "ova", wordNgrams=2, epoch=25, lr=0.5, dim=50, minCount=1,
                                          bucket=200_000, thread=2, verbose=0, seed=0)
        model.save_model(str(folder / f"{h}.bin"))
    print(f"fastText trained on {len(recs)} clauses in {time.perf_counter() - t0:.1f}s -> {folder}", file=sys.stderr)


def tag(src: Path, dst: Path, folder: Path, threshold: float = 0.5) -> None:
    import fasttext

    models = {h: fasttext.load_model(str(folder / f"{h}.bin")) for h in HEADS}
    tok = _tokenizer()
    with src.open(encoding="utf-8") as fin, dst.open("w", encoding="utf-8") as fout:
        for line in fin:
            rec = json.loads(line)
            words = tok(rec["text"])
            out = {"id": rec["id"], "text": rec["text"]}
            scores = {}
            for h, m in models.items():
                # The low-level call: fasttext's Python wrapper breaks on numpy 2 (copy=False).
                pairs = m.f.predict(words, -1, 0.0, "strict")
                s = {lab[9:]: round(p, 6) for p, lab in pairs if lab != "__label__none"}
                out[h] = max(s, key=s.get) if h in SINGLE else [l for l, p in s.items() if p >= threshold]
                scores[h] = s
            out["scores"] = scores
            fout.write(json.dumps(out, ensure_ascii=False) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    g = sub.add_parser("tag")
    g.add_argument("src", type=Path)
    g.add_argument("dst", type=Path)
    g.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    a = ap.parse_args()
    if a.cmd == "train":
        train(a.dir)
    else:
        tag(a.src, a.dst, a.dir)


if __name__ == "__main__":
    main()
