"""Label Studio round-trip: tasks with pre-annotations out, annotators' export back in.

Out: a labeling config (multi-choice groups for topic, measure and industry and a
single-choice group for kind, from labels/taxonomy.yaml, choices
shown in Chinese, results carrying the label ids through ``alias``) and tasks in Label
Studio's JSON import format, each with the model's ``predictions`` (``model_version``,
``score``) and, in ``data``, a hash of the clause's labels at export time.

In: Label Studio's JSON export (a list of tasks with ``annotations[].result[]`` of type
``choices``). Every task is validated before anything is written: a malformed export is
rejected whole, naming the first bad task. A clause whose labels changed since the
export is a *conflict*: reported, not overwritten (``--force`` overrides). Every change
is appended to an audit trail with the previous labels and who changed them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from xml.sax.saxutils import quoteattr

from ..errors import InvalidInput
from ..jsonio import atomic_writer, dumps, read_jsonl
from ..taxonomy import HEADS, MULTI_HEADS, SINGLE_HEADS, Taxonomy, as_labels, from_labels

__all__ = ["labeling_config", "make_tasks", "parse_export", "apply_import", "labels_hash", "ImportReport", "Annotation"]

TO_NAME = "text"
HEAD_TITLES = {"topic": "主题 topic", "measure": "支持措施 measure", "industry": "产业 industry", "kind": "条款类型 kind (one)"}


def _current(rec: dict) -> dict[str, list[str]]:
    return {h: sorted(as_labels(h, rec.get(h)) or []) for h in HEADS}


def labels_hash(rec: dict | None) -> str:
    """Fingerprint of a record's labels at export time. The multi-label heads make the
    hash tasks were exported with before the kind head existed; a record's kind, once it
    has one, is appended, so adding or changing it also counts as a change since export."""
    if not rec or not all(as_labels(h, rec.get(h)) is not None for h in MULTI_HEADS):
        return ""
    parts = [sorted(rec[h]) for h in MULTI_HEADS] + [as_labels(h, rec.get(h)) for h in SINGLE_HEADS if rec.get(h) is not None]
    return hashlib.sha1(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()[:16]


def labeling_config(tax: Taxonomy) -> str:
    lines = ["<View>", f'  <Text name="{TO_NAME}" value="$text"/>', '  <Header value="$section" size="6"/>']
    for h in HEADS:
        lines.append(f"  <Header value={quoteattr(HEAD_TITLES[h])}/>")
        choice = "single-radio" if h in SINGLE_HEADS else "multiple"
        lines.append(f'  <Choices name="{h}" toName="{TO_NAME}" choice="{choice}" showInline="true">')
        for lab in tax.labels[h]:
            # value is what the annotator sees; alias is what the export carries: the id.
            lines.append(f"    <Choice value={quoteattr(f'{tax.names[h][lab]} {lab}')} alias={quoteattr(lab)}/>")
        lines.append("  </Choices>")
    lines.append("</View>")
    return "\n".join(lines) + "\n"


def _result(head: str, labels: list[str]) -> dict:
    return {"from_name": head, "to_name": TO_NAME, "type": "choices", "value": {"choices": list(labels)}}


def make_tasks(records: list[dict], predictions: list | None, model_version: str) -> list[dict]:
    """One task per record (``id``, ``text``, optional ``doc``/``section``/current labels)."""
    tasks = []
    for i, rec in enumerate(records):
        data = {
            "text": rec["text"],
            "clause_id": rec["id"],
            "doc": rec.get("doc", ""),
            "section": rec.get("section", ""),
            "labels_sha": labels_hash(rec),
        }
        for h in HEADS:
            if (cur := as_labels(h, rec.get(h))) is not None:
                data[f"current_{h}"] = ", ".join(cur)
        task = {"data": data}
        if predictions is not None:
            p = predictions[i]
            chosen = [s for h in HEADS for lab, s in p.scores[h].items() if lab in p.labels[h]]
            task["predictions"] = [
                {
                    "model_version": model_version,
                    # Label Studio sorts by this: the least confident chosen tag.
                    "score": round(min(chosen), 4) if chosen else 0.0,
                    "result": [_result(h, p.labels[h]) for h in HEADS if p.labels[h]],
                }
            ]
        tasks.append(task)
    return tasks


@dataclass
class Annotation:
    task: str  # how the task is named in messages
    clause_id: str
    labels: dict[str, list[str]]
    by: str
    at: str
    labels_sha: str


def _who(completed_by) -> str:
    if isinstance(completed_by, dict):
        return str(completed_by.get("email") or completed_by.get("id") or "unknown")
    return f"user-{completed_by}" if completed_by is not None else "unknown"


def parse_export(raw, tax: Taxonomy) -> tuple[list[Annotation], int]:
    """(annotations, tasks without a usable annotation). Raises InvalidInput on the first bad task."""
    if not isinstance(raw, list):
        raise InvalidInput("export", "expected a JSON list of tasks (Label Studio 'JSON' export)")
    out: list[Annotation] = []
    skipped = 0
    for k, task in enumerate(raw):
        name = f"task {task.get('id', k) if isinstance(task, dict) else k} (#{k + 1})"
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise InvalidInput(name, "not a task object with 'data'")
        cid = task["data"].get("clause_id")
        if not isinstance(cid, str) or not cid:
            raise InvalidInput(name, "data.clause_id is missing: was this task exported by 'tagger labels export'?")
        anns = task.get("annotations", [])
        if not isinstance(anns, list):
            raise InvalidInput(name, "'annotations' must be a list")
        valid = []
        for a in anns:
            if not isinstance(a, dict) or not isinstance(a.get("result", []), list):
                raise InvalidInput(name, "annotation without a 'result' list")
            if a.get("was_cancelled"):
                continue
            valid.append(a)
        if not valid:
            skipped += 1
            continue
        latest = max(valid, key=lambda a: str(a.get("updated_at") or a.get("created_at") or ""))
        labels: dict[str, list[str]] = {h: [] for h in HEADS}  # a head with no choice means "none"
        for r in latest["result"]:
            if not isinstance(r, dict):
                raise InvalidInput(name, "result item is not an object")
            head = r.get("from_name")
            if head not in HEADS:
                raise InvalidInput(name, f"result from unknown control '{head}' (expected {', '.join(HEADS)})")
            if r.get("type") != "choices":
                raise InvalidInput(name, f"result of type '{r.get('type')}' for '{head}' (expected 'choices')")
            choices = (r.get("value") or {}).get("choices")
            if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
                raise InvalidInput(name, f"'{head}' result has no list of choices")
            bad = tax.validate(head, choices)
            if bad:
                raise InvalidInput(name, f"unknown {head} label id(s) {bad}")
            labels[head] = sorted(set(labels[head]) | set(choices))
        for head in SINGLE_HEADS:
            if len(labels[head]) > 1:
                raise InvalidInput(name, f"'{head}' takes one choice, got {labels[head]}")
        out.append(
            Annotation(
                task=name,
                clause_id=cid,
                labels=labels,
                by=_who(latest.get("completed_by")),
                at=str(latest.get("updated_at") or latest.get("created_at") or datetime.now(timezone.utc).isoformat()),
                labels_sha=str(task["data"].get("labels_sha", "")),
            )
        )
    return out, skipped


@dataclass
class ImportReport:
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    conflicts: list[dict] = field(default_factory=list)
    skipped: int = 0


def apply_import(labels_file: Path, audit_file: Path, annotations: list[Annotation], source_file: str, force: bool = False, dry_run: bool = False) -> ImportReport:
    records = list(read_jsonl(labels_file))
    by_id = {r["id"]: i for i, r in enumerate(records)}
    for a in annotations:
        if a.clause_id not in by_id:
            raise InvalidInput(a.task, f"clause {a.clause_id} is not in {labels_file.name}")
    rep = ImportReport()
    audit = []
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for a in annotations:
        rec = records[by_id[a.clause_id]]
        current = _current(rec)
        # A single-label head left without a choice keeps its current label (no "none" kind).
        a.labels = {h: (a.labels[h] or current[h] if h in SINGLE_HEADS else a.labels[h]) for h in HEADS}
        if current == a.labels:
            rep.unchanged.append(a.clause_id)
            continue
        if a.labels_sha and labels_hash(rec) != a.labels_sha and not force:
            rep.conflicts.append({"id": a.clause_id, "task": a.task, "current": current, "imported": a.labels, "current_source": rec.get("source"), "by": a.by})
            continue
        audit.append(
            {
                "id": a.clause_id,
                "at": now,
                "by": f"annotator:label-studio:{a.by}",
                "file": source_file,
                "previous": {**current, "source": rec.get("source"), "updated": rec.get("updated")},
                "new": a.labels,
            }
        )
        rec.update({h: from_labels(h, a.labels[h]) for h in HEADS if not (h in SINGLE_HEADS and not a.labels[h])})
        rec["source"] = f"annotator:label-studio:{a.by}"
        rec["updated"] = a.at[:10]
        rep.updated.append(a.clause_id)
    if rep.updated and not dry_run:
        previous_audit = audit_file.read_text(encoding="utf-8") if audit_file.exists() else ""
        with atomic_writer(audit_file) as fh:
            fh.write(previous_audit + "".join(dumps(e) + "\n" for e in audit))
        with atomic_writer(labels_file) as fh:
            fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return rep
