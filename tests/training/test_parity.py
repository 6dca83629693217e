"""ONNX parity: the exported graph reproduces the scikit-learn/LightGBM estimators on
at least 500 real clauses (probabilities within 1e-5, identical label sets)."""

import warnings

import numpy as np
import pytest

from tagger.features import Tokenizer
from tagger.taxonomy import HEADS, load_taxonomy

from ..conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fitted():
    from training.data import load_dataset
    from training.evaluate import tune_thresholds
    from training.models import FeatureConfig, build_classifier, fit_vectorizer

    tax = load_taxonomy(ROOT / "labels" / "taxonomy.yaml")
    ds = load_dataset(ROOT / "labels" / "clauses.jsonl", tax)
    texts = Tokenizer(engine="jieba").batch(ds.texts)
    vec = fit_vectorizer(FeatureConfig(), texts)
    X = vec.transform(texts)
    # Both model kinds are covered: the linear model on two heads, LightGBM on one.
    kinds = {"topic": "logreg", "measure": "logreg", "industry": "lgbm"}
    heads = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for h in HEADS:
            heads[h] = build_classifier(kinds[h]).fit(X, ds.Y[h])
    th = {h: tune_thresholds(ds.Y[h], heads[h].predict_proba(X)) for h in HEADS}
    return texts, vec, X, heads, th


def test_onnx_matches_estimators_on_500_real_clauses(fitted):
    from training.export import onnx_probabilities, to_onnx

    texts, vec, X, heads, th = fitted
    model = to_onnx(vec, heads, X.shape[1])
    idx = np.random.default_rng(1).choice(len(texts), size=600, replace=False)
    onnx_p = onnx_probabilities(model.SerializeToString(), [texts[i] for i in idx], HEADS)
    for h in HEADS:
        sk = heads[h].predict_proba(X[idx])
        assert np.abs(sk - onnx_p[h]).max() < 1e-5, h
        assert ((sk >= th[h]) == (onnx_p[h] >= th[h])).all(), h


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
