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


def iter_input_clauses(path: Path, errors: list[str]) -> Iterator[dict]:
    """Clauses of one input: a ``.jsonl`` of {"id", "text", ...} or a document.

    Bad JSONL records are reported in ``errors`` and skipped; an unreadable document
    raises UnreadableDocument.
    """
    path = Path(path)
    if path.suffix.lower() == ".jsonl":
        if not path.is_file():
            raise InvalidInput(str(path), "no such file")
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    rec = json.loads(line)
                    if not isinstance(rec, dict):
                        raise InvalidInput(where, "expected a JSON object")
                    yield validate_clause(rec, where)
                except json.JSONDecodeError as exc:
                    errors.append(f"{where}: invalid JSON ({exc.msg})")
                except TaggerError as exc:
                    errors.append(str(exc))
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

