"""`tagger ingest` of the committed corpus by two code trees, alternating (issue #20: the
ingest with evidence at least 5x faster than before the issue).

    git archive 6755070^ | tar -x -C /tmp/pre20 && (cd /tmp/pre20 && python setup.py build_ext --inplace -q)
    python benchmarks/ingest_ab.py --before /tmp/pre20 [--pairs 5]

Each tree runs its own ``tagger ingest`` (its default evidence, its own bundle) on the same
files, labels/documents of this checkout, into a fresh SQLite store; CPU is the child's.
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(tree: Path, files: list[str]) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "tagger.cli", "ingest", *files, "--database-url", f"sqlite:///{tmp}/x.db"]
        r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        p = subprocess.run(cmd, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True)
        wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
        if p.returncode:
            sys.exit(f"{tree}: tagger ingest exited {p.returncode}: {p.stderr.strip().splitlines()[-1:]}")
        with sqlite3.connect(f"{tmp}/x.db") as conn:
            n = conn.execute("select count(*) from clauses").fetchone()[0]
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, type=Path, help="the other tree (a checkout with its C kernels built)")
    ap.add_argument("--pairs", type=int, default=5)
    args = ap.parse_args()
    files = sorted(str(p) for p in (ROOT / "labels" / "documents").rglob("*") if p.is_file() and p.suffix in (".txt", ".html", ".htm", ".pdf", ".docx", ".md"))
    cpu: dict[str, list[float]] = {"before": [], "head": []}
    for _ in range(args.pairs):
        for name, tree in (("before", args.before), ("head", ROOT)):
            wall, c, n = run(tree, files)
            cpu[name].append(c)
            print(f"{name:6s} {n} clauses: {wall:.1f} s wall, {c:.1f} CPU-s", flush=True)
    a, b = statistics.median(cpu["before"]), statistics.median(cpu["head"])
    print(f"{len(files)} files, median of {args.pairs}: before {a:.1f} CPU-s, head {b:.1f} CPU-s: {a / b:.1f}x less CPU (target >= 5x)")


if __name__ == "__main__":
    main()
