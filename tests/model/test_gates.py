"""Kind gates (tagger.model.gates): the arithmetic every serving path applies after the model."""

import numpy as np
import pytest

from tagger.model.gates import RULES_V11, apply_gate, gate_factors

KINDS = ["provision", "target", "principle", "condition", "procedure", "title"]
TOPICS = ["talent", "finance", "platforms", "applications", "research", "enterprises", "infrastructure", "governance"]


def _kind_probs(*rows):
    return np.array([[1.0 if k == r else 0.05 for k in KINDS] for r in rows], dtype=np.float32)


def test_hard_gate_follows_the_most_probable_kind():
    kp = _kind_probs("provision", "principle", "procedure", "title", "condition", "target")
    f = gate_factors(kp, KINDS, TOPICS, RULES_V11["topic"], "hard")
    assert f.shape == (6, len(TOPICS))
    assert f[0].tolist() == [1.0] * len(TOPICS)  # a provision may carry any topic
    assert f[1].tolist() == [0.0] * len(TOPICS)  # a principle none
    assert f[2].tolist() == [0.0] * 7 + [1.0]  # a procedure governance only
    assert f[3].sum() == 0 and f[4].sum() == 0
    assert f[5].tolist() == [1.0] * len(TOPICS)  # a target keeps topics that count its object


def test_soft_gate_scales_by_the_probability_of_a_kind_that_allows_the_label():
    kp = np.array([[0.6, 0.0, 0.4, 0.0, 0.0, 0.0]], dtype=np.float32)  # 60% provision, 40% principle
    f = gate_factors(kp, KINDS, TOPICS, RULES_V11["topic"], "soft")
    assert np.allclose(f, 0.6)
    kp = np.array([[0.0, 0.0, 0.0, 0.0, 2.0, 2.0]], dtype=np.float32)  # unnormalised one-vs-rest outputs
    f = gate_factors(kp, KINDS, TOPICS, RULES_V11["topic"], "soft")
    # half procedure (governance only), half title (no topic)
    assert np.allclose(f[0, :7], 0.0) and np.isclose(f[0, 7], 0.5)


def test_measure_gate_spares_titles():
    measures = ["grant", "rent_subsidy"]
    f = gate_factors(_kind_probs("title", "condition"), KINDS, measures, RULES_V11["measure"], "hard")
    assert f.tolist() == [[1.0, 1.0], [0.0, 0.0]]


def test_apply_gate_none_is_identity_and_keeps_dtype():
    p = np.full((2, len(TOPICS)), 0.9, dtype=np.float32)
    kp = _kind_probs("principle", "provision")
    assert apply_gate(p, kp, KINDS, TOPICS, None) is p
    assert apply_gate(p, kp, KINDS, TOPICS, {"mode": "none", "allowed": {}}) is p
    g = apply_gate(p, kp, KINDS, TOPICS, {"by": "kind", "mode": "hard", "allowed": RULES_V11["topic"]})
    assert g.dtype == np.float32 and g[0].max() == 0.0 and np.allclose(g[1], 0.9)


def test_empty_batch_and_unknown_mode():
    assert gate_factors(np.zeros((0, 6), np.float32), KINDS, TOPICS, RULES_V11["topic"], "hard").shape == (0, len(TOPICS))
    with pytest.raises(ValueError, match="unknown gate mode"):
        gate_factors(_kind_probs("title"), KINDS, TOPICS, RULES_V11["topic"], "sometimes")
