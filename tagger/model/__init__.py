"""The model: a bundle folder (``bundle``: manifest, hashes) run on clause texts.

``features`` (tokeniser) -> ``inference`` (:class:`Tagger`: the sparse path of ``sparse``
and ``_kernels.c``, or the ONNX graph) -> ``overrides`` (reviewed rules after the model);
``evidence`` explains labels (the model's own contributions, or occlusion); ``mlflow_model`` wraps a bundle for MLflow."""

from __future__ import annotations

from .._lazy import lazy_exports

__all__ = ['Prediction', 'Tagger', 'load_tagger']

_WHERE = {'Tagger': 'inference', 'Prediction': 'inference', 'load_tagger': 'inference'}

__getattr__ = lazy_exports(__name__, _WHERE)
