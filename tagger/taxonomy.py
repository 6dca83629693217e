"""The label contract (labels/taxonomy.yaml): heads and their label ids, in order.

An installed wheel carries its copy as tagger/_data/labels/taxonomy.yaml (tagger.locations).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from .errors import InvalidInput

__all__ = ["Taxonomy", "load_taxonomy", "HEADS", "MULTI_HEADS", "SINGLE_HEADS", "KIND", "as_labels", "from_labels"]

# Every head the model scores, in output order. topic, measure and industry are multi-label
# (a list of ids, possibly empty); kind is single-label (exactly one id, written as a string
# in records and labels). Inside the runtime every head's labels are a list, so that the
# code that walks heads (overrides, evidence, the store) needs no second path; a
# single-label head's list holds exactly one id.
MULTI_HEADS = ("topic", "measure", "industry")
SINGLE_HEADS = ("kind",)
KIND = "kind"
HEADS = MULTI_HEADS + SINGLE_HEADS


def as_labels(head: str, value) -> list[str] | None:
    """A record's value for ``head`` as a list of ids; None when it is missing or has the
    wrong type (a single-label head takes a string, a multi-label head a list)."""
    if head in SINGLE_HEADS:
        return [value] if isinstance(value, str) and value else None
    return list(value) if isinstance(value, list) else None


def from_labels(head: str, labels: list[str]):
    """The inverse of :func:`as_labels`: what a record stores for ``head``."""
    if head in SINGLE_HEADS:
        return labels[0] if labels else None
    return list(labels)


@dataclass(frozen=True)
class Taxonomy:
    version: int
    labels: dict[str, tuple[str, ...]]  # head -> label ids in contract order
    names: dict[str, dict[str, str]]  # head -> id -> Chinese name

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(self.labels)

    def validate(self, head: str, ids) -> list[str]:
        """The ids not in ``head`` (empty list if all are valid)."""
        valid = set(self.labels.get(head, ()))
        return [i for i in ids if i not in valid]

    def to_dict(self) -> dict:
        return {"version": self.version, "labels": {h: list(v) for h, v in self.labels.items()}}


@lru_cache(maxsize=8)
def _load(path: str, mtime: float) -> Taxonomy:
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    try:
        heads = raw["heads"]
        labels = {h: tuple(str(l["id"]) for l in heads[h]["labels"]) for h in HEADS}
        names = {h: {str(l["id"]): str(l.get("name", "")) for l in heads[h]["labels"]} for h in HEADS}
    except (KeyError, TypeError) as exc:
        raise InvalidInput(path, f"taxonomy must define heads {HEADS} with labels: missing {exc}") from None
    for h, ids in labels.items():
        if len(set(ids)) != len(ids):
            raise InvalidInput(path, f"duplicate label id in head '{h}'")
    return Taxonomy(version=int(raw.get("version", 1)), labels=labels, names=names)


def load_taxonomy(path: Path | None = None) -> Taxonomy:
    """The taxonomy at ``path``; by default ``Settings.taxonomy_file``, i.e.
    ``<labels_dir>/taxonomy.yaml``: the checkout's ``labels/``, the copy packaged in
    ``tagger/_data/labels/`` of an installed wheel, or ``TAGGER_LABELS_DIR``
    (rule: :mod:`tagger.locations`)."""
    if path is None:
        from .config import get_settings

        path = get_settings().taxonomy_file
    path = Path(path)
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        raise InvalidInput(str(path), "no taxonomy file here; set TAGGER_LABELS_DIR to a folder that holds taxonomy.yaml") from None
    return _load(str(path.resolve()), mtime)
