"""Label Studio round-trip: tasks with pre-annotations out, annotators' export back in.

Out: a labeling config (multi-choice groups for topic, measure and industry and a
single-choice group for kind, from labels/taxonomy.yaml, choices
shown in Chinese, results carrying the label ids through ``alias``) and tasks in Label
Studio's JSON import format, each with the model's ``predictions`` (``model_version``,
``score``) and, in ``data``, a hash of the clause's labels at export time.

In: Label Studio's JSON export (a list of tasks with ``annotations[].result[]`` of type
``choices``). Every task is validated before anything is written: a malformed export is
rejected whole, naming the first bad task. A clause whose labels changed since the
export is a *conflict*: reported, not overwritten (``--force`` overrides); so is a task
whose annotators disagree (``--force`` does not pick one: that is the annotators' call).
A task for a clause not yet labeled (a new document) *adds* a record, with the text, doc
and section the task carries, when every head is decided (kind included; an incomplete
one is reported, never half-imported); the document it came from is copied into the
corpus when the file the task names is still there with the same sha256. Every change
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

__all__ = ["labeling_config", "make_tasks", "prediction", "parse_export", "apply_import", "labels_hash", "ImportReport", "Annotation",
           "IMPORTED_FOLDER", "file_sha256"]

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
    lines = ["<View>", f'  <Text name="{TO_NAME}" value="$text"/>', '  <Header value="$section" size="6"/>',
             # Why the clause is in the queue and what it carries now: an annotator judging a
             # suspect needs both beside the proposal (pre-selected choices).
             '  <Header value="$why" size="6"/>', '  <Header value="$current" size="6"/>']
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


# Task data copied from a queue record when present: where a new clause's document is.
SOURCE_FIELDS = ("source_file", "source_sha256")


def _current_line(rec: dict) -> str:
    parts = [f"{h}: {', '.join(cur) or '—'}" for h in HEADS if (cur := as_labels(h, rec.get(h))) is not None]
    return "现标注 current — " + " | ".join(parts) if parts else "未标注 new clause (no labels yet)"


def prediction(labels: dict[str, list[str]], score: float, model_version: str) -> dict:
    """One Label Studio pre-annotation: the choices pre-selected for the annotator."""
    return {
        "model_version": model_version,
        # Label Studio sorts by this.
        "score": round(float(score), 4),
        "result": [_result(h, labels[h]) for h in HEADS if labels.get(h)],
    }


def make_tasks(records: list[dict], predictions: list | None, model_version: str, reasons: list[str] | None = None) -> list[dict]:
    """One task per record (``id``, ``text``, optional ``doc``/``section``/current labels).

    ``predictions``: the tagger's Prediction objects, or ready-made pre-annotations (dicts
    from :func:`prediction`, e.g. the out-of-fold proposal for a suspect)."""
    tasks = []
    for i, rec in enumerate(records):
        data = {
            "text": rec["text"],
            "clause_id": rec["id"],
            "doc": rec.get("doc", ""),
            "section": rec.get("section", ""),
            "labels_sha": labels_hash(rec),
            "why": (reasons[i] if reasons else "") or "",
            "current": _current_line(rec),
        }
        for h in HEADS:
            if (cur := as_labels(h, rec.get(h))) is not None:
                data[f"current_{h}"] = ", ".join(cur)
        data.update({f: rec[f] for f in SOURCE_FIELDS if rec.get(f)})
        task = {"data": data}
        if predictions is not None:
            p = predictions[i]
            if isinstance(p, dict):
                task["predictions"] = [p]
            else:
                chosen = [s for h in HEADS for lab, s in p.scores[h].items() if lab in p.labels[h]]
                # the least confident chosen tag
                task["predictions"] = [prediction(p.labels, min(chosen) if chosen else 0.0, model_version)]
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
    data: dict = field(default_factory=dict)  # the task's data: text, doc, section, source_file …
    decided: set = field(default_factory=set)  # heads with at least one choice in the annotation
    # Annotators of one task who chose differently: {who: labels}; empty if they agree.
    disagreement: dict = field(default_factory=dict)


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
        parsed = [(a, *_choices(name, a, tax)) for a in valid]
        # An annotation marked ground truth in Label Studio settles a disagreement.
        parsed = [x for x in parsed if x[0].get("ground_truth")] or parsed
        latest, labels, decided = max(parsed, key=lambda x: str(x[0].get("updated_at") or x[0].get("created_at") or ""))
        # Two annotators who chose differently are a question for a person, not for the clock.
        distinct = {json.dumps(lab, sort_keys=True) for _, lab, _ in parsed}
        disagreement = {}
        if len(distinct) > 1:
            for a, lab, _ in parsed:
                disagreement.setdefault(f"{_who(a.get('completed_by'))} (annotation {a.get('id', '?')})", lab)
        out.append(
            Annotation(
                task=name,
                clause_id=cid,
                labels=labels,
                by=_who(latest.get("completed_by")),
                at=str(latest.get("updated_at") or latest.get("created_at") or datetime.now(timezone.utc).isoformat()),
                labels_sha=str(task["data"].get("labels_sha", "")),
                data=task["data"],
                decided=decided,
                disagreement=disagreement,
            )
        )
    return out, skipped


def _choices(name: str, annotation: dict, tax: Taxonomy) -> tuple[dict[str, list[str]], set]:
    """(labels per head, heads with a choice) of one annotation; InvalidInput if malformed."""
    labels: dict[str, list[str]] = {h: [] for h in HEADS}  # a head with no choice means "none"
    decided = set()
    for r in annotation["result"]:
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
        if choices:
            decided.add(head)
    for head in SINGLE_HEADS:
        if len(labels[head]) > 1:
            raise InvalidInput(name, f"'{head}' takes one choice, got {labels[head]}")
    return labels, decided


IMPORTED_FOLDER = "imported"  # where imported source documents go, inside labels/documents/


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fmt(labels: dict[str, list[str]]) -> str:
    return " ".join(f"{h}={','.join(labels.get(h) or []) or '-'}" for h in HEADS)


@dataclass
class ImportReport:
    added: list[dict] = field(default_factory=list)  # {id, doc, labels}
    updated: list[dict] = field(default_factory=list)  # {id, before, after}
    unchanged: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # one line each: what, and what to do
    incomplete: list[str] = field(default_factory=list)  # new clauses that cannot be added as annotated
    documents: list[dict] = field(default_factory=list)  # {doc, action: copied|present|referenced, file, sha256, note}
    skipped: int = 0

    @property
    def refused(self) -> bool:
        return bool(self.conflicts or self.incomplete)


def _document_plan(doc: str, data: dict, documents_dir: Path | None) -> dict:
    """Where a new document's clauses come from: a file to copy into the corpus, one already
    there, or only a reference (doc id + sha256) when the file cannot be found as exported."""
    from ..errors import UnreadableDocument
    from ..ingest.documents import load_documents

    sha = str(data.get("source_sha256") or "")
    src = Path(str(data["source_file"])) if data.get("source_file") else None
    plan = {"doc": doc, "action": "referenced", "file": None, "sha256": sha or None, "source": str(src) if src else None, "note": ""}
    if documents_dir is None:
        plan["note"] = "no documents folder"
        return plan
    if src is None:
        plan["note"] = "the tasks name no source file (exported from a JSONL queue?)"
        return plan
    if src.resolve().is_relative_to(documents_dir.resolve()):
        # Queued from a file of the corpus itself: it is there already, a copy would make two.
        if src.is_file() and sha and file_sha256(src) == sha:
            return plan | {"action": "present", "file": src.resolve().relative_to(documents_dir.resolve()).as_posix()}
        plan["note"] = f"{src} changed since the export (sha256 differs)" if src.is_file() else f"{src} is not there any more"
        return plan
    dest = documents_dir / IMPORTED_FOLDER / src.name
    rel = dest.relative_to(documents_dir).as_posix()
    if dest.is_file():
        if sha and file_sha256(dest) == sha:
            return plan | {"action": "present", "file": rel}
        plan["note"] = f"{rel} already exists with other content; not replaced"
        return plan
    if not src.is_file():
        plan["note"] = f"{src} is not there any more"
        return plan
    if not sha or file_sha256(src) != sha:
        plan["note"] = f"{src} changed since the export (sha256 differs)"
        return plan
    try:
        ids = {d.id for d in load_documents(src)}
    except UnreadableDocument as exc:
        plan["note"] = str(exc)
        return plan
    if doc not in ids:
        # The copy must segment into the very clause ids being imported.
        plan["note"] = f"{src} reads as document(s) {sorted(ids)[:3]}, not {doc}"
        return plan
    return plan | {"action": "copied", "file": rel}


def _copy_document(plan: dict, documents_dir: Path) -> None:
    """Copy the source file (and its SOURCES.tsv row, which may set the doc id and year)."""
    import csv
    import io

    from ..ingest.documents import SOURCES_FILE

    src, dest = Path(plan["source"]), documents_dir / plan["file"]
    with atomic_writer(dest, "wb") as fh:
        fh.write(src.read_bytes())
    src_tsv = src.parent / SOURCES_FILE
    if not src_tsv.is_file():
        return
    with open(src_tsv, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        row = next((r for r in reader if (r.get("file") or "").strip() == src.name), None)
        header = reader.fieldnames or []
    if row is None:
        return
    dest_tsv = dest.parent / SOURCES_FILE
    old = dest_tsv.read_text(encoding="utf-8") if dest_tsv.is_file() else ""
    if old:
        header = old.splitlines()[0].split("\t")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, delimiter="\t", extrasaction="ignore", lineterminator="\n")
    if not old:
        w.writeheader()
    w.writerow({k: row.get(k, "") for k in header})
    with atomic_writer(dest_tsv) as fh:
        fh.write(old + ("" if not old or old.endswith("\n") else "\n") + buf.getvalue())


def apply_import(
    labels_file: Path,
    audit_file: Path,
    annotations: list[Annotation],
    source_file: str,
    force: bool = False,
    dry_run: bool = False,
    documents_dir: Path | None = None,
) -> ImportReport:
    """Apply what can be applied; conflicts and incomplete new clauses are reported and left
    out. Nothing is written with ``dry_run``; otherwise documents, audit and labels are each
    replaced in one rename (documents first: a rerun after a crash finds them present)."""
    records = list(read_jsonl(labels_file))
    by_id = {r["id"]: i for i, r in enumerate(records)}
    labeled_docs = {r.get("doc") for r in records}
    rep = ImportReport()
    audit = []
    plans: dict[str, dict] = {}
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for a in annotations:
        if a.disagreement:
            rep.conflicts.append(
                f"{a.clause_id} ({a.task}): annotators disagree: "
                + "; ".join(f"{who} wants {_fmt(lab)}" for who, lab in a.disagreement.items())
                + " — not applied; settle it in Label Studio (delete one annotation or mark one as ground truth) and export again"
            )
            continue
        source = f"annotator:label-studio:{a.by}"
        if a.clause_id not in by_id:
            text, doc = a.data.get("text"), a.data.get("doc")
            if not isinstance(text, str) or not text.strip() or not isinstance(doc, str) or not doc:
                rep.incomplete.append(f"{a.clause_id} ({a.task}): a new clause needs data.text and data.doc; not added")
                continue
            missing = [h for h in SINGLE_HEADS if h not in a.decided]
            if missing:
                rep.incomplete.append(
                    f"{a.clause_id} ({a.task}): new clause without {' or '.join(missing)} (topic, measure and industry may be "
                    f"left empty, {'/'.join(missing)} may not); not added — choose it in Label Studio and export again"
                )
                continue
            doc_sha = None
            if doc not in labeled_docs:
                plan = plans.get(doc) or plans.setdefault(doc, _document_plan(doc, a.data, documents_dir))
                doc_sha = plan["sha256"]
            rec = {
                "id": a.clause_id,
                "doc": doc,
                "section": a.data.get("section") or "",
                "text": text,
                **{h: from_labels(h, a.labels[h]) for h in HEADS},
                "source": source,
                "updated": a.at[:10],
            }
            if doc_sha:
                # The document the text was read from, for a clause whose file is not in the corpus.
                rec["document_sha256"] = doc_sha
            audit.append({"id": a.clause_id, "at": now, "by": source, "file": source_file, "previous": None, "new": a.labels, "doc": doc})
            by_id[a.clause_id] = len(records)
            records.append(rec)
            rep.added.append({"id": a.clause_id, "doc": doc, "labels": a.labels})
            continue
        rec = records[by_id[a.clause_id]]
        current = _current(rec)
        # A single-label head left without a choice keeps its current label (no "none" kind).
        a.labels = {h: (a.labels[h] or current[h] if h in SINGLE_HEADS else a.labels[h]) for h in HEADS}
        if current == a.labels:
            rep.unchanged.append(a.clause_id)
            continue
        exported_sha = a.data.get("labels_sha") if "labels_sha" in a.data else None
        if exported_sha is not None and labels_hash(rec) != exported_sha and not force:
            rep.conflicts.append(
                f"{a.clause_id} ({a.task}) changed since export (now {_fmt(current)} by {rec.get('source')}); import by {a.by} "
                f"wants {_fmt(a.labels)} — not applied (use --force to overwrite)"
            )
            continue
        audit.append(
            {
                "id": a.clause_id,
                "at": now,
                "by": source,
                "file": source_file,
                "previous": {**current, "source": rec.get("source"), "updated": rec.get("updated")},
                "new": a.labels,
            }
        )
        rec.update({h: from_labels(h, a.labels[h]) for h in HEADS if not (h in SINGLE_HEADS and not a.labels[h])})
        rec["source"] = source
        rec["updated"] = a.at[:10]
        rep.updated.append({"id": a.clause_id, "before": current, "after": a.labels})
    rep.documents = list(plans.values())
    if (rep.updated or rep.added) and not dry_run:
        for plan in rep.documents:
            if plan["action"] == "copied":
                _copy_document(plan, documents_dir)
        previous_audit = audit_file.read_text(encoding="utf-8") if audit_file.exists() else ""
        with atomic_writer(audit_file) as fh:
            fh.write(previous_audit + "".join(dumps(e) + "\n" for e in audit))
        with atomic_writer(labels_file) as fh:
            fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return rep
