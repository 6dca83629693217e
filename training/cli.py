"""``tagger-train``: train (CV + bundle + MLflow), evaluate (CV report only), export."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tagger.config import get_settings
from tagger.errors import TaggerError

__all__ = ["main"]


def _cfg(args):
    from tagger.taxonomy import load_taxonomy

    from .models import FeatureConfig
    from .train import TrainConfig

    st = get_settings()
    return TrainConfig(
        labels_file=Path(args.labels or st.clauses_file),
        taxonomy=load_taxonomy(st.taxonomy_file),
        features=FeatureConfig(word_max_features=args.word_features, char_max_features=args.char_features),
        candidates=tuple(args.candidates.split(",")),
        n_splits=args.splits,
        seed=args.seed,
    )


def cmd_train(args) -> int:
    from .report import cv_table
    from .tracking import log_training
    from .train import train, write_bundle

    st = get_settings()
    t0 = time.time()
    result = train(_cfg(args), log=lambda m: print(m, file=sys.stderr))
    print(cv_table(result.manifest["cv"]))
    bundles = st.var_dir / "bundles"

    def writer(run_id: str) -> Path:
        return write_bundle(result, bundles / run_id)

    with tempfile.TemporaryDirectory() as plots:
        info = log_training(result, st, writer, Path(plots), log=lambda m: print(m, file=sys.stderr))
    result.manifest["mlflow"].update(registered_model="policy-tagger", registered_version=info["version"], champion=info["champion"])
    write_bundle(result, bundles / info["run_id"])
    from .evaluate import oof_document

    _write_oof(oof_document(result.dataset, result.cv), st.var_dir / "oof" / "latest.json")
    if info["diff"]:
        print("\nF1 change per label against the previous champion (v%s):" % info["previous_champion"])
        for h, d in info["diff"].items():
            print(f"  {h}: " + ", ".join(f"{k} {v:+.3f}" for k, v in d.items()))
    out = Path(args.out or st.model_dir)
    if info["champion"] or args.force_export:
        write_bundle(result, out)
        print(f"bundle {result.manifest['version']} exported to {out}", file=sys.stderr)
    else:
        print(f"bundle kept in {bundles / info['run_id']} (not champion; {out} unchanged)", file=sys.stderr)
    print(f"training run {info['run_id']} done in {time.time() - t0:.0f}s", file=sys.stderr)
    return 0


def _write_oof(doc: dict, path: Path) -> None:
    from tagger.jsonio import atomic_writer

    with atomic_writer(path) as fh:
        json.dump(doc, fh, ensure_ascii=False)
    print(f"out-of-fold probabilities written to {path}", file=sys.stderr)


def cmd_oof(args) -> int:
    """Grouped-CV out-of-fold probabilities for the current labels (confident learning input)."""
    from tagger.features import Tokenizer

    from .data import load_dataset
    from .evaluate import cross_validate, oof_document

    cfg = _cfg(args)
    ds = load_dataset(cfg.labels_file, cfg.taxonomy)
    ds.texts = Tokenizer(cfg.userdict, engine="jieba").batch(ds.texts)
    res = cross_validate(ds, cfg.features, kinds=cfg.candidates, n_splits=cfg.n_splits, seed=cfg.seed, log=lambda m: print(m, file=sys.stderr))
    _write_oof(oof_document(ds, res), Path(args.out or get_settings().var_dir / "oof" / "latest.json"))
    return 0


def cmd_evaluate(args) -> int:
    from tagger.features import Tokenizer

    from .data import load_dataset
    from .evaluate import cross_validate
    from .report import cv_table

    cfg = _cfg(args)
    ds = load_dataset(cfg.labels_file, cfg.taxonomy)
    ds.texts = Tokenizer(cfg.userdict, engine="jieba").batch(ds.texts)
    res = cross_validate(ds, cfg.features, kinds=cfg.candidates, n_splits=cfg.n_splits, seed=cfg.seed, log=lambda m: print(m, file=sys.stderr))
    report = res.report()
    report["n_splits"] = cfg.n_splits
    print(cv_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


def cmd_export(args) -> int:
    from tagger.jsonio import atomic_folder
    from tagger.model import Tagger, resolve_bundle_dir

    st = get_settings()
    src = resolve_bundle_dir(st.model_dir, args.uri)
    Tagger(src)  # refuse to export a bundle the runtime cannot load
    out = Path(args.out or st.model_dir)
    with atomic_folder(out) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
    print(f"exported {args.uri} to {out}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tagger-train", description="Train, evaluate and export the policy clause tagger.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, fn, hlp in (
        ("train", cmd_train, "grouped CV, final fit, ONNX bundle, MLflow run + registry"),
        ("evaluate", cmd_evaluate, "grouped-CV report only"),
        ("oof", cmd_oof, "out-of-fold probabilities for 'tagger review suspects'"),
    ):
        s = sub.add_parser(name, help=hlp)
        s.add_argument("--labels", help="labeled clauses (default: labels/clauses.jsonl)")
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--splits", type=int, default=5)
        s.add_argument("--candidates", default="logreg,lgbm")
        s.add_argument("--word-features", type=int, default=6000)
        s.add_argument("--char-features", type=int, default=6000)
        s.set_defaults(func=fn)
        if name == "train":
            s.add_argument("--out", help="bundle folder to export a champion to (default: models/policy-tagger)")
            s.add_argument("--force-export", action="store_true", help="export even if the run does not become champion")
        elif name == "oof":
            s.add_argument("-o", "--out", help="default: var/oof/latest.json")
        else:
            s.add_argument("--json", help="also write the report as JSON")
    e = sub.add_parser("export", help="copy a registered bundle into a folder")
    e.add_argument("--uri", default="models:/policy-tagger@champion")
    e.add_argument("--out", help="default: models/policy-tagger")
    e.set_defaults(func=cmd_export)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (TaggerError, ValueError, FileNotFoundError) as exc:
        print(f"tagger-train: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
