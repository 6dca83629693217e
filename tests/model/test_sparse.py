"""The sparse serving path equals the ONNX graph it was compiled from (issue #12)."""

import json
import random
import shutil

import numpy as np
import pytest

from tagger.errors import InvalidBundle
from tagger.model.inference import Tagger
from tagger.model.sparse import SPARSE_FILE
from training.sparse import PARITY_TOL

from ..conftest import ROOT

BUNDLE = ROOT / "models" / "policy-tagger"


@pytest.fixture(scope="module")
def taggers():
    return Tagger(BUNDLE, serving="sparse"), Tagger(BUNDLE, serving="onnx")


def _clauses(n: int) -> list[str]:
    texts = [json.loads(line)["text"] for line in open(ROOT / "labels" / "clauses.jsonl", encoding="utf-8")]
    random.Random(7).shuffle(texts)  # another sample than the one checked at compile time
    return texts[:n]


def test_shipped_bundle_serves_from_the_sparse_path():
    assert Tagger(BUNDLE).serving == "sparse"


def test_sparse_equals_onnx_on_2000_real_clauses(taggers):
    sparse, dense = taggers
    toks = sparse.tokenizer.batch(_clauses(2000))
    a, b = sparse.probabilities_tokens(toks), dense.onnx_probabilities_tokens(toks)
    for h in a:
        assert a[h].shape == b[h].shape == (2000, len(sparse.manifest.labels(h)))
        assert np.abs(a[h] - b[h]).max() < PARITY_TOL, h
    # Label sets through the public API, thresholds included.
    texts = _clauses(2000)
    for p, q in zip(sparse.predict(texts), dense.predict(texts)):
        assert p.labels == q.labels


def test_compiled_loops_are_built_and_serve():
    """pip builds tagger/model/_kernels.c wherever a C compiler exists; without it the numpy code
    serves, ~3x slower, which a deployment should notice rather than assume."""
    import tagger.model.sparse

    assert tagger.model.sparse._kernels is not None
    assert Tagger(BUNDLE).engine == "sparse-compiled"


def test_numpy_fallback_equals_compiled_and_onnx(taggers):
    """The same path without the extension (an install with no C compiler)."""
    sparse, dense = taggers
    fallback = Tagger(BUNDLE, serving="sparse", self_test=False)
    fallback.sparse.compiled = False
    assert fallback.engine == "sparse-numpy"
    texts = _clauses(700)  # more than one internal chunk
    toks = sparse.tokenizer.batch(texts)
    a, b, c = sparse.probabilities_tokens(toks), fallback.probabilities_tokens(toks), dense.onnx_probabilities_tokens(toks)
    for h in a:
        assert np.abs(a[h] - b[h]).max() < PARITY_TOL, h
        assert np.abs(b[h] - c[h]).max() < PARITY_TOL, h
    assert [p.labels for p in fallback.predict(texts)] == [p.labels for p in sparse.predict(texts)]


def test_kernels_refuse_inconsistent_arrays(taggers):
    """The C loops index raw memory: every array shape and every index is checked first."""
    from tagger.model.sparse import _hash_table, _kernels

    m, t = taggers[0].sparse, taggers[0].sparse.trees
    r, c, v = np.array([0, 1], np.int64), np.array([3, 5], np.int64), np.array([0.5, 0.5], np.float32)

    def score(r=r, c=c, v=v, B=2, W=m.W, group=t.group):
        logits = np.empty((B, W.shape[1]), np.float32)
        raw = np.empty((B, t.n_groups), np.float32)
        _kernels.score(r, c, v, W, m.b, t.first, t.thr, t.tree, t.mask, t.start, t.leaf_values, group, logits, raw)
        return logits

    assert score().shape == (2, m.W.shape[1])
    with pytest.raises(ValueError, match="rows ascending"):
        score(r=np.array([1, 0], np.int64))
    with pytest.raises(ValueError, match="rows ascending"):
        score(r=np.array([0, 2], np.int64))  # a row past the batch
    with pytest.raises(ValueError, match="columns in range"):
        score(c=np.array([3, m.n_features], np.int64))
    with pytest.raises(ValueError, match="shapes do not agree"):
        score(v=np.array([0.5], np.float32))
    with pytest.raises(ValueError, match="shapes do not agree"):
        score(W=m.W[:-1])
    with pytest.raises(ValueError, match="slot out of range"):
        score(group=t.group + 1)
    with pytest.raises(TypeError, match="item size"):
        score(v=v.astype(np.float64))

    keys, cols = _hash_table(np.array([4, 9], np.int64), np.array([0, 1], np.int64))
    ids = np.array([4, -2, 9], np.int64)
    out_r, out_c = np.empty(3, np.int64), np.empty(3, np.int64)
    k = _kernels.ngrams(ids, 10, [(1, keys, cols)], out_r, out_c)
    assert (k, list(out_r[:k]), list(out_c[:k])) == (2, [0, 1], [0, 1])
    with pytest.raises(ValueError, match="power-of-two"):
        _kernels.ngrams(ids, 10, [(1, keys[:3], cols[:3])], out_r, out_c)
    with pytest.raises(ValueError, match="too small"):
        _kernels.ngrams(ids, 10, [(1, keys, cols)], out_r[:2], out_c[:2])


@pytest.mark.parametrize("text", ["", "   ", "!!!", "ａｂｃ", "AI--大模型 -- 算力券", "对" * 3000, "x\x01y", "🙂 芯片 🙂", "\t\n研发补助\n"])
def test_edge_cases_match(taggers, text):
    sparse, dense = taggers
    toks = [sparse.tokenizer(text), sparse.tokenizer("人工智能产业"), sparse.tokenizer(text)]
    a, b = sparse.probabilities_tokens(toks), dense.onnx_probabilities_tokens(toks)
    for h in a:
        assert np.abs(a[h] - b[h]).max() < PARITY_TOL, (h, text)


def test_batch_composition_does_not_change_a_clause(taggers):
    """Bit-identical whatever a clause is batched with: Spark's batches and the CLI's must
    give the same scores (rounded to 6 decimals, a 1-ulp difference can show)."""
    sparse, _ = taggers
    toks = sparse.tokenizer.batch(_clauses(600))  # more than one internal chunk
    whole = sparse.probabilities_tokens(toks)
    for size in (1, 3, 7, 37):
        parts = [sparse.probabilities_tokens(toks[i : i + size]) for i in range(0, 120, size)]
        for h in whole:
            assert np.array_equal(np.concatenate([p[h] for p in parts]), whole[h][: len(parts) * size][: sum(len(p[h]) for p in parts)]), (h, size)


def test_tampered_sparse_file_is_refused(tmp_path):
    folder = tmp_path / "b"
    shutil.copytree(BUNDLE, folder)
    data = bytearray((folder / SPARSE_FILE).read_bytes())
    data[-100] ^= 0xFF
    (folder / SPARSE_FILE).write_bytes(bytes(data))
    with pytest.raises(InvalidBundle, match="does not match the hash"):
        Tagger(folder)
    # The graph itself still serves when asked for explicitly.
    assert Tagger(folder, serving="onnx").serving == "onnx"


def test_bundle_without_sparse_files_serves_from_onnx(tmp_path):
    folder = tmp_path / "b"
    shutil.copytree(BUNDLE, folder)
    (folder / SPARSE_FILE).unlink()
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    del manifest["serving"]
    (folder / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    t = Tagger(folder)
    assert t.serving == "onnx"
    with pytest.raises(InvalidBundle, match="no sparse serving files"):
        Tagger(folder, serving="sparse")


def test_unknown_serving_path_is_refused():
    with pytest.raises(InvalidBundle, match="unknown serving path"):
        Tagger(BUNDLE, serving="gpu")


@pytest.mark.slow
def test_compile_sparse_rebuilds_an_equal_path(tmp_path):
    """`tagger-train compile-sparse` on a bundle without the sparse file restores it."""
    import subprocess
    import sys

    folder = tmp_path / "b"
    shutil.copytree(BUNDLE, folder)
    (folder / SPARSE_FILE).unlink()
    r = subprocess.run([sys.executable, "-m", "training.cli", "compile-sparse", str(folder), "--n", "300"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "max |diff|" in r.stderr
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["serving"]["parity_with_onnx"]["n"] == 300
    t, ref = Tagger(folder), Tagger(BUNDLE, serving="onnx")
    texts = _clauses(100)
    assert [p.labels for p in t.predict(texts)] == [p.labels for p in ref.predict(texts)]
