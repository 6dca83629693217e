"""The drift profile's share of tagging CPU, in one process (issue 22: at most 5%).

`tag_clauses` over labels/clauses.jsonl x4 (23,848 clauses; doc = d{i//40}) in batches of
512 with the drift profile and the override rules; the CPU time inside
``DriftProfiler.add``, building the profiler and the report is measured apart and set
against the rest. Steadier than ``bench_drift.py`` (two CLI runs compared) on a loaded
machine: both sides of the ratio come from the same run.

    python benchmarks/drift_share.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    from tagger.model import drift as D
    from tagger.model.inference import Tagger
    from tagger.tagging import batched, resolve_overrides, tag_clauses

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--copies", type=int, default=4)
    args = ap.parse_args()
    rows = [json.loads(line) for line in (ROOT / "labels" / "clauses.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    recs = [{"id": f"{k}-{i}", "doc": f"d{i // 40}", "text": r["text"]} for k in range(args.copies) for i, r in enumerate(rows)]
    tagger = Tagger(ROOT / "models" / "policy-tagger")
    ov = resolve_overrides(tagger)
    spent = [0.0]
    add = D.DriftProfiler.add

    def timed(self, *a, **k):
        c = time.process_time()
        try:
            return add(self, *a, **k)
        finally:
            spent[0] += time.process_time() - c

    D.DriftProfiler.add = timed
    shares = []
    for r in range(args.runs):
        tagger._drift_profiler = None  # built per run, as in a CLI run
        spent[0] = 0.0
        c0 = time.process_time()
        prof = D.DriftProfiler.for_tagger(tagger)
        acc = prof.new_accumulator()
        c1 = time.process_time()
        for batch in batched(recs, 512):
            tag_clauses(tagger, batch, overrides=ov, drift=(prof, acc))
        c2 = time.process_time()
        prof.report(acc)
        c3 = time.process_time()
        drift = (c1 - c0) + spent[0] + (c3 - c2)
        total = c3 - c0
        shares.append(drift / (total - drift))
        print(f"  run {r}: total {total:.2f} CPU-s, drift {drift:.3f} (build {c1 - c0:.3f}, add {spent[0]:.3f}, "
              f"report {c3 - c2:.3f}): +{shares[-1] * 100:.1f}%", flush=True)
    print(f"{len(recs)} clauses in process: the drift profile adds {statistics.median(shares) * 100:.1f}% (median of {len(shares)})")


if __name__ == "__main__":
    main()
