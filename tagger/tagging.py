"""Clauses in, tagged records out — shared by the CLI and the API.

Output record (the contract other tools consume; keep it exact):
    id, doc, section, text, topic [ids], measure [ids], industry [ids],
    scores {head: {label: probability}}, model (bundle version)
Extra fields of an input record pass through after these.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

from .errors import InvalidInput, TaggerError
from .model import Tagger
from .taxonomy import HEADS

__all__ = ["OUTPUT_FIELDS", "tag_clauses", "iter_input_clauses", "batched", "validate_clause", "BATCH_SIZE"]

OUTPUT_FIELDS = ("id", "doc", "section", "text", *HEADS, "scores", "model")
BATCH_SIZE = 512


def _record(clause: dict, pred, version: str) -> dict:
    out = {
        "id": clause["id"],
        "doc": clause.get("doc", ""),
        "section": clause.get("section", ""),
        "text": clause["text"],
        **{h: pred.labels[h] for h in HEADS},
        "scores": pred.scores,
        "model": version,
    }
    for k, v in clause.items():
        if k not in out:
            out[k] = v
    return out


def tag_clauses(tagger: Tagger, clauses: list[dict]) -> list[dict]:
    """Tag a batch in one vectorisation pass; order is kept."""
    preds = tagger.predict([c["text"] for c in clauses])
    return [_record(c, p, tagger.version) for c, p in zip(clauses, preds)]


def validate_clause(rec: dict, where: str) -> dict:
    if not isinstance(rec.get("id"), (str, int)) or rec.get("id") == "":
        raise InvalidInput(where, "record needs a non-empty 'id'")
    if not isinstance(rec.get("text"), str):
        raise InvalidInput(where, "record needs a string 'text'")
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


def iter_input_clauses(path: Path, errors: list[str]) -> Iterator[dict]:
    """Clauses of one input: a ``.jsonl`` of {"id", "text", ...} or a document.

    Bad JSONL records are reported in ``errors`` and skipped; an unreadable document
    raises UnreadableDocument.
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
                except TaggerError as exc:
                    errors.append(str(exc))
                    continue
                yield rec
        return
    from .ingest import load_documents
    from .segment import segment

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

