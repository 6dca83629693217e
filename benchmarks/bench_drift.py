"""CPU cost of the drift profile in `tagger tag` (issue 22: at most 5%).

Runs `tagger tag` on the same JSONL (the labeled clauses, 4 copies: 23,848 clauses) from
two source trees, alternating, and compares CPU seconds (user + system, worker processes
included): ``--before`` is a checkout without the drift profile (e.g. ``git worktree add
/tmp/base <commit before the drift branch>``, with the compiled kernels copied in), the
other tree is this one. The bundle is this tree's ``models/policy-tagger`` for both, with
a drift reference added to a temporary copy for the "after" runs.

    python benchmarks/bench_drift.py --before /tmp/base [--runs 3] [--workers 1] [--also NAME=TREE ...]

``--also``: more source trees run in the same alternation (e.g. the previous drift code),
each compared with ``--before``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_tagging import corpus_texts  # noqa: E402


def _cpu(cmd: list[str], tree: Path) -> float:
    """CPU seconds (user + system, worker processes included) of ``cmd`` run from ``tree``:
    ``python -m`` puts the working folder first on sys.path, so it must be the tree itself."""
    import resource

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, stdout=subprocess.DEVNULL)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, help="source tree without the drift profile")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--also", action="append", default=[], metavar="NAME=TREE", help="another tree to measure in the same runs")
    args = ap.parse_args()
    texts = corpus_texts()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "in.jsonl"
        with src.open("w", encoding="utf-8") as fh:
            for k in range(args.copies):
                for i, t in enumerate(texts):
                    fh.write(json.dumps({"id": f"{k}-{i}", "doc": f"d{i // 40}", "text": t}, ensure_ascii=False) + "\n")
        n = len(texts) * args.copies
        bundle = tmp / "policy-tagger"
        shutil.copytree(ROOT / "models" / "policy-tagger", bundle)
        subprocess.run([sys.executable, "-m", "training.cli", "profile", "--bundle", str(bundle)], check=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.DEVNULL)
        trees = {"before": Path(args.before).resolve()}
        for spec in args.also:
            name, _, tree = spec.partition("=")
            trees[name] = Path(tree).resolve()
        trees["after"] = ROOT
        cpu: dict[str, list[float]] = {name: [] for name in trees}
        for r in range(args.runs):
            for name, tree in trees.items():
                out = tmp / f"out-{name}-{r}.jsonl"
                c = _cpu([sys.executable, "-m", "tagger.cli", "tag", str(src), "-o", str(out), "-q", "--model", str(bundle),
                          "--workers", str(args.workers)], tree)
                cpu[name].append(c)
                print(f"run {r} {name:<6} {c:6.2f} CPU-s ({c / n * 1e3:.3f} CPU-ms/clause)", flush=True)
        b = statistics.median(cpu["before"])
        for name in trees:
            if name == "before":
                continue
            a = statistics.median(cpu[name])
            print(f"{n} clauses, {args.workers} worker(s), median of {args.runs}: before {b:.2f} CPU-s, {name} {a:.2f} CPU-s: "
                  f"{(a / b - 1) * 100:+.1f}% CPU for the drift profile")


if __name__ == "__main__":
    main()
