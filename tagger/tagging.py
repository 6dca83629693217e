"""Clauses in, tagged records out — shared by the CLI and the API.

Output record (the contract other tools consume; keep it exact):
    id, doc, section, text, topic [ids], measure [ids], industry [ids], kind (one id),
    scores {head: {label: probability}}, model (bundle version, "+ov.<sha8>" with override
    rules), provenance {head: {label: "model" | "override:<rule id>"}},
    evidence {head: {label: [{start, end, text, weight}]}} (only when asked for)
Extra fields of an input record pass through after these.

Override rules (labels/overrides.yaml, :mod:`tagger.model.overrides`) apply here, after the
model, so that every path (CLI, API, store, Spark) gets them; evidence: :mod:`tagger.model.evidence`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

from .errors import InvalidInput, TaggerError
from .model.inference import Tagger
from .model.overrides import Overrides, current_overrides
from .taxonomy import HEADS, MULTI_HEADS, from_labels

__all__ = ["OUTPUT_FIELDS", "tag_clauses", "model_version", "resolve_overrides", "iter_input_clauses", "batched", "validate_clause", "BATCH_SIZE"]

OUTPUT_FIELDS = ("id", "doc", "section", "text", *HEADS, "scores", "model")
BATCH_SIZE = 512


def _record(clause: dict, labels: dict, scores: dict, version: str, provenance: dict, evidence: dict | None) -> dict:
    out = {
        "id": clause["id"],
        "doc": clause.get("doc", ""),
        "section": clause.get("section", ""),
        "text": clause["text"],
        **{h: from_labels(h, labels[h]) for h in HEADS},
        "scores": scores,
        "model": version,
        "provenance": provenance,
    }
    if evidence is not None:
        out["evidence"] = evidence
    for k, v in clause.items():
        if k not in out:
            out[k] = v
    return out


def resolve_overrides(tagger: Tagger, overrides: "Overrides | Path | str | None" = None) -> Overrides:
    """The rules to apply: ``overrides`` itself, the file it names, or (None) the configured
    ``TAGGER_OVERRIDES_FILE``; files are re-read when they change, checked against the
    bundle's label ids."""
    if isinstance(overrides, Overrides):
        return overrides
    if overrides is None:
        from .config import get_settings

        overrides = get_settings().overrides_file
    return current_overrides(overrides, {h: tagger.manifest.labels(h) for h in HEADS})


def model_version(tagger: Tagger, overrides: "Overrides | Path | str | None" = None) -> str:
    """What ``tag_clauses`` writes as ``model`` now: the bundle version, + the rules' stamp."""
    return resolve_overrides(tagger, overrides).version(tagger.version)


def tag_clauses(tagger: Tagger, clauses: list[dict], evidence: bool = False, overrides: "Overrides | Path | str | None" = None,
                evidence_method: str | None = None, drift=None) -> list[dict]:
    """Tag a batch in one vectorisation pass; order is kept.

    Override rules apply after the model (``overrides``: see :func:`resolve_overrides`;
    read once per call, so one batch never mixes two versions of the file). With
    ``evidence`` every assigned label gets its spans: for the model's labels by
    ``evidence_method`` (:data:`tagger.model.evidence.METHODS`; default: the model's own
    contributions), for labels a rule added the rule's matches (weight 1.0).
    ``drift``: a (:class:`~tagger.model.drift.DriftProfiler`, accumulator) pair the batch is
    added to, from the same tokens and probabilities (the records themselves do not change)."""
    ov = resolve_overrides(tagger, overrides)
    version = ov.version(tagger.version)
    texts = [c["text"] for c in clauses]
    # Tokenised once: evidence and the drift profile read the token strings the scores came from,
    # and (sparse path) the word ids and features the scoring pass computed (``keep``).
    keep: dict = {}
    if evidence:
        from .model.evidence import DEFAULT_METHOD

        if (evidence_method or DEFAULT_METHOD) == "contributions":
            keep["entries"] = None  # ask for the features with their occurrences
    token_texts, probs, preds = tagger.predict_detailed(texts, keep)
    if drift is not None:
        profiler, acc = drift
        profiler.add(acc, [c["id"] for c in clauses], [c.get("doc", "") for c in clauses], token_texts, probs,
                     words=keep.get("words"))
    order = {h: tagger.manifest.labels(h) for h in HEADS}
    applied = [ov.apply(t, p.labels, order) for t, p in zip(texts, preds)]
    evid: list = [None] * len(clauses)
    if evidence:
        from .model.evidence import explain

        # Evidence for the tag heads; kind (one per clause, a sentence type) has none.
        model_labels = [{h: [lab for lab in labels[h] if prov[h][lab] == "model"] for h in MULTI_HEADS} for labels, prov, _ in applied]
        evid = explain(tagger, texts, model_labels, method=evidence_method, token_texts=token_texts, entries=keep.get("entries"))
        for i, (text, ev, (labels, _, added)) in enumerate(zip(texts, evid, applied)):
            for (h, lab), spans in added.items():
                ev[h][lab] = [{"start": s, "end": e, "text": text[s:e], "weight": 1.0} for s, e in spans]
            # keys in the record's label order
            evid[i] = {h: {lab: ev[h][lab] for lab in labels[h]} for h in MULTI_HEADS}
    return [_record(c, labels, p.scores, version, prov, ev) for c, p, (labels, prov, _), ev in zip(clauses, preds, applied, evid)]


def validate_clause(rec: dict, where: str) -> dict:
    if not isinstance(rec.get("id"), (str, int)) or rec.get("id") == "":
        raise InvalidInput(where, "record needs a non-empty 'id'")
    if not isinstance(rec.get("text"), str):
        raise InvalidInput(where, "record needs a string 'text'")
    from .ingest.textnorm import is_blank

    if is_blank(rec["text"]):
        # The API's rule too (tagger.api.schemas): nothing to tag is a bad record, not a record.
        raise InvalidInput(where, "record 'text' is empty (only white space, control or invisible characters)")
    rec = dict(rec)
    rec["id"] = str(rec["id"])
    return rec


def _parse_record(line: str, where: str) -> dict:
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(where, "not valid UTF-8") from None
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidInput(where, f"invalid JSON ({exc.msg})") from None
    except RecursionError:
        raise InvalidInput(where, "invalid JSON (nested too deeply)") from None
    if not isinstance(rec, dict):
        raise InvalidInput(where, "expected a JSON object")
    rec = validate_clause(rec, where)
    if "\\u" in line:
        # JSON may escape half a surrogate pair ("\ud800"): Python accepts it, but it
        # cannot be tokenised or written as UTF-8, so it would fail the whole batch later.
        try:
            json.dumps(rec, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInput(where, f"lone surrogate \\u{ord(exc.object[exc.start]):04x} is not valid Unicode") from None
    return rec


def iter_input_clauses(path: Path, errors: list[str], max_chars: tuple[int, str] | None = None) -> Iterator[dict]:
    """Clauses of one input: a ``.jsonl`` of {"id", "text", ...} or a document.

    Bad JSONL records are reported in ``errors`` and skipped; an unreadable document
    raises UnreadableDocument. ``max_chars``: (limit, why): a JSONL record whose text is
    longer is a bad record too (documents are cut into clauses by the segmenter).
    """
    path = Path(path)
    if path.suffix.lower() == ".jsonl":
        if not path.is_file():
            raise InvalidInput(str(path), "no such file")
        # surrogateescape: a line with bytes that are not UTF-8 is reported like any bad
        # record instead of ending the whole file.
        with open(path, encoding="utf-8-sig", errors="surrogateescape") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = _parse_record(line, f"{path}:{lineno}")
                    if max_chars is not None and len(rec["text"]) > max_chars[0]:
                        raise InvalidInput(f"{path}:{lineno}", f"text has {len(rec['text'])} characters; {max_chars[1]}")
                except TaggerError as exc:
                    errors.append(str(exc))
                    continue
                yield rec
        return
    from .ingest.documents import load_documents
    from .ingest.segment import segment

    for doc in load_documents(path):
        for c in segment(doc):
            yield c.record()


def batched(items: Iterable[dict], size: int = BATCH_SIZE) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for it in items:
        batch.append(it)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch

