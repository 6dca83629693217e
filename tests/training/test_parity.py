"""ONNX parity: the exported graph reproduces the scikit-learn/LightGBM estimators on
at least 500 real clauses (probabilities within 1e-5, identical label sets)."""

import warnings

import numpy as np
import pytest

from tagger.model.features import Tokenizer
from tagger.taxonomy import HEADS, load_taxonomy

from ..conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fitted():
    from training.data import load_dataset
    from training.evaluate import tune_thresholds
    from training.experiments import fit_heads
    from training.models import FeatureConfig, fit_vectorizer

    tax = load_taxonomy(ROOT / "labels" / "taxonomy.yaml")
    ds = load_dataset(ROOT / "labels" / "clauses.jsonl", tax)
    texts = Tokenizer(engine="jieba").batch(ds.texts)
    # The shipped feature set: TF-IDF plus the lexicon block appended inside the graph.
    vec = fit_vectorizer(FeatureConfig(lexicon=True), texts, [(h, l) for h in HEADS for l in tax.labels[h]])
    X = vec.transform(texts)
    # Every model kind is covered: NB-weighted logreg (ratio folded into the coefficients),
    # an average of two models inside the graph, and LightGBM alone.
    kinds = {"topic": ["nb_logreg"], "measure": ["logreg", "lgbm"], "industry": ["lgbm"], "kind": ["logreg", "lgbm"]}
    heads = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for h in HEADS:
            heads[h] = [fit_heads(k, X, ds.Y[h]) for k in kinds[h]]
    th = {h: tune_thresholds(ds.Y[h], _proba(heads[h], X)) for h in HEADS}
    return texts, vec, X, heads, th


def _proba(members, X):
    return np.mean([m.predict_proba(X) for m in members], axis=0)


def test_onnx_matches_estimators_on_500_real_clauses(fitted):
    from training.export import onnx_probabilities, to_onnx

    texts, vec, X, heads, th = fitted
    model = to_onnx(vec, heads, X.shape[1])
    idx = np.random.default_rng(1).choice(len(texts), size=600, replace=False)
    onnx_p = onnx_probabilities(model.SerializeToString(), [texts[i] for i in idx], HEADS)
    for h in HEADS:
        sk = _proba(heads[h], X[idx])
        assert np.abs(sk - onnx_p[h]).max() < 1e-5, h
        assert ((sk >= th[h]) == (onnx_p[h] >= th[h])).all(), h


def test_lexicon_block_matches_python(fitted):
    """The lexicon flags computed in the graph equal Featurizer.transform's."""
    import onnxruntime as ort

    from training.export import FEATURES, to_onnx

    texts, vec, X, heads, _ = fitted
    model = to_onnx(vec, heads, X.shape[1])
    # Expose the internal feature tensor to compare it column by column.
    model.graph.output.extend([onnx_value(FEATURES, X.shape[1])])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    sample = texts[:300]
    got = sess.run([FEATURES], {"text": np.array(sample, dtype=object).reshape(-1, 1)})[0]
    want = X[:300].toarray()
    n_lex = vec.lexicon.shape[1]
    assert want[:, -n_lex:].sum() > 50  # the block is not empty on real clauses
    assert np.abs(got - want).max() < 1e-5


def onnx_value(name, width):
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, width])


def test_chinese_tokens_survive_conversion(fitted):
    """The skl2onnx default token pattern drops every Chinese token; ours must not."""
    from training.export import onnx_probabilities, to_onnx

    texts, vec, X, heads, _ = fitted
    model = to_onnx(vec, heads, X.shape[1])
    p = onnx_probabilities(model.SerializeToString(), [texts[0], "人工智能 芯片 研发"], HEADS)
    assert np.abs(p["industry"][0] - p["industry"][1]).max() > 1e-3


def test_fast_tokenizer_matches_jieba_on_corpus():
    pytest.importorskip("jieba_next")
    from training.data import load_dataset

    ds = load_dataset(ROOT / "labels" / "clauses.jsonl", load_taxonomy(ROOT / "labels" / "taxonomy.yaml"))
    slow, fast = Tokenizer(engine="jieba"), Tokenizer(engine="jieba_next")
    mismatches = [t for t in ds.texts if slow(t) != fast(t)]
    assert not mismatches, mismatches[:3]
