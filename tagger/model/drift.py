"""Drift of incoming text against what the model learned from (issue 22).

Tagging already computes everything a drift profile needs: the clause's tokens and every
head's probabilities. This module turns them into counts that add up across batches and
worker processes (:class:`DriftAccumulator`), and compares the counts to the reference
profile training wrote into the bundle (``drift.json``, named in the manifest).

What is measured, per clause, document and batch:

* **OOV rate**: the share of a clause's *words* the model has no column for. A word is a
  token holding a CJK ideograph or a Latin letter (numbers and punctuation are not
  vocabulary; Private-Use-Area marker tokens U+E000-U+E0FF are never words). "Has a
  column" means the word is a unigram of the word TF-IDF block of the sparse tables.
* **label mix** per head (share of clauses carrying each label, and carrying none),
  **confidence**: per head the distance of the clause's closest decision to flipping
  (multi-label: min over labels of |p - threshold|; kind: top-1 minus top-2 probability),
  as a histogram; the clause's confidence is the mean over heads.
* **divergence** per head against the reference: Jensen-Shannon (base 2), of the label
  mix and of the confidence histogram. JS rather than the population stability index:
  it is bounded (0..1) and defined when a label or a bin is empty on one side (PSI needs
  an arbitrary epsilon there and explodes for the rare labels a small batch misses).
* **staleness score** = the *long OOV rate*: the share of words that have no column and
  are at least 3 characters long. The calibration (``training/drift_calibration.py``, numbers
  in the model card) compared it with the plain OOV rate, the share of words training never
  saw, and (with a model) confidence and divergence, for separating held-out documents of
  the training years from later ones: new policy vocabulary comes as long compounds
  (大模型, 低空经济, 新质生产力), while the short words without a column are mostly ones
  every era has and the vocabulary cut (min_df, max_features). It needs no labels and is
  stable on a single document. The verdict compares the score with two thresholds the
  calibration sets (stored in the reference file): ``ok`` below ``watch``, ``watch`` below
  ``retrain``, else ``retrain``.
* **unseen terms**: the most frequent out-of-vocabulary words, with counts, how often
  training saw them (the reference keeps the training counts of words without a
  column) and example clause ids: candidates for the user dictionary and for labeling.

A bundle without the reference file still gets OOV rates and confidence; its verdict is
``"no reference"`` and nothing fails.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import operator
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Sequence

import numpy as np

from ..taxonomy import HEADS, MULTI_HEADS, SINGLE_HEADS

__all__ = [
    "DRIFT_FILE", "REFERENCE_FORMAT", "MARGIN_BINS", "DEFAULT_THRESHOLDS", "NO_REFERENCE", "VERDICTS",
    "DriftProfiler", "DriftAccumulator", "js_divergence", "is_word", "load_reference", "verdict_for", "thresholds_of",
    "build_reference", "word_vocabulary",
]

DRIFT_FILE = "drift.json"
REFERENCE_FORMAT = 1
NO_REFERENCE = "no reference"
VERDICTS = ("ok", "watch", "retrain")
# Confidence histogram edges (the distance to the decision, 0..1; see DriftProfiler.add).
MARGIN_BINS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0000001)
# Used only when a reference file carries no calibrated thresholds (see the calibration
# section of the model card for where the shipped values come from).
DEFAULT_THRESHOLDS = {"watch": 0.20, "retrain": 0.28}
TOP_TERMS = 25
# The statistic the verdict reads (see the module docstring and the calibration).
SCORE = "long_oov_rate"
LONG_CHARS = 3
EXAMPLES_PER_TERM = 3

_PUA = re.compile("[\ue000-\ue0ff]")
_WORD, _OOV, _NEW, _LONG = 1, 2, 4, 8  # token kind flags (DriftProfiler._classify)
_SEP = "\x01"  # joins a batch's clauses: a token no tokeniser output holds (tagger.model.sparse)


class _Codes(dict):
    """token -> its code, filled on first sight: ``serial << 4 | kind`` (kind:
    DriftProfiler._classify; ``strings[serial]`` is the token), -1 for the batch separator.
    ``preset``: tokens numbered first, in order (the word block's unigrams)."""

    def __init__(self, classify, preset=()):
        super().__init__()
        self._classify = classify
        self._serial = itertools.count()
        self.strings: dict[int, str] = {}
        self[_SEP] = -1
        for tok in preset:
            self[tok]  # noqa: B018 - numbered by __missing__

    def __missing__(self, tok):
        serial = next(self._serial)  # atomic: a concurrent caller gets another number
        self.strings[serial] = tok
        code = self[tok] = (serial << 4) | self._classify(tok)
        return code


_WORDY = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fffA-Za-z]")


def is_word(token: str) -> bool:
    """A token that counts as vocabulary: a CJK ideograph or a Latin letter, no PUA marker."""
    return bool(_WORDY.search(token)) and not _PUA.search(token)


def js_divergence(p, q) -> float:
    """Jensen-Shannon divergence (base 2, 0..1) of two count or share vectors."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return 0.0
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a):
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / m[nz])).sum())

    return max(0.0, min(1.0, (kl(p) + kl(q)) / 2))


def verdict_for(score: float | None, thresholds: dict | None) -> str:
    if score is None or thresholds is None:
        return NO_REFERENCE
    if score >= thresholds["retrain"]:
        return "retrain"
    return "watch" if score >= thresholds["watch"] else "ok"


def load_reference(folder: Path, manifest_raw: dict) -> tuple[dict | None, str]:
    """(reference, why): the bundle's drift reference, or None and one line saying why.
    Never raises: a bundle without (or with a damaged) reference still serves."""
    spec = manifest_raw.get("drift")
    if not isinstance(spec, dict) or not isinstance(spec.get("file"), str):
        return None, "the bundle has no drift reference (tagger-train profile adds one)"
    path = Path(folder) / spec["file"]
    if path.name != spec["file"] or not path.is_file():
        return None, f"{spec['file']} is missing from the bundle"
    data = path.read_bytes()
    if spec.get("sha256") and hashlib.sha256(data).hexdigest() != spec["sha256"]:
        return None, f"{spec['file']} does not match the hash in the manifest"
    try:
        ref = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, f"{spec['file']} is not valid JSON"
    if not isinstance(ref, dict) or ref.get("format") != REFERENCE_FORMAT or not isinstance(ref.get("heads"), dict):
        return None, f"{spec['file']} is not a drift reference of format {REFERENCE_FORMAT}"
    return ref, ""


def thresholds_of(ref: dict | None) -> dict | None:
    """The reference's calibrated thresholds (the defaults where it has none); None without a reference."""
    if ref is None:
        return None
    th = ref.get("thresholds") or {}
    try:
        return {"watch": float(th["watch"]), "retrain": float(th["retrain"])}
    except (KeyError, TypeError, ValueError):
        return dict(DEFAULT_THRESHOLDS)


class DriftProfiler:
    """Per-clause drift statistics for one model: its vocabulary, labels and thresholds."""

    def __init__(self, vocabulary, labels: dict[str, list[str]], thresholds: dict[str, Sequence[float]],
                 reference: dict | None = None, why: str = ""):
        self.vocabulary = frozenset(vocabulary) if vocabulary is not None else None
        self.labels = {h: list(labels[h]) for h in HEADS}
        self.th = {h: np.asarray(thresholds[h], dtype=np.float32) for h in HEADS}
        self.reference = reference
        self.why = why
        self.thresholds = thresholds_of(reference)
        self._edges = np.asarray(MARGIN_BINS)
        # token -> code (kind and number, _Codes): a dict hit per token instead of two regex
        # searches (the profile must stay within 5% of tagging).
        self._train = (reference or {}).get("train_counts") or {}
        self._block = None  # the sparse word block whose unigram ids `add` may be given
        self._id_codes = None
        self._codes = _Codes(self._classify)

    def use_block(self, block) -> None:
        """Read tokens by the unigram ids of ``block`` (the serving sparse path's word block,
        whose unigrams with a column are this profiler's vocabulary): ``add(words=...)``
        then looks up only the tokens the block does not know."""
        unis = [None] * block.V
        for tok, i in block.ids.items():
            if 0 <= i < block.V:
                unis[i] = tok
        if any(u is None for u in unis):
            return
        self._codes = _Codes(self._classify, unis)
        self._id_codes = np.fromiter(map(self._codes.__getitem__, unis), dtype=np.int64, count=len(unis))
        self._block = block

    @classmethod
    def for_tagger(cls, tagger) -> "DriftProfiler":
        """The tagger's profiler, made once (reading drift.json costs ~10 ms) and kept on it."""
        cached = getattr(tagger, "_drift_profiler", None)
        if cached is None:
            cached = cls._build(tagger)
            tagger._drift_profiler = cached
        return cached

    @classmethod
    def pair(cls, tagger) -> tuple["DriftProfiler", "DriftAccumulator"]:
        """The tagger's profiler and a fresh accumulator: the ``drift`` argument of
        :func:`tagger.tagging.tag_clauses` for one job or batch."""
        profiler = cls.for_tagger(tagger)
        return profiler, profiler.new_accumulator()

    @classmethod
    def _build(cls, tagger) -> "DriftProfiler":
        from ..errors import InvalidBundle

        vocab = None
        sparse = tagger.sparse
        if sparse is None and isinstance(tagger.manifest.raw.get("serving"), dict):
            try:
                from .sparse import SparseModel

                sparse = SparseModel(tagger.folder, tagger.manifest.raw["serving"].get("files") or {})
            except InvalidBundle:
                sparse = None
        if sparse is not None:
            vocab = word_vocabulary(sparse)
        ref, why = load_reference(tagger.folder, tagger.manifest.raw)
        prof = cls(vocab, {h: tagger.manifest.labels(h) for h in HEADS},
                   {h: tagger.manifest.thresholds(h) for h in HEADS}, ref, why)
        # The serving path's word ids stand for the vocabulary test when its word block is
        # the whole vocabulary (one word block: word_vocabulary reads that block alone).
        if tagger.sparse is not None and sparse is tagger.sparse and sum(b.analyzer == "word" for b in sparse.blocks) == 1:
            prof.use_block(sparse.word_block)
        return prof

    def _classify(self, tok: str) -> int:
        """-1 the batch separator, 0 not a word, else _WORD plus the flags _OOV (no column),
        _NEW (training never saw it, not even below min_df / max_features) and _LONG (an
        unseen word of at least LONG_CHARS characters)."""
        if tok == _SEP:
            return -1
        if not is_word(tok):
            return 0
        if self.vocabulary is None or tok in self.vocabulary:
            return _WORD
        k = _WORD | _OOV
        if self._train and tok not in self._train:
            k |= _NEW
        if len(tok) >= LONG_CHARS:
            k |= _LONG
        return k

    def new_accumulator(self) -> "DriftAccumulator":
        return DriftAccumulator(widths={h: len(self.labels[h]) for h in HEADS})

    _MAX_CODES = 200_000  # distinct tokens remembered (then forgotten, all but the preset)

    def add(self, acc: "DriftAccumulator", ids: Sequence[str], docs: Sequence[str], token_texts: Sequence[str],
            probs: dict[str, np.ndarray], words: list | None = None) -> np.ndarray:
        """Add a batch (space-joined tokens, the gated probabilities per head) to ``acc``;
        returns each clause's OOV share (NaN for a clause without words). ``words``: what the
        sparse path kept while scoring these token strings (``keep["words"]`` of
        :meth:`SparseModel.probabilities`): the tokens are then not split and looked up again."""
        n = len(token_texts)
        if n == 0:
            return np.zeros(0)
        docs = docs if isinstance(docs, list) else list(docs)  # (list.count below)
        codes, vals = self._token_codes(token_texts, words)
        # Per token: its code (serial << 4 | kind; -1 the separator between clauses).
        kinds = np.where(vals < 0, 0, vals & 15)
        rows = np.cumsum(vals == -1)
        is_word = kinds > 0
        n_words = np.bincount(rows[is_word], minlength=n)
        oov_at = np.flatnonzero(kinds & _OOV)
        n_oov = np.bincount(rows[oov_at], minlength=n)
        n_new = np.bincount(rows[np.flatnonzero(kinds & _NEW)], minlength=n)
        n_long = np.bincount(rows[np.flatnonzero(kinds & _LONG)], minlength=n)
        if len(oov_at):
            self._note_terms(acc, codes, vals[oov_at] >> 4, rows[oov_at], ids, docs)
        margins = np.zeros((n, len(HEADS)))
        decided = {}
        for j, h in enumerate(HEADS):
            p = np.asarray(probs[h], dtype=np.float32)
            if h in SINGLE_HEADS:
                top = np.sort(p, axis=1)
                margins[:, j] = top[:, -1] - (top[:, -2] if p.shape[1] > 1 else 0.0)
                mask = np.zeros_like(p, dtype=bool)
                mask[np.arange(n), np.argmax(p, axis=1)] = True
            else:
                # Each label's distance to its threshold, as a share of the room on that side
                # (0 at the threshold, 1 at probability 0 or 1): raw distances would make a
                # label with threshold 0.075 look "unsure" for every clause that lacks it.
                t = self.th[h]
                mask = p >= t
                room = np.where(mask, np.maximum(1.0 - t, 1e-6), np.maximum(t, 1e-6))
                margins[:, j] = (np.abs(p - t) / room).min(axis=1)
            decided[h] = mask
        no_label = ~np.any([decided[h].any(axis=1) for h in MULTI_HEADS], axis=0)
        conf = margins.mean(axis=1)
        bins = np.clip(np.searchsorted(self._edges, margins, side="right") - 1, 0, len(MARGIN_BINS) - 2)
        acc.add_rows(docs, n_words, n_oov, n_new, n_long, conf, no_label, decided, bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n_words > 0, n_oov / np.maximum(n_words, 1), np.nan)

    def _token_codes(self, token_texts: Sequence[str], words: list | None) -> tuple[_Codes, np.ndarray]:
        """(the code table, the code of every token of the batch, clauses joined by the separator)."""
        codes = self._codes
        if len(codes) > self._MAX_CODES:
            # Forget all but the preset (numbered first, in the same order: _id_codes stay valid).
            preset = [codes.strings[i] for i in range(len(self._id_codes))] if self._id_codes is not None else ()
            codes = self._codes = _Codes(self._classify, preset)
        if words and self._block is not None and all(w[0] is self._block for w in words):
            # The ids the sparse path looked up: a code per known id from a table; only the
            # tokens the block does not know (-1) are looked up by string.
            parts = []
            for _, toks, uid in words:
                v = self._id_codes.take(uid, mode="wrap")
                v[uid == -2] = -1
                unk = np.flatnonzero(uid == -1)
                if len(unk):
                    got = operator.itemgetter(*unk.tolist())(toks)
                    v[unk] = np.fromiter(map(codes.__getitem__, got if len(unk) > 1 else (got,)), dtype=np.int64, count=len(unk))
                parts.append(v)
                parts.append(np.full(1, -1, dtype=np.int64))  # the separator between chunks
            return codes, np.concatenate(parts[:-1])
        # The whole batch in one pass, as the sparse path reads it: tokens of all clauses
        # joined with a separator token, codes by a C-level map over a dict.
        texts = [t.replace(_SEP, "\x02") if _SEP in t else t for t in token_texts]
        toks = (" " + _SEP + " ").join(texts).split(" ")
        return codes, np.fromiter(map(codes.__getitem__, toks), dtype=np.int64, count=len(toks))

    @staticmethod
    def _note_terms(acc: "DriftAccumulator", codes: _Codes, serials: np.ndarray, rows: np.ndarray,
                    ids: Sequence[str], docs: Sequence[str]) -> None:
        """The batch's unseen-word occurrences (token serial, clause row) counted per term in
        numpy; the accumulator gets each term once."""
        uniq, inv, counts = np.unique(serials, return_inverse=True, return_counts=True)
        inv = inv.reshape(-1)
        by_term = np.argsort(inv, kind="stable")  # occurrences grouped by term, in batch order
        end = np.cumsum(counts)
        first, last = by_term[end - counts], by_term[end - 1]
        strings = codes.strings
        terms = list(map(strings.__getitem__, uniq.tolist()))
        if docs.count(docs[0]) == len(docs):  # one document (ingest; a batch without doc ids)
            pairs = zip(terms, itertools.repeat(docs[0]))
        else:
            dlist = list(dict.fromkeys(docs))
            nd = len(dlist)
            d_of_row = np.fromiter(map({d: k for k, d in enumerate(dlist)}.__getitem__, docs), dtype=np.int64, count=len(docs))
            pk = np.unique(inv * nd + d_of_row[rows])
            pairs = zip(map(terms.__getitem__, (pk // nd).tolist()), map(dlist.__getitem__, (pk % nd).tolist()))
        acc.note_terms(terms, counts.tolist(), [ids[i] for i in rows[first].tolist()], [ids[i] for i in rows[last].tolist()], pairs)

    # -- reports -------------------------------------------------------------------------
    def _rate(self, n_words: int, n_oov: int) -> float | None:
        return round(n_oov / n_words, 4) if n_words and self.vocabulary is not None else None

    def _new_rate(self, n_words: int, n_new: int) -> float | None:
        return round(n_new / n_words, 4) if n_words and self.vocabulary is not None and self._train else None

    def _score(self, stats: dict) -> float | None:
        return stats.get(SCORE) if self.reference is not None else None

    def report(self, acc: "DriftAccumulator", top_terms: int = TOP_TERMS, documents: bool = True) -> dict:
        """The JSON report of a batch: totals, per-head mix and divergence, verdict, terms,
        and (``documents``) the same figures per document."""
        ref = self.reference
        out = {
            "clauses": acc.n,
            "words": int(acc.words),
            "oov_rate": self._rate(acc.words, acc.oov),
            "new_word_rate": self._new_rate(acc.words, acc.new),
            "long_oov_rate": self._rate(acc.words, acc.long),
            "mean_confidence": round(acc.conf_sum / acc.n, 4) if acc.n else None,
            "no_label_share": round(acc.no_label / acc.n, 4) if acc.n else None,
            "heads": {},
        }
        for h in HEADS:
            counts = acc.label_counts[h]
            entry = {
                "label_mix": {l: round(int(c) / acc.n, 4) for l, c in zip(self.labels[h], counts) if c} if acc.n else {},
                "confidence_histogram": {"edges": [round(e, 3) for e in MARGIN_BINS[:-1]] + [1.0], "counts": acc.hist[h].tolist()},
            }
            if h in MULTI_HEADS:
                entry["none_share"] = round(int(acc.none[h]) / acc.n, 4) if acc.n else None
            if ref is not None and h in ref["heads"] and acc.n:
                entry["js_label_mix"] = round(js_divergence(_mix_vector(counts, acc.none[h] if h in MULTI_HEADS else None),
                                                            _ref_mix(ref["heads"][h], self.labels[h], h in MULTI_HEADS)), 4)
                rh = ref["heads"][h].get("confidence_histogram")
                if isinstance(rh, list) and len(rh) == len(acc.hist[h]):
                    entry["js_confidence"] = round(js_divergence(acc.hist[h], rh), 4)
            out["heads"][h] = entry
        out["score"] = self._score(out)
        out["verdict"] = verdict_for(out["score"], self.thresholds)
        if ref is None:
            out["reference"] = self.why or "no reference"
        else:
            out["reference"] = {"score": SCORE, SCORE: ref.get(SCORE), "oov_rate": ref.get("oov_rate"), "thresholds": self.thresholds,
                                "clauses": ref.get("clauses")}
        out["unseen_terms"] = self.top_terms(acc, top_terms)
        if documents:
            out["documents"] = {d: self.document(s) for d, s in acc.docs.items()}
        return out

    def document(self, s: "DocStats") -> dict:
        out = {
            "clauses": s.n,
            "oov_rate": self._rate(s.words, s.oov),
            "new_word_rate": self._new_rate(s.words, s.new),
            "long_oov_rate": self._rate(s.words, s.long),
            "mean_confidence": round(s.conf_sum / s.n, 4) if s.n else None,
            "no_label_share": round(s.no_label / s.n, 4) if s.n else None,
        }
        out["score"] = self._score(out)
        out["verdict"] = verdict_for(out["score"], self.thresholds)
        return out

    def top_terms(self, acc: "DriftAccumulator", k: int = TOP_TERMS) -> list[dict]:
        train = (self.reference or {}).get("train_counts") or {}
        # Words training never saw come first (new vocabulary, not words the vocabulary cut),
        # then by how many documents use them (one document's names and typos sink) and count.
        n_docs = acc.term_documents()
        ranked = sorted(acc.terms.items(), key=lambda kv: (kv[0] in train, -n_docs[kv[0]], -kv[1], kv[0]))
        out = []
        for term, count in ranked:
            if len(out) >= k:
                break
            if count < 2:
                continue
            out.append({"term": term, "count": count, "documents": n_docs[term],
                        "train_count": int(train.get(term, 0)), "examples": acc.term_examples[term]})
        return out


def word_vocabulary(sparse) -> set[str]:
    """The words with a column of their own: the unigrams of the word TF-IDF block."""
    vocab: set[str] = set()
    for blk in sparse.blocks:
        if blk.analyzer != "word" or 1 not in blk.codes:
            continue
        with_col = set(np.asarray(blk.codes[1]).tolist())
        vocab.update(t for t, i in blk.ids.items() if i in with_col)
    return vocab


def _mix_vector(counts: np.ndarray, none: int | None) -> np.ndarray:
    return np.r_[counts, none] if none is not None else np.asarray(counts)


def _ref_mix(ref_head: dict, labels: list[str], multi: bool) -> np.ndarray:
    mix = ref_head.get("label_mix") or {}
    vec = [float(mix.get(l, 0.0)) for l in labels]
    if multi:
        vec.append(float(ref_head.get("none_share") or 0.0))
    return np.asarray(vec)


@dataclass
class DocStats:
    n: int = 0
    words: int = 0
    oov: int = 0
    new: int = 0
    long: int = 0
    conf_sum: float = 0.0
    no_label: int = 0

    def merge(self, o: "DocStats") -> None:
        self.n += o.n
        self.words += o.words
        self.oov += o.oov
        self.new += o.new
        self.long += o.long
        self.conf_sum += o.conf_sum
        self.no_label += o.no_label


@dataclass
class DriftAccumulator(DocStats):
    """Counts that add up: one per batch in a worker, merged in the parent (picklable).
    Its own totals are a :class:`DocStats` of the whole batch."""

    widths: dict[str, int] = field(default_factory=dict)
    label_counts: dict = field(default_factory=dict)
    none: dict = field(default_factory=dict)
    hist: dict = field(default_factory=dict)
    docs: dict = field(default_factory=dict)
    terms: Counter = field(default_factory=Counter)
    term_doc_pairs: set = field(default_factory=set)
    term_examples: dict = field(default_factory=dict)

    def __post_init__(self):
        for h, w in self.widths.items():
            self.label_counts.setdefault(h, np.zeros(w, dtype=np.int64))
            self.none.setdefault(h, 0)
            self.hist.setdefault(h, np.zeros(len(MARGIN_BINS) - 1, dtype=np.int64))

    def note_terms(self, terms: list[str], counts: list[int], first: list[str], last: list[str], pairs) -> None:
        """Unseen words of a batch, each term once: its occurrences, the ids of its first and
        last clause in the batch, and the batch's (term, document) pairs."""
        self.term_doc_pairs.update(pairs)
        # Examples: a term's first and last clause in this batch. (Most unseen words are
        # rare: the first branch, a new term, is the common one.)
        tc, examples = self.terms, self.term_examples
        count_of, examples_of = tc.get, examples.get
        for term, k, cid, other in zip(terms, counts, first, last):
            tc[term] = count_of(term, 0) + k
            ex = examples_of(term)
            if ex is None:
                examples[term] = [cid] if other == cid else [cid, other]
                continue
            if len(ex) < EXAMPLES_PER_TERM and cid not in ex:
                ex.append(cid)
            if other != cid and len(ex) < EXAMPLES_PER_TERM and other not in ex:
                ex.append(other)

    def term_documents(self) -> Counter:
        """term -> the number of documents it occurs in."""
        return Counter(t for t, _ in self.term_doc_pairs)

    def add_rows(self, docs, n_words, n_oov, n_new, n_long, conf, no_label, decided, bins) -> None:
        n = len(docs)
        self.n += n
        self.words += int(n_words.sum())
        self.oov += int(n_oov.sum())
        self.new += int(n_new.sum())
        self.long += int(n_long.sum())
        self.conf_sum += float(conf.sum())
        self.no_label += int(no_label.sum())
        for j, h in enumerate(HEADS):
            m = decided[h]
            self.label_counts[h] += m.sum(axis=0)
            if h in MULTI_HEADS:
                self.none[h] += int((~m.any(axis=1)).sum())
            self.hist[h] += np.bincount(bins[:, j], minlength=len(MARGIN_BINS) - 1)
        # Per document, a run of consecutive rows at a time (a batch holds one document or a
        # few in order): counts summed per run, confidences added one by one in row order
        # (the same float sums as row by row).
        if docs.count(docs[0]) == n:
            starts = [0]
        else:
            starts = [0] + [i for i in range(1, n) if docs[i] != docs[i - 1]]
        sums = np.add.reduceat(np.stack([n_words, n_oov, n_new, n_long, no_label.astype(np.int64)]), starts, axis=1).T.tolist()
        c = conf.tolist()
        for a, b, (w, o, u, lg, nl) in zip(starts, starts[1:] + [n], sums):
            d = docs[a]
            s = self.docs.get(d)
            if s is None:
                s = self.docs[d] = DocStats()
            s.n += b - a
            s.words += w
            s.oov += o
            s.new += u
            s.long += lg
            s.conf_sum = reduce(operator.add, c[a:b], s.conf_sum)
            s.no_label += nl

    def merge(self, o: "DriftAccumulator") -> "DriftAccumulator":
        super().merge(o)
        for h in self.widths:
            self.label_counts[h] += o.label_counts[h]
            self.none[h] += o.none[h]
            self.hist[h] += o.hist[h]
        for d, s in o.docs.items():
            mine = self.docs.get(d)
            if mine is None:
                mine = self.docs[d] = DocStats()
            mine.merge(s)
        # Terms: those new here are copied in bulk (dict operations in C: a batch from a
        # worker is mostly rare words); only the terms both sides hold are merged one by one.
        counts, theirs = self.terms, o.terms
        both = theirs.keys() & counts.keys()
        for t in both:
            counts[t] += theirs[t]
        new = theirs.keys() - both
        dict.update(counts, zip(new, map(theirs.__getitem__, new)))
        self.term_doc_pairs |= o.term_doc_pairs
        examples, theirs = self.term_examples, o.term_examples
        both = theirs.keys() & examples.keys()
        for t in both:
            ex = examples[t]
            if len(ex) < EXAMPLES_PER_TERM:
                ex.extend(x for x in theirs[t] if x not in ex)
                del ex[EXAMPLES_PER_TERM:]
        # (An accumulator's example lists hold no duplicates and at most EXAMPLES_PER_TERM ids.)
        new = theirs.keys() - both
        examples.update(zip(new, map(list, map(theirs.__getitem__, new))))
        return self


def build_reference(profiler: DriftProfiler, acc: DriftAccumulator, source: dict, thresholds: dict | None = None,
                    calibration: dict | None = None) -> dict:
    """The reference profile (``drift.json``) from the training clauses' accumulated counts."""
    rep = DriftProfiler(profiler.vocabulary, profiler.labels, {h: profiler.th[h].tolist() for h in HEADS}).report(acc, documents=False)
    heads = {}
    for h in HEADS:
        e = rep["heads"][h]
        heads[h] = {"label_mix": e["label_mix"], "confidence_histogram": acc.hist[h].tolist()}
        if h in MULTI_HEADS:
            heads[h]["none_share"] = e["none_share"]
    doc_rates = sorted(s.oov / s.words for s in acc.docs.values() if s.words)
    return {
        "format": REFERENCE_FORMAT,
        "source": source,
        "clauses": acc.n,
        "documents": len(acc.docs),
        "words": acc.words,
        "vocabulary_words": len(profiler.vocabulary or ()),
        "score": SCORE,
        "oov_rate": rep["oov_rate"],
        "long_oov_rate": rep["long_oov_rate"],
        "document_oov_rate_quantiles": {q: round(float(np.quantile(doc_rates, float(q))), 4) for q in ("0.5", "0.9", "0.95", "0.99")} if doc_rates else {},
        "mean_confidence": rep["mean_confidence"],
        "no_label_share": rep["no_label_share"],
        "margin_bins": list(MARGIN_BINS[:-1]) + [1.0],
        "heads": heads,
        "thresholds": dict(thresholds or DEFAULT_THRESHOLDS),
        "calibration": calibration or {},
        # Training counts of the words without a column: "seen N times in training" tells a
        # new term (0) from one the vocabulary cut (min_df, max_features).
        "train_counts": dict(sorted(acc.terms.items(), key=lambda kv: (-kv[1], kv[0]))),
    }
