"""Labeled clauses (labels/clauses.jsonl): validation against taxonomy and segmentation, stats.

A record: ``id doc section text topic measure industry kind source updated``. A missing head
means "not yet labeled"; an empty list means "none of this head"; ``kind`` is one id (a string). ``source`` says who
decided (``annotator:pass1``, ``annotator:adjudicated`` …): reviewed and proposed labels
never mix silently.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from ..ingest.corpus import segment_paths
from ..jsonio import read_jsonl
from ..taxonomy import HEADS, SINGLE_HEADS, Taxonomy, as_labels

__all__ = ["ValidationReport", "validate_labels", "label_stats", "REQUIRED_FIELDS", "data_hash", "trainable"]

REQUIRED_FIELDS = ("id", "doc", "text", *HEADS, "source")
# Sources that mean "a person decided"; anything else (e.g. "rules:proposal") is unreviewed.
REVIEWED_PREFIXES = ("annotator:",)


def trainable(records) -> list[dict]:
    """The records a model learns from: every head labeled (a missing key: not yet)."""
    return [r for r in records if all(as_labels(h, r.get(h)) is not None for h in HEADS)]


def data_hash(records: list[dict]) -> str:
    """Hash of what the model learns from: id, text and the labels of every head. Here, not
    in training/, because the runtime checks it too (an ``oof`` file made on other labels)."""
    h = hashlib.sha256()
    for r in sorted(records, key=lambda r: r["id"]):
        h.update(json.dumps([r["id"], r["text"], *[sorted(as_labels(k, r.get(k)) or []) for k in HEADS]], ensure_ascii=False).encode())
    return h.hexdigest()


@dataclass
class ValidationReport:
    n_records: int = 0
    n_clauses: int = 0
    # Records imported from a document that is not in the corpus (referenced by its sha256):
    # their text cannot be checked against a segmentation.
    n_external: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def add(self, msg: str) -> None:
        self.errors.append(msg)


def validate_labels(labels_file: Path, taxonomy: Taxonomy, documents: Path | None) -> ValidationReport:
    """Check every record; with ``documents``, also check against the current segmentation."""
    rep = ValidationReport()
    seen: dict[str, int] = {}
    records: dict[str, dict] = {}
    for lineno, rec in enumerate(read_jsonl(labels_file), 1):
        rep.n_records += 1
        where = f"{labels_file.name}:{lineno} ({rec.get('id', '?')})"
        missing = [f for f in REQUIRED_FIELDS if f not in rec]
        if missing:
            rep.add(f"{where}: missing field(s) {', '.join(missing)}")
        rid = rec.get("id")
        if rid in seen:
            rep.add(f"{where}: duplicate id, first at line {seen[rid]}")
        seen[rid] = lineno
        for head in HEADS:
            val = rec.get(head)
            if val is None:
                continue
            if as_labels(head, val) is None:
                rep.add(f"{where}: {head} must be " + ("one id (a string)" if head in SINGLE_HEADS else "a list"))
                continue
            val = as_labels(head, val)
            bad = taxonomy.validate(head, val)
            if bad:
                rep.add(f"{where}: unknown {head} id(s) {bad}")
            if len(set(val)) != len(val):
                rep.add(f"{where}: repeated {head} id")
        src = str(rec.get("source", ""))
        if src and not src.startswith(REVIEWED_PREFIXES):
            rep.add(f"{where}: source '{src}' is not a reviewed annotation (unreviewed proposals may not remain)")
        records[rid] = rec
    if documents is not None:
        current = {}
        for _, clauses in segment_paths([documents]):
            for c in clauses:
                current[c.id] = c
        rep.n_clauses = len(current)
        for cid, c in current.items():
            rec = records.get(cid)
            if rec is None:
                rep.add(f"clause {cid} ({c.doc}) is not labeled: {c.text[:40]}…")
            elif rec.get("text") != c.text:
                rep.add(f"clause {cid}: text differs from the current segmentation")
        corpus_docs = {c.doc for c in current.values()}
        for rid, rec in records.items():
            if rid not in current:
                if rec.get("document_sha256") and rec.get("doc") not in corpus_docs:
                    rep.n_external += 1
                    continue
                rep.add(f"record {rid} is not a clause of the current segmentation (stale id)")
    return rep


def label_stats(labels_file: Path, taxonomy: Taxonomy) -> dict:
    per_label = {h: Counter() for h in HEADS}
    none_of = Counter()
    unlabeled = Counter()  # head -> records without it (not yet labeled)
    per_doc: dict[str, Counter] = defaultdict(Counter)
    cooc = Counter()
    sources = Counter()
    n = 0
    for rec in read_jsonl(labels_file):
        n += 1
        sources[rec.get("source", "?")] += 1
        per_doc[rec["doc"]]["clauses"] += 1
        for head in HEADS:
            vals = as_labels(head, rec.get(head))
            if vals is None:
                unlabeled[head] += 1
                per_doc[rec["doc"]][f"unlabeled_{head}"] += 1
                vals = []
            per_label[head].update(vals)
            if not vals:
                none_of[head] += 1
            per_doc[rec["doc"]][head] += len(vals)
        for a, b in combinations(sorted(rec.get("measure") or []), 2):
            cooc[(a, b)] += 1
    complete = [d for d, c in per_doc.items() if not any(c[f"unlabeled_{h}"] for h in HEADS)]
    return {
        "clauses": n,
        "labels": {h: {l: per_label[h][l] for l in taxonomy.labels[h]} for h in HEADS},
        "none": {h: none_of[h] for h in HEADS if h not in SINGLE_HEADS},
        "unlabeled": {h: unlabeled[h] for h in HEADS},
        "documents_labeled_on_all_heads": f"{len(complete)} of {len(per_doc)}",
        "documents": {d: dict(c) for d, c in sorted(per_doc.items())},
        "measure_cooccurrence": {f"{a}+{b}": k for (a, b), k in cooc.most_common()},
        "sources": dict(sources),
    }
