"""ONNX inference over a model bundle: clause texts in, labels and scores out.

Serving imports neither scikit-learn, LightGBM nor MLflow (MLflow only when the bundle
is pulled from the registry with ``TAGGER_MODEL_URI``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InvalidBundle
from ..taxonomy import HEADS, SINGLE_HEADS
from .bundle import MODEL_FILE, USERDICT_FILE, Manifest, read_manifest
from .features import Tokenizer, userdict_hash
from .gates import apply_gates, most_probable

__all__ = ["Tagger", "Prediction", "resolve_bundle_dir", "load_tagger"]


@dataclass
class Prediction:
    # head -> label ids; a single-label head (kind) holds exactly one id
    labels: dict[str, list[str]]
    scores: dict[str, dict[str, float]]


class Tagger:
    def __init__(self, folder: Path, threads: int | None = None, serving: str | None = None, self_test: bool = True):
        self.folder = Path(folder)
        self.manifest: Manifest = read_manifest(self.folder)
        model_path = self.folder / MODEL_FILE
        if not model_path.is_file():
            raise InvalidBundle(str(self.folder), f"{MODEL_FILE} is missing")
        ud = self.folder / USERDICT_FILE
        if not ud.is_file():
            raise InvalidBundle(str(self.folder), f"{USERDICT_FILE} is missing")
        want = self.manifest.tokenizer.get("userdict_sha256")
        if want and userdict_hash(ud) != want:
            raise InvalidBundle(str(self.folder), f"{USERDICT_FILE} does not match the hash in the manifest")
        self._threads = threads if threads is not None else int(os.environ.get("TAGGER_ONNX_THREADS", "0"))
        self._session = None
        self.tokenizer = Tokenizer(ud, structure=bool(self.manifest.tokenizer.get("structure_markers")))
        self.heads = HEADS
        self._labels = {h: self.manifest.labels(h) for h in HEADS}
        self._th = {h: np.asarray(self.manifest.thresholds(h), dtype=np.float32) for h in HEADS}
        self._outputs = [self.manifest.output(h) for h in HEADS]
        # Gates (tagger.model.gates) apply to the graph's outputs on every path, so the
        # sparse path, the graph and evidence all see the same final probabilities.
        self._gates = {h: g for h in HEADS if (g := self.manifest.gate(h))}
        self.sparse = None
        self.serving = self._choose_serving(serving or os.environ.get("TAGGER_SERVING", "auto"))
        if self.serving == "onnx":
            self._check_graph()
        self.predict_tokens(["人工智能"])  # fail at start-up, not on the first request
        if self_test:
            self._self_test()

    @property
    def session(self):
        """The ONNX graph's session, created on first use: the sparse path never needs it,
        and a process that forks workers must not hold onnxruntime threads."""
        if self._session is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            n = self._threads
            if n:
                opts.intra_op_num_threads = n
            if n == 1:
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            model_path = self.folder / MODEL_FILE
            try:
                self._session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own private exception types
                raise InvalidBundle(str(self.folder), f"{MODEL_FILE} cannot be loaded ({type(exc).__name__}: {str(exc)[:200]})") from None
        return self._session

    @property
    def engine(self) -> str:
        """What computes the scores: "sparse-compiled" (the C loops of tagger/model/_kernels.c),
        "sparse-numpy" (the same path where the extension was not built: ~3x slower) or
        "onnx" (the graph)."""
        if self.sparse is None:
            return "onnx"
        return "sparse-compiled" if self.sparse.compiled else "sparse-numpy"

    def _choose_serving(self, want: str) -> str:
        """"sparse" (the default when the bundle has it: same numbers, several times faster)
        or "onnx" (the graph itself; release checks and bundles without sparse files)."""
        if want not in ("auto", "sparse", "onnx"):
            raise InvalidBundle(str(self.folder), f"unknown serving path {want!r} (TAGGER_SERVING: auto, sparse or onnx)")
        declared = self.manifest.raw.get("serving")
        if want == "onnx" or (want == "auto" and not declared):
            return "onnx"
        if not isinstance(declared, dict) or not isinstance(declared.get("files"), dict):
            raise InvalidBundle(str(self.folder), "the manifest declares no sparse serving files (run tagger-train compile-sparse)")
        from .sparse import SparseModel

        graph_hash = declared["files"].get(MODEL_FILE)
        if graph_hash and hashlib.sha256((self.folder / MODEL_FILE).read_bytes()).hexdigest() != graph_hash:
            raise InvalidBundle(str(self.folder), f"{MODEL_FILE} does not match the hash in the manifest")
        self.sparse = SparseModel(self.folder, declared["files"])
        for h in HEADS:
            # The manifest must still describe the graph the sparse tables were compiled from.
            got = self.sparse.heads.get(h, {})
            if got.get("output") != self.manifest.output(h):
                raise InvalidBundle(str(self.folder), f"head '{h}': ONNX output '{self.manifest.output(h)}' not in graph outputs "
                                    f"(the sparse tables were compiled for '{got.get('output')}')")
            if got.get("n_labels") != len(self._labels[h]):
                raise InvalidBundle(str(self.folder), f"head '{h}': ONNX output has {got.get('n_labels')} columns, "
                                    f"manifest lists {len(self._labels[h])} labels")
        return "sparse"

    @property
    def version(self) -> str:
        return self.manifest.version

    def _check_graph(self) -> None:
        inputs = {i.name: i for i in self.session.get_inputs()}
        if self.manifest.input_name not in inputs:
            raise InvalidBundle(str(self.folder), f"ONNX input '{self.manifest.input_name}' not in graph inputs {list(inputs)}")
        outputs = {o.name: o for o in self.session.get_outputs()}
        for h in HEADS:
            name = self.manifest.output(h)
            if name not in outputs:
                raise InvalidBundle(str(self.folder), f"head '{h}': ONNX output '{name}' not in graph outputs {list(outputs)}")
            width = outputs[name].shape[-1] if outputs[name].shape else None
            if isinstance(width, int) and width != len(self.manifest.labels(h)):
                raise InvalidBundle(
                    str(self.folder), f"head '{h}': ONNX output has {width} columns, manifest lists {len(self.manifest.labels(h))} labels"
                )

    SELF_TEST_TOL = 1e-4

    def _self_test(self) -> None:
        """Re-score the clauses recorded at training time: label -> score must match.

        This catches what shape checks cannot: labels listed in another order than the
        graph's columns (a swapped manifest), a model.onnx from another run, a tokenizer
        that cuts differently."""
        st = self.manifest.raw.get("self_test")
        if not st:
            return
        preds = self.predict(st["texts"])
        for h in HEADS:
            want = st["scores"].get(h)
            if not isinstance(want, list) or len(want) != len(preds):
                raise InvalidBundle(str(self.folder), f"self_test has no scores for head '{h}'")
            for i, (p, w) in enumerate(zip(preds, want)):
                got = p.scores[h]
                if not isinstance(w, dict) or set(w) != set(got) or any(abs(got[l] - float(w[l])) > self.SELF_TEST_TOL for l in w):
                    raise InvalidBundle(
                        str(self.folder),
                        f"self-test failed on head '{h}' (clause {i}): the graph's scores do not match the labels recorded at "
                        "training (manifest labels reordered, or model.onnx from another run)",
                    )

    # The ONNX TF-IDF step builds a dense (batch x vocabulary) matrix: past ~64 rows the
    # matrix falls out of cache and throughput drops (measured 7.2k/s at 64, 5.6k/s at 1000).
    CHUNK = 64

    def probabilities_tokens(self, token_texts: Sequence[str], keep: dict | None = None) -> dict[str, np.ndarray]:
        """Gated probabilities per head; ``keep``: see :meth:`SparseModel.probabilities`
        (filled on the sparse path only)."""
        if not token_texts:
            return {h: np.zeros((0, len(self._labels[h])), dtype=np.float32) for h in HEADS}
        if self.sparse is not None:
            out = self.sparse.probabilities(token_texts, keep)
            for h in HEADS:
                if out[h].shape != (len(token_texts), len(self._labels[h])):
                    raise InvalidBundle(str(self.folder), f"head '{h}': sparse path returned shape {out[h].shape}")
            return self.gated(out)
        return self.onnx_probabilities_tokens(token_texts)

    def gated(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The bundle's kind gates applied to raw head outputs (a new dict; ``raw`` is kept)."""
        return apply_gates(raw, self._labels, self._gates) if self._gates else raw

    def onnx_probabilities_tokens(self, token_texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The ONNX graph itself (with the bundle's gates), whatever the serving path (parity checks)."""
        return self.gated(self.onnx_raw_tokens(token_texts))

    def onnx_raw_tokens(self, token_texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The ONNX graph's outputs as they are, before gates."""
        if not token_texts:
            return {h: np.zeros((0, len(self._labels[h])), dtype=np.float32) for h in HEADS}
        parts = []
        for i in range(0, len(token_texts), self.CHUNK):
            chunk = token_texts[i : i + self.CHUNK]
            feed = {self.manifest.input_name: np.asarray(chunk, dtype=object).reshape(-1, 1)}
            parts.append(self.session.run(self._outputs, feed))
        out = [np.concatenate([p[k] for p in parts]) if len(parts) > 1 else parts[0][k] for k in range(len(HEADS))]
        for h, arr in zip(HEADS, out):
            if arr.shape != (len(token_texts), len(self._labels[h])):
                raise InvalidBundle(str(self.folder), f"head '{h}': ONNX returned shape {arr.shape}")
        return dict(zip(HEADS, out))

    def probabilities(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        return self.probabilities_tokens(self.tokenizer.batch(texts))

    def _to_predictions(self, probs: dict[str, np.ndarray], n: int) -> list[Prediction]:
        # Vectorised per head; per-row work is only zips over short Python lists.
        cols = {}
        for h in HEADS:
            p = probs[h]
            # a single-label head takes its most probable label; thresholds do not apply
            mask = most_probable(p) if h in SINGLE_HEADS else p >= self._th[h]
            cols[h] = (self._labels[h], mask.tolist(), np.round(p.astype(np.float64), 6).tolist())
        preds = []
        for i in range(n):
            labels, scores = {}, {}
            for h, (labs, mask, rounded) in cols.items():
                labels[h] = [l for l, m in zip(labs, mask[i]) if m]
                scores[h] = dict(zip(labs, rounded[i]))
            preds.append(Prediction(labels=labels, scores=scores))
        return preds

    def predict_tokens(self, token_texts: Sequence[str]) -> list[Prediction]:
        return self._to_predictions(self.probabilities_tokens(token_texts), len(token_texts))

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        return self.predict_tokens(self.tokenizer.batch(texts))

    def predict_detailed(self, texts: Sequence[str], keep: dict | None = None) -> tuple[list[str], dict[str, np.ndarray], list[Prediction]]:
        """(token strings, gated probabilities, predictions): what the drift profile reads,
        from the same single pass as :meth:`predict`. ``keep``: a dict that receives what the
        sparse pass computed for reuse (its word ids, and on request its features:
        :meth:`SparseModel.probabilities`)."""
        tokens = self.tokenizer.batch(texts)
        probs = self.probabilities_tokens(tokens, keep)
        return tokens, probs, self._to_predictions(probs, len(tokens))


def resolve_bundle_dir(model_dir: Path, model_uri: str = "", cache_dir: Path | None = None) -> Path:
    """The bundle folder to load: ``model_dir``, or the registry model behind ``model_uri``."""
    if not model_uri:
        return Path(model_dir)
    try:
        import mlflow
    except ImportError:
        raise InvalidBundle(model_uri, "loading from the MLflow registry needs mlflow (pip install -e '.[train]')") from None
    from ..config import get_settings

    st = get_settings()
    mlflow.set_tracking_uri(st.tracking_uri)
    dst = Path(cache_dir or st.var_dir / "registry-cache")
    dst.mkdir(parents=True, exist_ok=True)
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dst)))
    except Exception as exc:
        raise InvalidBundle(model_uri, f"cannot download from the registry ({type(exc).__name__}: {str(exc)[:200]})") from None
    found = sorted(p.parent for p in local.rglob("manifest.json"))
    if not found:
        raise InvalidBundle(model_uri, "the registered model holds no bundle (manifest.json)")
    return found[0]


def load_tagger(model_dir: Path | None = None, model_uri: str | None = None) -> Tagger:
    from ..config import get_settings

    st = get_settings()
    folder = resolve_bundle_dir(model_dir or st.model_dir, st.model_uri if model_uri is None else model_uri)
    return Tagger(folder)
