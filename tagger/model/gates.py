"""Kind gates: which topics (and measures) a clause of a given kind may carry.

Rules v1.1 of the labeling guide say that titles, principles and conditions get no topic,
and that duty and procedure clauses get `governance` only. The `kind` head predicts what
sort of sentence a clause is; a gate turns that into factors on another head's
probabilities, so that a clause the model reads as a principle loses its topics however
confidently the topic head scores its slogans (the outside evaluation found many such
false topics at >= 0.9, out of reach of any threshold).

Two modes, chosen per head at training time on the time split and written to the
bundle's manifest (``heads.<head>.gate``), so every serving path applies the same one:

* ``hard``: the kind with the highest probability decides; a disallowed label's
  probability becomes 0.
* ``soft``: a label's probability is multiplied by the (normalised) probability that the
  clause is of a kind that allows it: a stacked, differentiable form of the same rule.

Thresholds are tuned on the gated probabilities, inside the training folds.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

__all__ = ["GATE_MODES", "RULES_V11", "gate_factors", "apply_gate", "apply_gates", "most_probable"]

GATE_MODES = ("none", "hard", "soft")

# kind -> the labels a clause of that kind may carry; kinds not listed allow every label.
RULES_V11: dict[str, dict[str, tuple[str, ...]]] = {
    "topic": {"principle": (), "title": (), "condition": (), "procedure": ("governance",)},
    # Bare conditions and lists of application materials get no measure; a title that
    # names a measure keeps it, so titles are not gated.
    "measure": {"condition": (), "principle": ()},
}


def gate_factors(kind_probs: np.ndarray, kind_labels: Sequence[str], head_labels: Sequence[str],
                 allowed: Mapping[str, Sequence[str]], mode: str) -> np.ndarray:
    """(n, len(head_labels)) factors in [0, 1] for ``mode`` ("hard" or "soft")."""
    n = kind_probs.shape[0]
    # block[k, l] = 1 where kind k forbids label l
    block = np.zeros((len(kind_labels), len(head_labels)), dtype=np.float32)
    for k, kind in enumerate(kind_labels):
        if kind in allowed:
            ok = set(allowed[kind])
            block[k] = [0.0 if lab in ok else 1.0 for lab in head_labels]
    if mode == "hard":
        return 1.0 - block[np.argmax(kind_probs, axis=1)] if n else np.ones((0, len(head_labels)), np.float32)
    if mode == "soft":
        q = kind_probs.astype(np.float32)
        q = q / np.maximum(q.sum(axis=1, keepdims=True), 1e-6)
        return np.clip(1.0 - q @ block, 0.0, 1.0)
    raise ValueError(f"unknown gate mode {mode!r} (one of {', '.join(GATE_MODES)})")


def apply_gate(probs: np.ndarray, kind_probs: np.ndarray, kind_labels: Sequence[str], head_labels: Sequence[str],
               gate: Mapping | None) -> np.ndarray:
    """``probs`` times the gate's factors; unchanged when ``gate`` is None or mode "none"."""
    if not gate or gate.get("mode", "none") == "none":
        return probs
    f = gate_factors(kind_probs, kind_labels, head_labels, gate["allowed"], gate["mode"])
    return (probs * f).astype(probs.dtype, copy=False)


def apply_gates(raw: Mapping[str, np.ndarray], labels: Mapping[str, Sequence[str]], gates: Mapping[str, Mapping]) -> dict:
    """Every head's output with its gate applied (``gates``: head -> gate, as in the manifest);
    a new dict, ``raw`` is kept (a gate reads the raw output of the head it names)."""
    out = dict(raw)
    for h, g in gates.items():
        out[h] = apply_gate(raw[h], raw[g["by"]], labels[g["by"]], labels[h], g)
    return out


def most_probable(p: np.ndarray) -> np.ndarray:
    """A boolean mask with exactly the most probable label of each row set: how a
    single-label head (kind) decides, at serving and in evaluation alike."""
    mask = np.zeros(p.shape, dtype=bool)
    if len(p):
        mask[np.arange(len(p)), np.argmax(p, axis=1)] = True
    return mask
