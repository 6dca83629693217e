"""The label contract (labels/taxonomy.yaml): heads and their label ids, in order.

An installed wheel carries its copy as tagger/_data/labels/taxonomy.yaml (tagger.locations).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from .errors import InvalidInput

__all__ = ["Taxonomy", "load_taxonomy", "HEADS"]

HEADS = ("topic", "measure", "industry")


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
