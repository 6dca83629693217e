"""The evaluation protocol: time split, nested and cross-fitted thresholds never see the
rows they are scored on, model specs, NB weighting folded into plain coefficients."""

import numpy as np
import pytest

from tagger.taxonomy import load_taxonomy

from ..conftest import ROOT


def test_time_split_unknown_years_count_as_old():
    from training.experiments import time_split

    old, new = time_split([2017, None, 2022, 2023, 2026])
    assert old.tolist() == [0, 1, 2] and new.tolist() == [3, 4]


def test_model_spec_parse_and_errors():
    from training.experiments import ModelSpec

    s = ModelSpec.parse("avg:nb_logreg+lgbm@recency")
    assert s.parts == ("nb_logreg", "lgbm") and s.recency and s.label() == "avg:nb_logreg+lgbm@recency"
    with pytest.raises(ValueError, match="unknown model spec"):
        ModelSpec.parse("svm")
    with pytest.raises(ValueError, match="unknown model spec"):
        ModelSpec.parse("logreg@yesterday")


def test_nb_logreg_exports_as_plain_logistic_regression():
    """The NB ratio is folded into the coefficients: predicting on raw features equals
    the per-label fit on scaled features."""
    from scipy import sparse

    from training.experiments import _nb_ratio, fit_heads

    rng = np.random.default_rng(0)
    X = sparse.random(200, 40, density=0.2, random_state=1, format="csr")
    Y = (rng.random((200, 3)) < 0.3).astype(int)
    Y[:, 0] = (X[:, 0].toarray().ravel() > 0).astype(int)
    clf = fit_heads("nb_logreg", X, Y)
    from sklearn.linear_model import LogisticRegression

    r = _nb_ratio(X, Y[:, 0])
    ref = LogisticRegression(C=8.0, class_weight="balanced", solver="liblinear", max_iter=2000, random_state=0)
    ref.fit(X @ sparse.diags(r), Y[:, 0])
    want = ref.predict_proba(X @ sparse.diags(r))[:, 1]
    assert np.abs(clf.predict_proba(X)[:, 0] - want).max() < 1e-8


@pytest.fixture(scope="module")
def small_eval():
    from tagger.model.features import Tokenizer
    from training.data import document_years, load_dataset
    from training.experiments import Evaluator

    ds = load_dataset(ROOT / "labels" / "clauses.jsonl", load_taxonomy(ROOT / "labels" / "taxonomy.yaml"))
    years = document_years(ROOT / "labels" / "documents")
    # 8 documents on each side of the 2022 cutoff (~330 clauses): what the protocol needs
    # (disjoint documents, inner folds, every split fitted), at a few seconds of fitting; 24
    # a side (1,150 clauses since the v1.1 corpus) cost minutes of liblinear on 2 cores.
    docs = sorted(set(ds.docs))
    old = [d for d in docs if (years.get(d) or 0) <= 2022][:8]
    new = [d for d in docs if (years.get(d) or 0) > 2022][:8]
    keep = [i for i, d in enumerate(ds.docs) if d in set(old) | set(new)]
    ds = ds.subset(keep)
    ds.texts = Tokenizer(engine="jieba").batch(ds.texts)
    return Evaluator(ds, [years.get(d) for d in ds.docs], n_splits=3, inner_splits=3, log=lambda m: None)


def test_time_split_thresholds_do_not_see_test_labels(small_eval):
    """Scrambling the test documents' labels changes the score but not the thresholds."""
    from training.evaluate import tune_thresholds
    from training.experiments import ModelSpec

    ev, spec = small_eval, ModelSpec("logreg")
    assert {ev.ds.docs[i] for i in ev.time_train}.isdisjoint({ev.ds.docs[i] for i in ev.time_test})
    P = ev.spec_probs("base", spec, "measure")
    inner_idx = np.concatenate([te for _, te in ev.inner])
    assert set(inner_idx) <= set(ev.time_train)
    th = tune_thresholds(ev.ds.Y["measure"][inner_idx], np.concatenate([P[f"inner{k}"] for k in range(len(ev.inner))]))
    before = ev.timesplit("base", spec, "measure")
    saved = ev.ds.Y["measure"].copy()
    try:
        ev.ds.Y["measure"][ev.time_test] = 1 - ev.ds.Y["measure"][ev.time_test]
        th2 = tune_thresholds(ev.ds.Y["measure"][inner_idx], np.concatenate([P[f"inner{k}"] for k in range(len(ev.inner))]))
        after = ev.timesplit("base", spec, "measure")
    finally:
        ev.ds.Y["measure"][:] = saved
    assert np.array_equal(th, th2)
    assert before["micro_f1"] != after["micro_f1"]


def test_grouped_cv_thresholds_are_cross_fitted(small_eval):
    """Each fold's predictions are thresholded without its own labels: flipping one fold's
    labels leaves the other folds' thresholds and predictions where they were, and the
    honest score is not above the optimistic one computed the first-wave way."""
    from training.experiments import ModelSpec

    ev = small_eval
    m = ev.grouped("base", ModelSpec("logreg"), "topic")
    assert m["macro_f1"] <= m["optimistic"]["macro_f1"] + 1e-9
    assert {ev.ds.docs[i] for i in ev.folds[0][1]}.isdisjoint({ev.ds.docs[i] for i in ev.folds[0][0]})


def test_lexicon_flags_mark_the_guides_words():
    from training.models import FeatureConfig, fit_vectorizer

    order = [("measure", "rent_subsidy"), ("industry", "ai_models")]
    vec = fit_vectorizer(FeatureConfig(lexicon=True, min_df=1), ["给予 租金 补贴", "支持 大模型 研发", "其他 内容"], order)
    flags = vec.transform(["按 实际 租金 的 50% 补贴", "建设 大模型 平台", "无关 文字"])[:, -2:].toarray()
    assert flags.tolist() == [[1, 0], [0, 1], [0, 0]]


def test_choice_does_not_see_the_time_split(small_eval):
    """The inner figure (which breaks the choice's ties) is scored on documents up to the
    cutoff only: scrambling the time split's test labels changes the time-split score and
    leaves the inner figure as it was; without a time split there is no inner figure."""
    from training.experiments import Evaluator, ModelSpec

    ev, spec = small_eval, ModelSpec("logreg")
    before = ev.inner_scores("base", spec, "measure")
    time_before = ev.timesplit("base", spec, "measure")
    saved = ev.ds.Y["measure"].copy()
    try:
        ev.ds.Y["measure"][ev.time_test] = 1 - ev.ds.Y["measure"][ev.time_test]
        after = ev.inner_scores("base", spec, "measure")
        time_after = ev.timesplit("base", spec, "measure")
    finally:
        ev.ds.Y["measure"][:] = saved
    assert before is not None and before == after
    assert time_before["micro_f1"] != time_after["micro_f1"]
    old = [i for i in range(len(ev.ds)) if i in set(ev.time_train.tolist())]
    only_old = Evaluator(ev.ds.subset(old), [ev.years[i] for i in old], n_splits=3, inner_splits=3, log=lambda m: None)
    assert not len(only_old.time_test) and only_old.inner_scores("base", spec, "measure") is None
