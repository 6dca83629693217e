"""Labeled clauses -> arrays for training: texts, groups (documents), label matrices."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagger.annotate.labels import data_hash, trainable
from tagger.jsonio import read_jsonl
from tagger.taxonomy import HEADS, Taxonomy, as_labels

__all__ = ["Dataset", "load_dataset", "data_hash", "document_years"]


@dataclass
class Dataset:
    ids: list[str]
    docs: list[str]
    texts: list[str]
    Y: dict[str, np.ndarray]  # head -> (n, n_labels) 0/1
    taxonomy: Taxonomy
    hash: str

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, idx) -> "Dataset":
        idx = list(idx)
        return Dataset(
            ids=[self.ids[i] for i in idx],
            docs=[self.docs[i] for i in idx],
            texts=[self.texts[i] for i in idx],
            Y={h: y[idx] for h, y in self.Y.items()},
            taxonomy=self.taxonomy,
            hash=self.hash,
        )


def load_dataset(path: Path, taxonomy: Taxonomy) -> Dataset:
    # A record is learned from only when every head is labeled (a missing key: not yet).
    records = trainable(read_jsonl(path))
    Y = {}
    for head in HEADS:
        index = {l: j for j, l in enumerate(taxonomy.labels[head])}
        y = np.zeros((len(records), len(index)), dtype=np.int8)
        for i, r in enumerate(records):
            for l in as_labels(head, r[head]):
                y[i, index[l]] = 1
        Y[head] = y
    return Dataset(
        ids=[r["id"] for r in records],
        docs=[r["doc"] for r in records],
        texts=[r["text"] for r in records],
        Y=Y,
        taxonomy=taxonomy,
        hash=data_hash(records),
    )


def document_years(documents_dir: Path) -> dict[str, int | None]:
    """doc id -> publication year, from the ``SOURCES.tsv`` files of the corpus."""
    from tagger.ingest.corpus import iter_documents

    return {d.id: d.year for d in iter_documents([documents_dir])}
