"""The sparse serving path: the bundle's ONNX graph, computed n-gram by n-gram.

The graph (``model.onnx``) vectorises into a dense batch x 12,000 matrix before any head
runs, so its cost grows with the vocabulary. Here each clause costs what its own n-grams
cost: n-grams become integer codes (a table lookup per character, a dict lookup per
word), codes become columns by binary search (by hash in the compiled loops), the linear
heads are a gather-and-sum over those columns, and the tree heads run on the clause's
non-zero columns only, by
QuickScorer (Lucchese et al., SIGIR 2015): a node whose test fails rules out the leaves
on its "true" side, and the exit leaf is the leftmost leaf left standing.
With sparse input only the nodes of the clause's non-zero columns can fail (every
threshold a zero value could fail is folded into a per-tree start mask at compile time).
The artefacts (``sparse.npz``) are compiled out of ``model.onnx`` by
``training/sparse.py``; the outputs equal the graph's within 1e-5 (tested on 2,000 real
clauses, and re-checked at every load by the bundle self-test).

The n-gram lookup and the scoring loops run in C (``tagger/model/_kernels.c``, built at
install where a compiler exists): ~3.5x the numpy code below, which stays as the fallback
and is tested equal to both.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InvalidBundle

try:  # the compiled loops (tagger/model/_kernels.c), built at install where a C compiler exists
    from . import _kernels
except ImportError:  # pragma: no cover - depends on the install
    _kernels = None

__all__ = ["SparseModel", "SPARSE_FILE"]

SPARSE_FILE = "sparse.npz"
_SEP = "\x01"  # joins the clauses of a batch; checked at load to be in no vocabulary
_SUB = "\x02"  # stands in for a _SEP inside a clause: equally unknown, so the same features
_MAX_CP = 0x110000


class _Ids(dict):
    """token -> id; unknown tokens are -1 (``map(d.__getitem__)`` beats a generator of ``get``)."""

    def __missing__(self, key):
        return -1


class _Block:
    """One TF-IDF block (word or char n-grams) of the feature union."""

    def __init__(self, spec: dict, arrays, prefix: str):
        self.analyzer = spec["analyzer"]
        self.offset, self.width = spec["offset"], spec["width"]
        self.norm, self.max_n = spec["norm"], spec["max_n"]
        unis = [str(u) for u in arrays[f"{prefix}unigrams"]]
        if any(_SEP in u or _SUB in u for u in unis):
            raise ValueError("a vocabulary holds the batch separator character")
        self.V = len(unis)
        self.idf = arrays[f"{prefix}idf"].astype(np.float32)
        self.codes = {n: arrays[f"{prefix}codes{n}"] for n in range(1, self.max_n + 1) if f"{prefix}codes{n}" in arrays.files}
        self.cols = {n: arrays[f"{prefix}cols{n}"].astype(np.int64) for n in self.codes}
        if any((np.diff(t) <= 0).any() for t in self.codes.values()):
            raise ValueError("n-gram code tables must be sorted and unique")
        self._tables = None
        if self.analyzer == "char":
            if any(len(u) != 1 for u in unis):
                raise ValueError("char block unigrams must be single characters")
            self.table = np.full(_MAX_CP, -1, dtype=np.int64)
            self.table[[ord(u) for u in unis]] = np.arange(self.V)
        else:
            self.ids = _Ids((u, i) for i, u in enumerate(unis))
            self.ids[_SEP] = -2

    def unigram_ids(self, joined: str, toks: list[str] | None = None) -> np.ndarray:
        """Ids of the batch's tokens (word) or characters (char); -1 unknown, -2 separator.
        ``toks``: a word block's tokens, ``joined.split(" ")``, if the caller has them."""
        if self.analyzer == "char":
            cps = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
            ids = self.table[cps]
            ids[cps == 1] = -2
            return ids
        if toks is None:
            toks = joined.split(" ")
        return np.fromiter(map(self.ids.__getitem__, toks), dtype=np.int64, count=len(toks))

    def entries(self, ids: np.ndarray, rows: np.ndarray, compiled: bool = False, where: bool = False):
        """(row, column) of every n-gram occurrence in the vocabulary (in no particular order);
        with ``where`` also (position in ``ids`` of its first unigram, n), for evidence."""
        if compiled:
            ids = np.ascontiguousarray(ids, dtype=np.int64)
            size = len(ids) * len(self.codes)
            out_r, out_c = np.empty(size, np.int64), np.empty(size, np.int64)
            if self._tables is None:
                self._tables = [(n, *_hash_table(self.codes[n], self.cols[n])) for n in sorted(self.codes)]
            if not where:
                k = _kernels.ngrams(ids, self.V, self._tables, out_r, out_c)
                return out_r[:k], out_c[:k] + self.offset
            out_p, out_n = np.empty(size, np.int64), np.empty(size, np.int64)
            k = _kernels.ngrams(ids, self.V, self._tables, out_r, out_c, out_p, out_n)
            return out_r[:k], out_c[:k] + self.offset, out_p[:k], out_n[:k]
        out_r, out_c, out_p, out_n = [], [], [], []
        ok = ids >= 0
        code = np.where(ok, ids, 0)
        valid = ok.copy()
        for n in range(1, self.max_n + 1):
            if n > 1:
                m = len(ids) - n + 1
                if m <= 0:
                    break
                code = code[:m] * self.V + np.where(ok[n - 1 :], ids[n - 1 :], 0)
                valid = valid[:m] & ok[n - 1 :]
            if n not in self.codes:
                continue
            cand = code[valid]
            table = self.codes[n]
            pos = np.searchsorted(table, cand)
            pos[pos >= len(table)] = 0
            hit = table[pos] == cand
            out_r.append(rows[: len(valid)][valid][hit])
            out_c.append(self.cols[n][pos[hit]] + self.offset)
            if where:
                out_p.append(np.flatnonzero(valid)[hit])
                out_n.append(np.full(int(hit.sum()), n, np.int64))
        if not out_r:
            empty = np.zeros(0, np.int64)
            return (empty,) * (4 if where else 2)
        if where:
            return tuple(np.concatenate(x) for x in (out_r, out_c, out_p, out_n))
        return np.concatenate(out_r), np.concatenate(out_c)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _hash_table(codes: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Open addressing with linear probing, at most half full, as _kernels.c's lookup()
    reads it: slot = (code x golden ratio) >> (64 - bits), -1 marks an empty slot."""
    codes = np.asarray(codes, dtype=np.int64)
    if len(codes) and codes.min() < 0:
        raise ValueError("n-gram codes must be non-negative")
    bits = max(1, int(2 * len(codes)).bit_length())
    keys = np.full(1 << bits, -1, dtype=np.int64)
    vals = np.full(1 << bits, -1, dtype=np.int64)
    with np.errstate(over="ignore"):
        home = (codes.astype(np.uint64) * _GOLDEN) >> np.uint64(64 - bits)
    mask = (1 << bits) - 1
    for code, col, h in zip(codes.tolist(), np.asarray(cols, dtype=np.int64).tolist(), home.tolist()):
        while keys[h] >= 0:
            h = (h + 1) & mask
        keys[h], vals[h] = code, col
    return keys, vals


def sortable_float_keys(x: np.ndarray) -> np.ndarray:
    """float32 -> uint64 whose order is the float order (IEEE bit trick), in the low 32 bits.
    Shared with training/sparse.py, which sorts the tree tests by the same keys."""
    b = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return np.where((b >> 31) == 1, (~b) & 0xFFFFFFFF, b | 0x80000000).astype(np.uint64)


# Index of the lowest set bit of a 16-bit value (0 -> 16).
_LOW16 = np.array([16] + [(i & -i).bit_length() - 1 for i in range(1, 1 << 16)], dtype=np.int64)


class _Trees:
    """The tree members of every head, evaluated together on sparse input."""

    def __init__(self, arrays, n_features: int):
        feat = arrays["tree_node_feature"].astype(np.int64)
        thr = arrays["tree_node_threshold"].astype(np.float32)
        tree = arrays["tree_node_tree"].astype(np.int64)
        mask = arrays["tree_node_mask"].astype(np.uint32)
        self.leaf_values = np.ascontiguousarray(arrays["tree_leaf_values"], dtype=np.float32)
        n_leaves = arrays["tree_n_leaves"].astype(np.int64)
        slot = arrays["tree_slot"].astype(np.int64)
        T = len(slot)
        self.T = T
        if T and (np.diff(slot) < 0).any():
            raise ValueError("trees must be grouped by output slot")
        new_slot = np.r_[True, slot[1:] != slot[:-1]] if T else np.zeros(0, bool)
        self.slot_starts = np.flatnonzero(new_slot)
        # Output column of each tree: the index of its slot group (what reduceat sums into).
        self.group = (np.cumsum(new_slot) - 1).astype(np.int64)
        self.n_groups = len(self.slot_starts)
        # A zero feature value fails exactly the tests with a negative threshold: fold those
        # into the start masks, and keep the tests a positive value can fail for run time.
        start = ((np.uint64(1) << n_leaves.astype(np.uint64)) - np.uint64(1)).astype(np.uint32)
        neg = thr < 0
        np.bitwise_and.at(start, tree[neg], mask[neg])
        self.start = start
        # What the evidence tables (path_tables) are derived from, once, when first asked.
        self._all = (tree, mask, n_leaves, neg)
        self._paths = None
        keep = ~neg
        self.feat, self.tree, self.mask = feat[keep], tree[keep], mask[keep]
        self.thr = np.ascontiguousarray(thr[keep])
        self.keys = (self.feat.astype(np.uint64) << np.uint64(32)) | sortable_float_keys(self.thr)
        if (np.diff(self.keys.astype(np.float64)) < 0).any():
            raise ValueError("tree nodes must be sorted by (feature, threshold)")
        self.first = np.searchsorted(self.feat, np.arange(n_features + 1))
        self.has_nodes = self.first[1:] > self.first[:-1]
        self.wide = int(n_leaves.max()) > 16 if T else False
        if T and self.leaf_values.shape[1] < int(n_leaves.max()):
            raise ValueError("tree_leaf_values has fewer columns than the widest tree has leaves")

    def path_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per run-time test (the nodes a positive value can fail, in ``self.feat`` order):
        ``lo``, ``hi``, ``delta``; and per output slot ``base``. For evidence (Saabas-style
        path contributions, tagger/model/evidence.py).

        A node's value v(n) is what its subtree outputs for the empty clause (every feature
        0), not LightGBM's training-weighted mean (the graph carries no node covers). A
        failed test sends the clause right; v(right) - v(n) = ``delta`` is then credited to
        the test's column, if the clause's exit leaf lies in the right subtree, leaves
        ``lo`` <= leaf < ``hi`` (so the node is on its path). Along the path the credits
        sum to f(x) - f(empty clause) exactly, a passed test or an absent feature goes the
        way the empty clause goes (credit 0), so only the clause's own columns get any:
        every credit has a span. ``base`` = f(empty clause) summed per slot.

        Leaves are numbered left to right, and a node's mask clears its left subtree's
        leaves [a, m); its subtree [a, b) ends where the nearest node to its right whose
        left subtree contains it begins (b = min m' over m' > m, a' <= a; else all leaves).
        """
        if self._paths is not None:
            return self._paths
        tree, mask, n_leaves, neg = self._all
        one = np.uint64(1)
        K = n_leaves[tree].astype(np.uint64)
        left = (~mask.astype(np.uint64)) & ((one << K) - one)
        a = np.log2((left & (~left + one)).astype(np.float64)).astype(np.int64)
        m = a + np.bitwise_count(left).astype(np.int64)
        order = np.argsort(tree, kind="stable")
        counts = np.bincount(tree, minlength=self.T)
        slot_of = np.arange(len(tree)) - np.repeat(np.cumsum(counts) - counts, counts)
        width = max(int(counts.max()) if self.T else 0, 1)
        A = np.full((self.T, width), 1 << 40, np.int64)
        M = np.full((self.T, width), -1, np.int64)
        A[tree[order], slot_of], M[tree[order], slot_of] = a[order], m[order]
        cand = (M[:, None, :] > M[:, :, None]) & (A[:, None, :] <= A[:, :, None])
        Bm = np.where(cand, M[:, None, :], 1 << 40).min(axis=2)
        b = np.empty(len(tree), np.int64)
        b[order] = Bm[tree[order], slot_of]
        b = np.minimum(b, n_leaves[tree])

        def value(x, y):  # output of the subtree holding leaves [x, y) for the empty clause
            rng = ((one << y.astype(np.uint64)) - one) & ~((one << x.astype(np.uint64)) - one)
            alive = self.start[tree].astype(np.uint64) & rng
            leaf = np.log2((alive & (~alive + one)).astype(np.float64)).astype(np.int64)
            return self.leaf_values[tree, leaf].astype(np.float64)

        delta = (value(m, b) - value(a, b)).astype(np.float32)
        keep = ~neg
        first_leaf = _LOW16[self.start & 0xFFFF] if not self.wide else np.log2((self.start & (~self.start + np.uint32(1))).astype(np.float64)).astype(np.int64)
        base = self.leaf_values[np.arange(self.T), first_leaf]
        base = np.add.reduceat(base, self.slot_starts) if self.T else np.zeros(0, np.float32)
        self._paths = (np.ascontiguousarray(m[keep], dtype=np.int32), np.ascontiguousarray(b[keep], dtype=np.int32),
                       np.ascontiguousarray(delta[keep]), base.astype(np.float32))
        return self._paths

    def leaves(self, r: np.ndarray, c: np.ndarray, v: np.ndarray, B: int) -> np.ndarray:
        """Exit leaf of every tree (B x trees) for the non-zero entries (row r, column c, value v > 0)."""
        masks = np.broadcast_to(self.start, (B, self.T)).copy()
        sel = self.has_nodes[c]
        r, c, v = r[sel], c[sel], v[sel]
        # Tests x <= t fail for t < x: within a feature's nodes (sorted by threshold) that is
        # a prefix, found by one binary search on (feature, threshold) keys.
        hi = np.searchsorted(self.keys, (c.astype(np.uint64) << np.uint64(32)) | sortable_float_keys(v), side="left")
        lo = self.first[c]
        n = hi - lo
        total = int(n.sum())
        if total:
            rows = np.repeat(r, n)
            idx = np.arange(total) - np.repeat(np.cumsum(n) - n, n) + np.repeat(lo, n)
            np.bitwise_and.at(masks.reshape(-1), rows * self.T + self.tree[idx], self.mask[idx])
        if self.wide:
            low = masks & (~masks + np.uint32(1))
            return np.log2(low.astype(np.float64)).astype(np.int64)
        return _LOW16[masks & 0xFFFF]

    def failing(self, c: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(entry index, test index) of every run-time test the entries (column c, value v) fail."""
        sel = np.flatnonzero(self.has_nodes[c])
        c, v = c[sel], v[sel]
        hi = np.searchsorted(self.keys, (c.astype(np.uint64) << np.uint64(32)) | sortable_float_keys(v), side="left")
        lo = self.first[c]
        n = hi - lo
        total = int(n.sum())
        if not total:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        idx = np.arange(total) - np.repeat(np.cumsum(n) - n, n) + np.repeat(lo, n)
        return np.repeat(sel, n), idx

    def scores(self, r: np.ndarray, c: np.ndarray, v: np.ndarray, B: int) -> np.ndarray:
        """Raw scores (B x slots) for the non-zero entries (row r, column c, value v > 0)."""
        leaf = self.leaves(r, c, v, B)
        vals = self.leaf_values[np.arange(self.T)[None, :], leaf]
        return np.add.reduceat(vals, self.slot_starts, axis=1) if self.T else np.zeros((B, 0), np.float32)


class SparseModel:
    """Probabilities per head for a batch of tokenised clauses (space-joined tokens)."""

    def __init__(self, folder: Path, hashes: dict[str, str]):
        folder = Path(folder)
        # Set to False to run the numpy code where the compiled loops are built (parity tests).
        self.compiled = _kernels is not None
        path = folder / SPARSE_FILE
        if not path.is_file():
            raise InvalidBundle(str(folder), f"{SPARSE_FILE} is missing (the manifest declares the sparse serving path)")
        if hashlib.sha256(path.read_bytes()).hexdigest() != hashes.get(SPARSE_FILE):
            raise InvalidBundle(str(folder), f"{SPARSE_FILE} does not match the hash in the manifest")
        try:
            # allow_pickle=False: a bundle is data, never code.
            arrays = np.load(path, allow_pickle=False)
            spec = json.loads(str(arrays["spec"]))
            self.n_features = spec["n_features"]
            self.blocks = [_Block(b, arrays, f"b{i}_") for i, b in enumerate(spec["blocks"])]
            self.lexicon = spec["lexicon"]
            self.lex_matrix = arrays["lex_matrix"] if self.lexicon else None
            self.W = np.ascontiguousarray(arrays["linear_W"], dtype=np.float32)
            self.b = arrays["linear_b"].astype(np.float32)
            self.heads = spec["heads"]
            self.trees = _Trees(arrays, self.n_features)
        except (KeyError, ValueError, TypeError) as exc:
            raise InvalidBundle(str(folder), f"{SPARSE_FILE} is malformed ({type(exc).__name__}: {str(exc)[:200]})") from None
        if self.lexicon is not None:
            if not np.isin(self.lex_matrix, (0.0, 1.0)).all():
                raise InvalidBundle(str(folder), f"{SPARSE_FILE}: lexicon matrix entries must be 0 or 1")
            self._lex_bool = self.lex_matrix > 0
        # The lexicon flags sit right after the kept TF-IDF columns.
        self.lex_block = self.blocks[self.lexicon["block"]] if self.lexicon else None
        # The word block whose ids `probabilities(keep=...)` hands out (tagger.model.drift).
        self.word_block = next((b for b in self.blocks if b.analyzer == "word"), None)
        self.flag_offset = self.lex_block.offset if self.lexicon else self.n_features

    # Small batches keep the per-batch arrays in cache (measured: 256 beats 64 and 2048).
    CHUNK = 256

    def probabilities(self, token_texts: Sequence[str], keep: dict | None = None) -> dict[str, np.ndarray]:
        """Probabilities per head. ``keep``: a dict that receives, per chunk of :attr:`CHUNK`
        clauses, what this pass computed and other passes over the same clauses reuse:
        ``keep["words"]``, a list of (block, tokens, unigram ids) of the first word block (the
        drift profile's vocabulary test, :meth:`word_ids`); and, if ``keep`` holds the key
        ``"entries"`` when called, ``keep["entries"]``, a list of :meth:`_entries` results with
        the occurrences (``where``), which :meth:`explain` takes instead of extracting again."""
        if keep is None:
            parts = [self._chunk(token_texts[i : i + self.CHUNK]) for i in range(0, len(token_texts), self.CHUNK)]
        else:
            where = "entries" in keep
            words, entries = keep.setdefault("words", []), []
            parts = []
            for i in range(0, len(token_texts), self.CHUNK):
                chunk = token_texts[i : i + self.CHUNK]
                r, c, vals, occ = self._entries(chunk, where=where, words=words)
                if where:
                    entries.append((r, c, vals, occ))
                parts.append(self._score(r, c, vals, len(chunk)))
            if where:
                keep["entries"] = entries
        if not parts:
            return {h: np.zeros((0, self._width(h)), np.float32) for h in self.heads}
        if len(parts) == 1:
            return parts[0]
        return {h: np.concatenate([p[h] for p in parts]) for h in self.heads}

    def _width(self, head: str) -> int:
        return len(self.heads[head]["members"][0]["cols"])

    def _chunk(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        r, c, vals, _ = self._entries(texts)
        return self._score(r, c, vals, len(texts))

    def _entries(self, texts: Sequence[str], where: bool = False, words: list | None = None):
        """(row, column, value) of every non-zero feature, sorted by row then column (the
        lexicon flags after the n-grams); with ``where`` also the occurrences (below);
        ``words``: a list the word block's (block, tokens, ids) is appended to."""
        B = len(texts)
        r, c, counts, flags, occ = self._extract(texts, where, words)
        vals = counts.astype(np.float32)
        for blk in self.blocks:
            if blk is self.lex_block:
                continue
            inb = (c >= blk.offset) & (c < blk.offset + blk.width)
            v = vals[inb] * blk.idf[c[inb] - blk.offset]
            if blk.norm:
                sq = np.zeros(B, dtype=np.float32)
                np.add.at(sq, r[inb], v * v)
                v = v / np.sqrt(sq)[r[inb]]
            vals[inb] = v
        if flags is not None:
            # The lexicon flags join the sparse entries (each row's after its n-grams): a
            # BLAS product would sum in an order that depends on the batch size, and a
            # clause must score the same whatever it is batched with (Spark vs CLI).
            fr, fj = np.nonzero(flags)
            order = np.argsort(np.concatenate([r, fr]), kind="stable")
            r = np.concatenate([r, fr])[order]
            c = np.concatenate([c, fj + self.flag_offset])[order]
            vals = np.concatenate([vals, flags[fr, fj]])[order]
        return r, c, vals, occ

    def _extract(self, texts: Sequence[str], where: bool = False, words: list | None = None):
        """(row, column, count) of every n-gram, sorted by row then column, and the lexicon flags.

        With ``where``, also every occurrence behind them: (row, column, start, end), the
        character offsets in the row's token string of the n-gram (a word n-gram from the
        start of its first token to the end of its last) or of the lexicon word (column:
        its flag's)."""
        B = len(texts)
        texts = [t.replace(_SEP, _SUB) if _SEP in t else t for t in texts]
        # Words are split on spaces, so the separator is a token of its own; characters
        # read the space-joined string itself (spaces included), so no extra spaces there.
        joined = {"word": (" " + _SEP + " ").join(texts), "char": _SEP.join(texts)}
        rows_all, cols_all, lex_rc = [], [], None
        occ = []
        # The word tokens, split once: the word blocks' ids, evidence's offsets, the drift profile.
        toks = joined["word"].split(" ") if where or words is not None or any(b.analyzer == "word" for b in self.blocks) else None
        if where:
            lens = np.fromiter(map(len, texts), dtype=np.int64, count=B)
            char_start = np.cumsum(lens + 1) - (lens + 1)  # of each row in joined["char"]
            word_start = np.cumsum(lens + 3) - (lens + 3)  # in joined["word"]
            tl = np.fromiter(map(len, toks), dtype=np.int64, count=len(toks))
            tok_start = np.cumsum(tl + 1) - (tl + 1)
        for blk in self.blocks:
            ids = blk.unigram_ids(joined[blk.analyzer], toks)
            if words is not None and blk is self.word_block:
                words.append((blk, toks, ids))
            rows = None if self.compiled else np.cumsum(ids == -2)
            if where:
                r, c, p, n = blk.entries(ids, rows, self.compiled, where=True)
                if blk.analyzer == "char":
                    s0 = p - char_start[r]
                    e0 = s0 + n
                else:
                    s0 = tok_start[p] - word_start[r]
                    e0 = tok_start[p + n - 1] + tl[p + n - 1] - word_start[r]
                if blk is self.lex_block:
                    o, lab = np.nonzero(self._lex_bool[c[:len(c)] - blk.offset])
                    occ.append((r[o], lab + self.flag_offset, s0[o], e0[o]))
                else:
                    occ.append((r, c, s0, e0))
            else:
                r, c = blk.entries(ids, rows, self.compiled)
            if blk is self.lex_block:
                lex_rc = (r, c - blk.offset)
                continue
            rows_all.append(r)
            cols_all.append(c)
        r = np.concatenate(rows_all)
        c = np.concatenate(cols_all)
        if self.compiled and hasattr(_kernels, "count"):  # (an extension built before count() existed: numpy)
            # Term counts per (row, column), sorted: the same as np.unique below, in O(n).
            n = len(r)
            rr, cc, counts = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
            k = _kernels.count(np.ascontiguousarray(r, dtype=np.int64), np.ascontiguousarray(c, dtype=np.int64), B, self.n_features,
                               rr, cc, counts)
            flags = self._flags(lex_rc, B)
            occ = tuple(np.concatenate(x) for x in zip(*occ)) if where else None
            return rr[:k], cc[:k], counts[:k], flags, occ
        # Term counts per (row, column): one sort of the batch's occurrences.
        keys, counts = np.unique(r * self.n_features + c, return_counts=True)
        flags = self._flags(lex_rc, B)
        occ = tuple(np.concatenate(x) for x in zip(*occ)) if where else None
        return keys // self.n_features, keys % self.n_features, counts, flags, occ

    def _flags(self, lex_rc, B: int):
        """The lexicon flags (B x labels) from the lexicon block's (row, column) entries, or None."""
        if lex_rc is None:
            return None
        # min(counts @ M, 1) for a 0/1 matrix M: a flag is set when any of its words
        # occurs. Done by indexing, not a matrix product: BLAS threads spin-wait and
        # doubled the CPU time of a tagging process (measured).
        flags = np.zeros((B, self.lex_matrix.shape[1]), dtype=np.float32)
        occ_, lab = np.nonzero(self._lex_bool[lex_rc[1]])
        flags[lex_rc[0][occ_], lab] = 1.0
        return flags

    def _score(self, r, c, vals, B: int) -> dict[str, np.ndarray]:
        if self.compiled:
            t = self.trees
            logits = np.empty((B, self.W.shape[1]), dtype=np.float32)
            raw = np.empty((B, t.n_groups), dtype=np.float32)
            _kernels.score(
                np.ascontiguousarray(r, dtype=np.int64), np.ascontiguousarray(c, dtype=np.int64),
                np.ascontiguousarray(vals, dtype=np.float32), self.W, self.b, t.first, t.thr, t.tree, t.mask,
                t.start, t.leaf_values, t.group, logits, raw,
            )
        else:
            # Linear members: logit = b + sum over the clause's columns of value x weight.
            logits = np.zeros((B, self.W.shape[1]), dtype=np.float32)
            if len(r):
                contrib = self.W[c] * vals[:, None]
                starts = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
                logits[r[starts]] = np.add.reduceat(contrib, starts, axis=0)
            logits += self.b
            raw = self.trees.scores(r, c, vals, B)
        lin = 1.0 / (1.0 + np.exp(-logits))
        tree_p = 1.0 / (1.0 + np.exp(-raw))

        out = {}
        for h, spec in self.heads.items():
            acc = None
            for m in spec["members"]:
                p = (lin if m["kind"] == "linear" else tree_p)[:, m["cols"]]
                acc = p if acc is None else acc + p
            out[h] = (acc * np.float32(spec["weight"])).astype(np.float32) if len(spec["members"]) > 1 else acc.astype(np.float32)
        return out

    def members(self, head: str, j: int) -> tuple[int, int]:
        """(linear column, tree slot) of label ``j`` of ``head``; -1 where the head has no such member."""
        lin = slot = -1
        for m in self.heads[head]["members"]:
            if m["kind"] == "linear":
                if lin >= 0:
                    raise ValueError(f"head {head}: evidence supports one linear and one tree member per head")
                lin = m["cols"][j]
            else:
                if slot >= 0:
                    raise ValueError(f"head {head}: evidence supports one linear and one tree member per head")
                slot = m["cols"][j]
        return lin, slot

    def explain(self, token_texts: Sequence[str], wanted: Sequence[Sequence[tuple[str, int]]],
                entries: list | None = None) -> list[np.ndarray | None]:
        """Per clause, how much each of its tokens added to the logit of each wanted label.

        ``wanted[i]``: (head, label index) pairs for ``token_texts[i]``. Returns per clause
        None (nothing wanted) or a (len(wanted[i]) x tokens) float64 array, tokens being
        ``token_texts[i].split(" ")``. A feature's contribution goes to the tokens under its
        occurrences (an n-gram, or a lexicon word behind a flag): see :meth:`_to_tokens`.

        A contribution is in logit units: the linear member's coefficient x value (exact:
        they sum to its logit minus the intercept), plus the trees' path contributions
        (:meth:`_Trees.path_tables`: they sum to the trees' raw score minus its value for
        the empty clause). The head averages the two members' probabilities, so a small
        change d of the head's output is w (p_lin (1 - p_lin) d z_lin + p_tree (1 - p_tree)
        d z_tree): each member's contributions are weighted by its share of that
        derivative, s_m = p_m (1 - p_m) / sum over members. Shares, not the derivatives
        themselves, so that the result stays in logit units and does not vanish on a
        confident label (what occlusion's probability drops did); and a saturated member
        (p ~ 1, the head no longer moving with it) weighs less than one still deciding.

        ``entries``: what :meth:`probabilities` kept (``keep["entries"]``) for these same
        ``token_texts``: the chunks' features are then not extracted again; rows that want
        nothing ride along in their chunk (each row's figures are its own: the same result).
        """
        out: list[dict | None] = [None] * len(token_texts)
        for i0 in range(0, len(token_texts), self.CHUNK):
            end = min(i0 + self.CHUNK, len(token_texts))
            rows = [i for i in range(i0, end) if wanted[i]]
            if not rows:
                continue
            if entries is not None:
                found = self._explain_chunk(token_texts[i0:end], wanted[i0:end], entries[i0 // self.CHUNK])
                for i in rows:
                    out[i] = found[i - i0]
                continue
            for i, res in zip(rows, self._explain_chunk([token_texts[i] for i in rows], [wanted[i] for i in rows])):
                out[i] = res
        return out

    def _explain_chunk(self, texts, wanted, entries=None) -> list[np.ndarray]:
        B = len(texts)
        r, c, vals, (occ_r, occ_c, occ_s, occ_e) = entries if entries is not None else self._entries(texts, where=True)
        r = np.ascontiguousarray(r, dtype=np.int64)
        c = np.ascontiguousarray(c, dtype=np.int64)
        vals = np.ascontiguousarray(vals, dtype=np.float32)
        row_ptr = np.searchsorted(r, np.arange(B + 1)).astype(np.int64)
        req_row, req_lin, req_slot = [], [], []
        for i, w in enumerate(wanted):
            for h, j in w:
                lin, slot = self.members(h, j)
                req_row.append(i)
                req_lin.append(lin)
                req_slot.append(slot)
        req_row = np.asarray(req_row, np.int64)
        req_lin = np.asarray(req_lin, np.int64)
        req_slot = np.asarray(req_slot, np.int64)
        counts = row_ptr[req_row + 1] - row_ptr[req_row]
        req_off = (np.cumsum(counts) - counts).astype(np.int64)
        total = int(counts.sum())
        lo, hi, delta, base = self.trees.path_tables()
        if self.compiled:
            t = self.trees
            out_lin = np.empty(total, np.float32)
            out_tree = np.empty(total, np.float32)
            _kernels.contrib(row_ptr, c, vals, self.W, t.first, t.thr, t.tree, t.mask, t.start, t.group, lo, hi, delta,
                             req_row, req_lin, req_slot, req_off, out_lin, out_tree)
        else:
            out_lin, out_tree = self._contrib_numpy(r, c, vals, B, row_ptr, req_row, req_lin, req_slot, counts, lo, hi, delta)
        # Member shares: logits rebuilt from the contributions themselves.
        q_of = np.repeat(np.arange(len(req_row)), counts)
        # (A bundle may have no linear or no tree member at all: then there is nothing to index.)
        b_lin = self.b[np.maximum(req_lin, 0)] if len(self.b) else np.zeros(len(req_row))
        b_tree = base[np.maximum(req_slot, 0)] if len(base) else np.zeros(len(req_row))
        z_lin = np.bincount(q_of, weights=out_lin, minlength=len(req_row)) + np.where(req_lin >= 0, b_lin, 0)
        z_tree = np.bincount(q_of, weights=out_tree, minlength=len(req_row)) + np.where(req_slot >= 0, b_tree, 0)

        def slope(z):
            e = np.exp(-np.abs(z))
            return e / (1.0 + e) ** 2

        s_lin = np.where(req_lin >= 0, slope(z_lin), 0.0)
        s_tree = np.where(req_slot >= 0, slope(z_tree), 0.0)
        norm = s_lin + s_tree
        # Both members saturated beyond float64 (|z| > ~700): weigh them equally.
        tiny = norm <= 0
        s_lin = np.where(tiny, (req_lin >= 0) * 1.0, s_lin)
        s_tree = np.where(tiny, (req_slot >= 0) * 1.0, s_tree)
        norm = s_lin + s_tree
        combined = (s_lin / norm)[q_of] * out_lin + (s_tree / norm)[q_of] * out_tree

        return self._to_tokens(texts, wanted, r, c, row_ptr, (occ_r, occ_c, occ_s, occ_e), req_row, req_off, combined)

    @staticmethod
    def _token_layout(texts):
        """For the chunk's token strings joined by _SEP: the global token of each character
        (-1: a space or a separator), each row's first character and first token, and
        prefix counts of marker characters (Private Use Area U+E000-U+E0FF)."""
        lens = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        char_start = np.cumsum(lens + 1) - (lens + 1)
        joined = _SEP.join(t.replace(_SEP, _SUB) if _SEP in t else t for t in texts)
        cps = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
        gap = (cps == 32) | (cps == 1)
        first = ~gap & np.r_[True, gap[:-1]] if len(cps) else np.zeros(0, bool)
        tok_cum = np.r_[0, np.cumsum(first)]
        tok_of = np.where(gap, -1, tok_cum[1:] - 1)
        row_tok = tok_cum[np.r_[char_start, len(cps)]]
        marks = np.r_[0, np.cumsum((cps >= 0xE000) & (cps <= 0xE0FF))]
        return tok_of, char_start, row_tok, marks

    def _to_tokens(self, texts, wanted, r, c, row_ptr, occ, req_row, req_off, combined) -> list[np.ndarray]:
        """Per clause, (wanted x tokens) scores: each feature's contribution shared equally
        among its occurrences, an occurrence's share spread evenly over its characters
        (spaces get none), summed per token. An occurrence containing a marker character
        gives nothing to anyone (its n-gram is not in the text)."""
        occ_r, occ_c, occ_s, occ_e = occ
        tok_of, char_start, row_tok, marks = self._token_layout(texts)
        entry = np.searchsorted(r * self.n_features + c, occ_r * self.n_features + occ_c)
        per_entry = np.bincount(entry, minlength=len(r))
        gs, ge = char_start[occ_r] + occ_s, char_start[occ_r] + occ_e
        ntok_q = row_tok[req_row + 1] - row_tok[req_row]
        tok_off = np.cumsum(ntok_q) - ntok_q
        if self.compiled:
            order = np.argsort(occ_r, kind="stable")
            occ_ptr = np.searchsorted(occ_r[order], np.arange(len(texts) + 1)).astype(np.int64)
            scores = np.empty(int(ntok_q.sum()), np.float64)
            i64 = lambda x: np.ascontiguousarray(x, dtype=np.int64)  # noqa: E731
            _kernels.tokens(occ_ptr, i64(entry[order]), i64(gs[order]), i64(ge[order]), i64(per_entry), i64(tok_of), i64(marks),
                            i64(row_ptr), i64(row_tok), i64(req_row), i64(req_off), i64(tok_off),
                            np.ascontiguousarray(combined, dtype=np.float64), scores)
            return self._split_tokens(scores, wanted, row_tok, tok_off)
        ok = marks[ge] == marks[gs]
        entry, gs, L = entry[ok], gs[ok], (ge - gs)[ok]
        o = np.repeat(np.arange(len(gs)), L)
        tk = tok_of[np.arange(int(L.sum())) - np.repeat(np.cumsum(L) - L, L) + np.repeat(gs, L)]
        keep = tk >= 0
        o, tk = o[keep], tk[keep]
        n_chars = np.bincount(o, minlength=len(gs))
        n_tok = int(row_tok[-1])
        # (feature, token, share), one per pair: duplicates (a token reached by several
        # occurrences or characters of one feature) summed.
        keys, inv = np.unique(entry[o] * max(n_tok, 1) + tk, return_inverse=True)
        w = np.bincount(inv, weights=1.0 / (n_chars[o] * per_entry[entry[o]]), minlength=len(keys))
        t_entry, t_tok = keys // max(n_tok, 1), keys % max(n_tok, 1)
        tp = np.searchsorted(t_entry, row_ptr)
        n_t = tp[req_row + 1] - tp[req_row]
        tq = np.repeat(np.arange(len(req_row)), n_t)
        tidx = np.arange(int(n_t.sum())) - np.repeat(np.cumsum(n_t) - n_t, n_t) + np.repeat(tp[req_row], n_t)
        rows = req_row[tq]
        val = combined[req_off[tq] + t_entry[tidx] - row_ptr[rows]] * w[tidx]
        scores = np.bincount(tok_off[tq] + t_tok[tidx] - row_tok[rows], weights=val, minlength=int(ntok_q.sum()))
        return self._split_tokens(scores, wanted, row_tok, tok_off)

    @staticmethod
    def _split_tokens(scores, wanted, row_tok, tok_off) -> list[np.ndarray]:
        res, q = [], 0
        for i, wi in enumerate(wanted):
            k = int(row_tok[i + 1] - row_tok[i])
            res.append(scores[tok_off[q] : tok_off[q] + len(wi) * k].reshape(len(wi), k) if len(wi) else np.zeros((0, k)))
            q += len(wi)
        return res

    def _contrib_numpy(self, r, c, vals, B, row_ptr, req_row, req_lin, req_slot, counts, lo, hi, delta):
        """What _kernels.contrib computes (the fallback, and its parity reference)."""
        t = self.trees
        total = int(counts.sum())
        q_of = np.repeat(np.arange(len(req_row)), counts)
        e_of = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(row_ptr[req_row], counts)
        lin = req_lin[q_of]
        out_lin = np.where(lin >= 0, vals[e_of] * self.W[c[e_of], np.maximum(lin, 0)], 0).astype(np.float32)
        out_tree = np.zeros(total, np.float32)
        leaves = t.leaves(r, c, vals, B)
        ent, node = t.failing(c, vals)
        if len(node):
            # pair (request entry k, failing test) for every test of that entry's column
            by_entry = np.argsort(ent, kind="stable")
            ent, node = ent[by_entry], node[by_entry]
            first = np.searchsorted(ent, e_of)
            n = np.searchsorted(ent, e_of, side="right") - first
            k = np.repeat(np.arange(total), n)
            idx = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n) + np.repeat(first, n)
            nd = node[idx]
            tr = t.tree[nd]
            leaf = leaves[r[e_of[k]], tr]
            hit = (t.group[tr] == req_slot[q_of[k]]) & (lo[nd] <= leaf) & (leaf < hi[nd])
            np.add.at(out_tree, k[hit], delta[nd[hit]])
        return out_lin, out_tree
