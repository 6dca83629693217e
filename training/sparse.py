"""Compile a bundle's ONNX graph into the sparse serving artefacts (``tagger.model.sparse``).

Why: the graph's TF-IDF step builds a dense (batch x 12,000) matrix, so its cost grows
with the vocabulary, not with the clause (~8.5k clauses/s ceiling). Serving instead looks
each n-gram up once, runs the linear heads as a gather-and-sum and feeds the tree heads
only the few hundred columns their splits read. Everything is read out of ``model.onnx``
itself (not from the scikit-learn objects), so the sparse path reproduces exactly the
graph that was parity-tested against training, and an existing bundle can be upgraded
without retraining: ``tagger-train compile-sparse models/policy-tagger``.

Output, written into the bundle folder:
``sparse.npz`` (n-gram tables, idf, linear weights, lexicon matrix, and the trees as
QuickScorer tables), hashed into ``manifest["serving"]``; serving refuses a file that does
not match.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from tagger.model.bundle import MANIFEST_FILE, MODEL_FILE
from tagger.model.sparse import SPARSE_FILE, SparseModel, sortable_float_keys

__all__ = ["compile_sparse", "write_sparse", "SparseCompileError", "PARITY_TOL"]


class SparseCompileError(RuntimeError):
    pass


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _ngram_table(node) -> list[tuple[tuple[str, ...], int]]:
    """(n-gram as a tuple of pool strings, output column) for a TfIdfVectorizer node."""
    a = _attrs(node)
    if a.get("max_skip_count", 0) != 0 or a.get("mode", b"TF") != b"TF":
        raise SparseCompileError(f"{node.name}: only TF mode without skips is supported")
    pool = [s.decode("utf-8") for s in a["pool_strings"]]
    counts = list(a["ngram_counts"]) + [len(pool)]
    idx = list(a["ngram_indexes"])
    weights = list(a.get("weights", []))
    if weights and any(w != 1.0 for w in weights):
        raise SparseCompileError(f"{node.name}: n-gram weights other than 1 are not supported")
    out, k = [], 0
    for n in range(1, len(counts)):
        block = pool[counts[n - 1] : counts[n]]
        for i in range(0, len(block), n):
            out.append((tuple(block[i : i + n]), idx[k]))
            k += 1
    if k != len(idx):
        raise SparseCompileError(f"{node.name}: pool and indexes disagree ({k} n-grams, {len(idx)} indexes)")
    return out


def _encode_block(table, analyzer: str) -> dict[str, np.ndarray]:
    """Unigram strings -> ids; n-grams of length n as base-V integer codes (sorted) -> column."""
    unis = sorted({g[0] for g, _ in table if len(g) == 1})
    uid = {u: i for i, u in enumerate(unis)}
    V = len(unis)
    codes: dict[int, list[tuple[int, int]]] = {}
    for gram, col in table:
        if any(p not in uid for p in gram):
            # Cannot happen with the closed vocabularies of training/models.py; an n-gram
            # whose unigram is missing could never be counted by the graph either.
            raise SparseCompileError(f"n-gram {gram!r} has a part outside the unigram vocabulary")
        c = 0
        for p in gram:
            c = c * V + uid[p]
        codes.setdefault(len(gram), []).append((c, col))
    if V ** max(codes) >= 2**63:
        raise SparseCompileError(f"{analyzer}: n-gram codes overflow int64 (V={V}, n={max(codes)})")
    res = {"unigrams": np.array(unis)}  # fixed-width unicode: loads without pickle
    for n, pairs in codes.items():
        pairs.sort()
        res[f"codes{n}"] = np.array([c for c, _ in pairs], dtype=np.int64)
        res[f"cols{n}"] = np.array([col for _, col in pairs], dtype=np.int32)
    return res


def compile_sparse(model: onnx.ModelProto, manifest: dict) -> dict[str, np.ndarray]:
    g = model.graph
    init = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}

    # -- the TF-IDF union: Concat(blocks) -> "tfidf" (lexicon bundles) or "features".
    concat = producer.get("tfidf") or producer.get("features")
    if concat is None or concat.op_type != "Concat":
        raise SparseCompileError("cannot find the feature Concat node")
    arrays: dict[str, np.ndarray] = {}
    blocks = []
    offset = 0
    for bi, name in enumerate(concat.input):
        node, idf, norm = producer[name], None, False
        if node.op_type == "Normalizer":
            if _attrs(node).get("norm") != b"L2":
                raise SparseCompileError("only L2 normalisation is supported")
            norm, node = True, producer[node.input[0]]
        if node.op_type == "Mul":
            idf = init[node.input[1]].astype(np.float32)
            node = producer[node.input[0]]
        if node.op_type != "TfIdfVectorizer":
            raise SparseCompileError(f"unexpected node {node.op_type} in feature block {bi}")
        tok = producer[producer[node.input[0]].input[0]]  # TfIdf <- Flatten <- Tokenizer
        exp = _attrs(tok)["tokenexp"].decode()
        analyzer = {"[^ ]+": "word", ".": "char"}.get(exp)
        if analyzer is None:
            raise SparseCompileError(f"unsupported tokenizer pattern {exp!r}")
        table = _ngram_table(node)
        width = max(c for _, c in table) + 1
        if idf is not None and idf.shape[0] != width:
            raise SparseCompileError("idf length does not match the block width")
        enc = _encode_block(table, analyzer)
        for k, v in enc.items():
            arrays[f"b{bi}_{k}"] = v
        arrays[f"b{bi}_idf"] = idf if idf is not None else np.ones(width, dtype=np.float32)
        blocks.append({"analyzer": analyzer, "offset": offset, "width": width, "idf": idf is not None, "norm": norm,
                       "max_n": max(len(gram) for gram, _ in table)})
        offset += width
    n_tfidf = offset

    # -- the lexicon flags appended by training/export.py (_lexicon_onnx).
    lexicon = None
    if "lex_matrix" in init:
        a, b = int(init["lex_start"][0]), int(init["lex_end"][0])
        if a != blocks[-1]["offset"] or b != n_tfidf:
            raise SparseCompileError("the lexicon slice is not the last feature block")
        lexicon = {"block": len(blocks) - 1, "n_flags": int(init["lex_matrix"].shape[1])}
        arrays["lex_matrix"] = init["lex_matrix"].astype(np.float32)
        n_features = a + lexicon["n_flags"]
    else:
        n_features = n_tfidf

    # -- heads: output <- Mul(Sum(members), w) or a single member's Concat.
    heads = {}
    trees_by_slot: list[dict] = []  # one TreeEnsembleClassifier (one label) per slot
    W, bias = [], []
    for head, spec in manifest["heads"].items():
        out = producer[spec["output"]]
        if out.op_type == "Mul":
            s = producer[out.input[0]]
            members, weight = list(s.input), float(init[out.input[1]])
        else:
            members, weight = [spec["output"]], 1.0
        mdesc = []
        for mname in members:
            cat = producer[mname]
            kinds, cols = set(), []
            for probY in cat.input:
                sl = producer[probY]
                col = int(init[sl.input[1]][0])
                src = producer[sl.input[0]]
                kinds.add(src.op_type)
                if src.op_type == "LinearClassifier":
                    at = _attrs(src)
                    if at.get("post_transform") != b"LOGISTIC" or list(at.get("classlabels_ints", [])) != [0, 1] or col != 1:
                        raise SparseCompileError(f"{src.name}: only binary logistic members are supported")
                    coef = np.asarray(at["coefficients"], dtype=np.float32).reshape(2, -1)
                    W.append(coef[1])
                    bias.append(np.float32(at["intercepts"][1]))
                    cols.append(len(W) - 1)
                elif src.op_type == "TreeEnsembleClassifier":
                    if col != 1:
                        raise SparseCompileError(f"{src.name}: only binary tree members are supported")
                    trees_by_slot.append(_attrs(src))
                    cols.append(len(trees_by_slot) - 1)
            if kinds == {"LinearClassifier"}:
                mdesc.append({"kind": "linear", "cols": cols})
            elif kinds == {"TreeEnsembleClassifier"}:
                mdesc.append({"kind": "trees", "cols": cols})
            else:
                raise SparseCompileError(f"head {head}: member {mname} mixes {kinds}")
        heads[head] = {"members": mdesc, "weight": weight, "output": spec["output"], "n_labels": len(spec["labels"])}
    arrays["linear_W"] = np.stack(W, axis=1).astype(np.float32) if W else np.zeros((n_features, 0), np.float32)
    arrays["linear_b"] = np.asarray(bias, dtype=np.float32)
    if arrays["linear_W"].shape[0] != n_features:
        raise SparseCompileError("linear weights do not match the feature width")

    # -- the trees, as QuickScorer tables (see tagger.model.sparse._Trees): per internal node its
    # feature, threshold and the bitmask of the leaves it rules out when its test fails.
    arrays.update(_compile_trees(trees_by_slot))
    spec = {"format": 1, "blocks": blocks, "lexicon": lexicon, "n_features": n_features, "heads": heads}
    arrays["spec"] = np.array(json.dumps(spec))
    return arrays


def _compile_trees(slots: list[dict]) -> dict[str, np.ndarray]:
    feats, thr, tree_of, masks = [], [], [], []
    leaf_vals, tree_slot = [], []
    max_leaves = 0
    for slot, a in enumerate(slots):
        if a.get("post_transform") != b"LOGISTIC" or list(a.get("classlabels_int64s", [])) != [0, 1]:
            raise SparseCompileError("only binary logistic tree ensembles are supported")
        if set(a["class_ids"]) - {0} or set(m.decode() for m in a["nodes_modes"]) - {"BRANCH_LEQ", "LEAF"}:
            raise SparseCompileError("only BRANCH_LEQ trees with one class id are supported")
        if a.get("base_values") and any(a["base_values"]):
            raise SparseCompileError("tree base values are not supported")
        nodes: dict[tuple[int, int], dict] = {}
        for i, (t, n) in enumerate(zip(a["nodes_treeids"], a["nodes_nodeids"])):
            nodes[(t, n)] = {"mode": a["nodes_modes"][i].decode(), "f": a["nodes_featureids"][i], "v": a["nodes_values"][i],
                             "t": a["nodes_truenodeids"][i], "e": a["nodes_falsenodeids"][i]}
        weight: dict[tuple[int, int], float] = {}
        for t, n, w in zip(a["class_treeids"], a["class_nodeids"], a["class_weights"]):
            weight[(t, n)] = weight.get((t, n), 0.0) + w
        for t in sorted({t for t, _ in nodes}):
            leaves: list[tuple[int, int]] = []
            internal: list[tuple[int, list[int]]] = []

            def walk(n: int) -> list[int]:
                node = nodes[(t, n)]
                if node["mode"] == "LEAF":
                    leaves.append((t, n))
                    return [len(leaves) - 1]
                left = walk(node["t"])  # the "true" (x <= threshold) side is the left one
                right = walk(node["e"])
                internal.append((n, left))
                return left + right

            walk(0)
            max_leaves = max(max_leaves, len(leaves))
            g = len(tree_slot)
            for n, left in internal:
                node = nodes[(t, n)]
                feats.append(node["f"])
                thr.append(node["v"])
                tree_of.append(g)
                masks.append(((1 << len(leaves)) - 1) & ~sum(1 << k for k in left))
            leaf_vals.append([weight.get(l, 0.0) for l in leaves])
            tree_slot.append(slot)
    if max_leaves > 32:
        raise SparseCompileError(f"trees with {max_leaves} leaves (at most 32 supported)")
    T = len(tree_slot)
    lv = np.zeros((T, 32), dtype=np.float32)
    for i, v in enumerate(leaf_vals):
        lv[i, : len(v)] = v
    feats_a = np.asarray(feats, dtype=np.int64)
    thr_a = np.asarray(thr, dtype=np.float32)
    order = np.lexsort((sortable_float_keys(thr_a), feats_a))
    return {
        "tree_node_feature": feats_a[order],
        "tree_node_threshold": thr_a[order],
        "tree_node_tree": np.asarray(tree_of, dtype=np.int64)[order],
        "tree_node_mask": np.asarray(masks, dtype=np.uint32)[order],
        "tree_leaf_values": lv,
        "tree_slot": np.asarray(tree_slot, dtype=np.int64),
        "tree_n_leaves": np.asarray([len(v) for v in leaf_vals], dtype=np.int64),
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# Both paths add the same float32 tree outputs, in different orders (onnxruntime per tree
# ensemble, the QuickScorer loops per leaf mask); with ~2,000 trees the rounding reaches
# ~1e-5 on a probability (1.2e-5 measured on the v1.1 bundle). Label sets must be identical.
PARITY_TOL = 5e-5


def write_sparse(folder: Path, check_texts: list[str] | None = None, tol: float = PARITY_TOL) -> dict:
    """Compile, write next to model.onnx, check parity against the graph, record in the manifest."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    arrays = compile_sparse(onnx.load(str(folder / MODEL_FILE)), manifest)
    tmp_npz = folder / (SPARSE_FILE + ".tmp")
    with open(tmp_npz, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    tmp_npz.replace(folder / SPARSE_FILE)

    from tagger.model.inference import Tagger

    from .export import parity_report

    parity = None
    if check_texts:
        onnx_tagger = Tagger(folder, serving="onnx", self_test=False)
        toks = onnx_tagger.tokenizer.batch(check_texts)
        # Raw head outputs on both sides: gates are applied after either path, by one function.
        dense = onnx_tagger.onnx_raw_tokens(toks)
        fast = SparseModel(folder, {SPARSE_FILE: _sha256(folder / SPARSE_FILE)}).probabilities(toks)
        parity = parity_report(dense, fast, {h: d["thresholds"] for h, d in manifest["heads"].items()})
        if max(parity["max_abs_diff"].values()) > tol or not all(parity["label_sets_identical"].values()):
            (folder / SPARSE_FILE).unlink()
            raise SparseCompileError(f"sparse path differs from the ONNX graph: {parity}")
    manifest["serving"] = {
        "path": "sparse",
        # model.onnx is hashed too: the sparse path does not open it, but a bundle whose
        # graph is damaged is still refused at load.
        "files": {SPARSE_FILE: _sha256(folder / SPARSE_FILE), MODEL_FILE: _sha256(folder / MODEL_FILE)},
        "parity_with_onnx": parity,
    }
    tmp = manifest_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    tmp.replace(manifest_path)
    return manifest["serving"]
