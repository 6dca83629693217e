"""The drift calibration's selection rule and intervals (issue 22), without fitting a model."""

import numpy as np

from training.drift_calibration import auc, auc_interval, candidate_statistics, choose_score


def test_auc_interval_brackets_the_auc_and_narrows_with_separation():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 100), rng.normal(1, 1, 150)
    lo, hi = auc_interval(a, b)
    assert lo < auc(a, b) < hi and 0.6 < lo and hi < 0.9
    lo2, hi2 = auc_interval(a, b + 5)
    assert lo2 > 0.99 and hi2 <= 1.0


def test_a_candidate_replaces_the_score_only_when_it_separates_the_selection_split():
    sel = {"auc": {"long_oov_rate": {"auc": 0.43, "interval": [0.32, 0.56]},
                   "oov_rate": {"auc": 0.47, "interval": [0.35, 0.59]}}}
    assert choose_score(sel) == "long_oov_rate"  # best but not separating: no change
    sel["auc"]["no_label_share"] = {"auc": 0.7, "interval": [0.58, 0.81]}
    assert choose_score(sel) == "no_label_share"


def test_shrunk_rates_move_short_documents_toward_the_reference():
    short = {"words": [10], "oov": [3], "new": [1], "long": [3], "conf_sum": [0.5], "no_label": [0]}
    long_ = {k: v * 40 for k, v in short.items()}
    s, lg = candidate_statistics(short, 0.04, model=False), candidate_statistics(long_, 0.04, model=False)
    assert s["long_oov_rate"] == lg["long_oov_rate"] == 0.3
    assert 0.04 < s["long_oov_rate_shrunk_200"] < lg["long_oov_rate_shrunk_200"] < 0.3
    assert "no_label_share" not in s
