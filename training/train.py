"""One training run: grouped CV -> model choice per head -> thresholds -> final fit ->
ONNX bundle (with parity check) -> MLflow run, registry and champion alias."""

from __future__ import annotations

import json
import random
import shutil
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from tagger.bundle import FORMAT_VERSION, MANIFEST_FILE, MODEL_FILE, USERDICT_FILE
from tagger.features import DEFAULT_USERDICT, Tokenizer, userdict_hash
from tagger.taxonomy import HEADS, Taxonomy

from .data import Dataset, load_dataset
from .evaluate import CVResult, cross_validate
from .export import INPUT_NAME, onnx_probabilities, output_name, to_onnx
from .models import FeatureConfig, build_classifier, fit_vectorizer

__all__ = ["TrainConfig", "TrainResult", "train", "write_bundle", "library_versions", "PARITY_TOL"]

PARITY_TOL = 1e-5
PARITY_N = 500


@dataclass
class TrainConfig:
    labels_file: Path
    taxonomy: Taxonomy
    features: FeatureConfig = FeatureConfig()
    candidates: tuple[str, ...] = ("logreg", "lgbm")
    n_splits: int = 5
    seed: int = 0
    userdict: Path = DEFAULT_USERDICT


@dataclass
class TrainResult:
    dataset: Dataset
    cv: CVResult
    onnx_bytes: bytes
    manifest: dict
    parity: dict
    seconds: float


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("scikit-learn", "lightgbm", "skl2onnx", "onnxmltools", "onnx", "onnxruntime", "jieba", "jieba-next", "numpy", "mlflow"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    import platform

    out["python"] = platform.python_version()
    return out


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)


def train(cfg: TrainConfig, log=print) -> TrainResult:
    t0 = time.time()
    _seed(cfg.seed)
    ds = load_dataset(cfg.labels_file, cfg.taxonomy)
    if len(ds) == 0:
        raise ValueError(f"{cfg.labels_file} holds no labeled clauses")
    # The pure-Python engine at training time: it is the reference the fast path is tested against.
    tok = Tokenizer(cfg.userdict, engine="jieba")
    raw_texts = ds.texts
    ds.texts = tok.batch(raw_texts)
    log(f"{len(ds)} clauses from {len(set(ds.docs))} documents, data hash {ds.hash[:12]}; tokenised in {time.time() - t0:.1f}s")

    log(f"grouped {cfg.n_splits}-fold CV over documents, candidates {cfg.candidates}")
    cv = cross_validate(ds, cfg.features, kinds=cfg.candidates, n_splits=cfg.n_splits, seed=cfg.seed, log=log)

    log("final fit on all clauses")
    vec = fit_vectorizer(cfg.features, ds.texts)
    X = vec.transform(ds.texts)
    heads = {}
    for h in HEADS:
        clf = build_classifier(cv.chosen[h], cfg.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            clf.fit(X, ds.Y[h])
        heads[h] = clf

    log("exporting to ONNX")
    model = to_onnx(vec, heads, X.shape[1])
    onnx_bytes = model.SerializeToString()

    # Parity: ONNX must reproduce the trained estimators on real clauses.
    rng = np.random.default_rng(cfg.seed)
    idx = np.sort(rng.choice(len(ds), size=min(PARITY_N, len(ds)), replace=False))
    texts = [ds.texts[i] for i in idx]
    onnx_p = onnx_probabilities(onnx_bytes, texts, HEADS)
    parity = {"n": len(idx), "max_abs_diff": {}, "label_sets_identical": {}}
    for h in HEADS:
        sk = heads[h].predict_proba(X[idx])
        th = cv.thresholds[cv.chosen[h]][h]
        parity["max_abs_diff"][h] = float(np.abs(sk - onnx_p[h]).max())
        parity["label_sets_identical"][h] = bool(((sk >= th) == (onnx_p[h] >= th)).all())
    log(f"ONNX parity on {len(idx)} clauses: max |diff| {max(parity['max_abs_diff'].values()):.2e}")
    if max(parity["max_abs_diff"].values()) > PARITY_TOL:
        raise RuntimeError(f"ONNX parity failed: {parity}")

    created = datetime.now(timezone.utc)
    manifest = {
        "format_version": FORMAT_VERSION,
        "name": "policy-tagger",
        "version": f"{created:%Y.%m.%d}-{ds.hash[:8]}",
        "created_at": created.isoformat(timespec="seconds"),
        "input": {
            "name": INPUT_NAME,
            "type": "string [N, 1]",
            "preprocessing": "tagger.features.Tokenizer: normalise, jieba tokens (user dictionary), joined by single spaces",
        },
        "heads": {
            h: {
                "labels": list(ds.taxonomy.labels[h]),
                "thresholds": [float(t) for t in cv.thresholds[cv.chosen[h]][h]],
                "output": output_name(h),
                "model": cv.chosen[h],
            }
            for h in HEADS
        },
        "taxonomy_version": ds.taxonomy.version,
        "tokenizer": {
            "engine": "jieba",
            "userdict": USERDICT_FILE,
            "userdict_sha256": userdict_hash(cfg.userdict),
            "fast_path": "jieba_next when installed (parity-tested)",
        },
        "features": {**cfg.features.to_dict(), "n_features": int(X.shape[1])},
        "training_data": {
            "file": "labels/clauses.jsonl",
            "sha256": ds.hash,
            "n_clauses": len(ds),
            "n_documents": len(set(ds.docs)),
        },
        "cv": {"n_splits": cfg.n_splits, "grouped_by": "document", "seed": cfg.seed, **cv.report()},
        "onnx_parity": parity,
        "library_versions": library_versions(),
        "mlflow": {},
    }
    return TrainResult(dataset=ds, cv=cv, onnx_bytes=onnx_bytes, manifest=manifest, parity=parity, seconds=time.time() - t0)


def write_bundle(result: TrainResult, dst: Path, userdict: Path = DEFAULT_USERDICT) -> Path:
    """Write the bundle to a temp folder beside ``dst``, then swap it in."""
    from tagger.jsonio import atomic_folder

    from .report import model_card

    with atomic_folder(dst) as tmp:
        (tmp / MODEL_FILE).write_bytes(result.onnx_bytes)
        shutil.copyfile(userdict, tmp / USERDICT_FILE)
        (tmp / MANIFEST_FILE).write_text(json.dumps(result.manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(model_card(result.manifest), encoding="utf-8")
    return Path(dst)
