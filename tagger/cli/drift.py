"""``tagger drift``: the drift of the documents in the analysts' store, by month and region.

Reads what ``tagger ingest`` and ``POST /v1/documents?store=true`` stored per document (OOV
rate, mean confidence, the verdict under the model that tagged it; tagger.model.drift) and
groups it: month of ingestion, region (down to the province or city: ``浙江省嘉兴市`` counts
as ``浙江省``), or publication year. A group's OOV rate weighs its documents by clauses;
its score (the long OOV rate, tagger.model.drift) likewise, and its verdict applies the
current bundle's thresholds to that score. A PNG chart is drawn
with matplotlib where installed (``pip install -e ".[train]"``), else the table says so.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

__all__ = ["add_drift", "group_documents"]

_TOP_REGION = re.compile(r"^.*?(?:自治区|省|市)")
GROUPINGS = ("month", "region", "year")


def _key(doc: dict, by: str) -> str:
    if by == "month":
        at = doc.get("ingested_at")
        return at.strftime("%Y-%m") if hasattr(at, "strftime") else str(at or "")[:7] or "(unknown)"
    if by == "year":
        return str(doc["year"]) if doc.get("year") else "(undated)"
    region = (doc.get("region") or "").strip()
    m = _TOP_REGION.match(region)
    return m.group(0) if m else region or "(none)"


def group_documents(docs: list[dict], by: str, thresholds: dict | None) -> list[dict]:
    """One row per group: documents, clauses, clause-weighted OOV rate and confidence,
    documents flagged (watch or retrain when stored), the group's verdict."""
    from ..model.drift import verdict_for

    groups: dict[str, list[dict]] = {}
    for d in docs:
        groups.setdefault(_key(d, by), []).append(d)
    rows = []
    for key in sorted(groups):
        ds = groups[key]
        measured = [d for d in ds if d.get("oov_rate") is not None and d.get("n_clauses")]
        n = sum(d["n_clauses"] for d in measured)
        oov = round(sum(d["oov_rate"] * d["n_clauses"] for d in measured) / n, 4) if n else None
        scored = [d for d in measured if d.get("drift_score") is not None]
        ns = sum(d["n_clauses"] for d in scored)
        score = round(sum(d["drift_score"] * d["n_clauses"] for d in scored) / ns, 4) if ns else None
        conf = [d for d in measured if d.get("mean_confidence") is not None]
        nc = sum(d["n_clauses"] for d in conf)
        rows.append({
            by: key,
            "documents": len(ds),
            "clauses": sum(d.get("n_clauses") or 0 for d in ds),
            "unmeasured": len(ds) - len(measured),
            "score": score,
            "oov_rate": oov,
            "mean_confidence": round(sum(d["mean_confidence"] * d["n_clauses"] for d in conf) / nc, 4) if nc else None,
            "flagged": sum(d.get("drift_verdict") in ("watch", "retrain") for d in ds),
            "verdict": verdict_for(score, thresholds) if score is not None else "not measured",
        })
    return rows


def _table(rows: list[dict], by: str) -> str:
    head = f"{by:<14} {'docs':>5} {'clauses':>8} {'score':>7} {'OOV rate':>9} {'confidence':>10} {'flagged':>8}  verdict"
    lines = [head, "-" * len(head)]
    for r in rows:
        oov = f"{r['oov_rate']:.3f}" if r["oov_rate"] is not None else "-"
        score = f"{r['score']:.3f}" if r["score"] is not None else "-"
        conf = f"{r['mean_confidence']:.3f}" if r["mean_confidence"] is not None else "-"
        # CJK region names are two columns wide in a terminal.
        name = str(r[by])
        pad = 14 - sum(2 if ord(ch) > 0x2E7F else 1 for ch in name)
        lines.append(f"{name}{' ' * max(pad, 1)} {r['documents']:>5} {r['clauses']:>8} {score:>7} {oov:>9} {conf:>10} {r['flagged']:>8}  {r['verdict']}")
    return "\n".join(lines)


def _chart(tables: dict[str, list[dict]], thresholds: dict | None, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    import warnings

    from matplotlib import font_manager

    cjk = [f for f in ("Noto Sans CJK SC", "WenQuanYi Zen Hei", "SimHei") if f in {x.name for x in font_manager.fontManager.ttflist}]
    plt.rcParams["font.sans-serif"] = cjk + ["DejaVu Sans"]
    if not cjk:
        print("tagger drift: no CJK font installed; Chinese group names are drawn as boxes (the table has them)", file=sys.stderr)
    fig, axes = plt.subplots(len(tables), 1, figsize=(10, 3.2 * len(tables)), squeeze=False)
    for ax, (by, rows) in zip(axes[:, 0], tables.items()):
        rows = [r for r in rows if r["score"] is not None]
        ax.bar(range(len(rows)), [r["score"] for r in rows], color="#4a78a8")
        ax.set_xticks(range(len(rows)), [str(r[by]) for r in rows], rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("drift score")
        ax.set_title(f"drift by {by}")
        if thresholds:
            ax.axhline(thresholds["watch"], color="#d9a400", linestyle="--", label="watch")
            ax.axhline(thresholds["retrain"], color="#c0392b", linestyle="--", label="retrain")
            ax.legend(fontsize=7)
    from ..jsonio import atomic_writer

    with warnings.catch_warnings(), atomic_writer(Path(path), mode="wb") as fh:
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")  # said once, above
        fig.tight_layout()
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)
    return True


def cmd_drift(args: argparse.Namespace) -> int:
    from ..config import get_settings
    from ..model.bundle import read_manifest
    from ..model.drift import load_reference, thresholds_of
    from ..store.db import Store

    st = get_settings()
    folder = Path(args.model or st.model_dir)
    ref, why = load_reference(folder, read_manifest(folder).raw)
    thresholds = thresholds_of(ref)
    docs = Store(args.database_url or st.db_url).documents()
    if not docs:
        print("tagger drift: the store holds no documents (tagger ingest adds them)", file=sys.stderr)
        return 1
    bys = args.by or ["month", "region"]
    tables = {by: group_documents(docs, by, thresholds) for by in bys}
    if args.json:
        print(json.dumps({"thresholds": thresholds, "reference": why or "ok", **tables}, ensure_ascii=False, indent=1))
    else:
        if thresholds:
            print(f"thresholds (score: long OOV rate, tagger/model/drift.py): watch {thresholds['watch']}, retrain {thresholds['retrain']}")
        else:
            print(f"no verdicts: {why}")
        for by, rows in tables.items():
            print()
            print(_table(rows, by))
    if args.chart:
        if _chart(tables, thresholds, Path(args.chart)):
            print(f"chart written to {args.chart}", file=sys.stderr)
        else:
            print("tagger drift: no chart (matplotlib is not installed: pip install matplotlib); table only", file=sys.stderr)
    return 0


def add_drift(sub) -> None:
    p = sub.add_parser("drift", help="drift of the stored documents against the model, by month and region")
    p.add_argument("--by", action="append", choices=GROUPINGS, help="grouping (repeatable; default: month and region)")
    p.add_argument("--chart", metavar="PNG", help="also draw the groups' OOV rates with the thresholds (matplotlib)")
    p.add_argument("--json", action="store_true", help="print the tables as JSON")
    p.add_argument("--database-url", help="default: TAGGER_DATABASE_URL, else tagger.db in the var folder")
    p.add_argument("--model", help="bundle folder whose thresholds apply (default: the configured bundle)")
    p.set_defaults(func=cmd_drift)
