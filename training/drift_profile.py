"""The drift reference profile of a bundle (``drift.json``, issue 22).

Written by training after the bundle's files (``write_bundle``), or for an existing bundle by
``tagger-train profile [--bundle DIR]``: the bundle itself tags its training clauses (the
labeled clauses with every head labeled, as training reads them) through the same
:class:`~tagger.model.drift.DriftProfiler` that serving uses, so the reference and a live
batch are counted by one piece of code. The calibrated thresholds and the calibration
summary come from ``training/drift_calibration.json`` (written by
``python -m training.drift_calibration --summary``); the model-card section from the
``.md`` beside it is put into the bundle's README.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path

from tagger.model.bundle import MANIFEST_FILE
from tagger.model.drift import DEFAULT_THRESHOLDS, DRIFT_FILE, DriftProfiler, build_reference

__all__ = ["write_reference", "CALIBRATION_FILE", "CALIBRATION_MD"]

CALIBRATION_FILE = Path(__file__).with_name("drift_calibration.json")
CALIBRATION_MD = Path(__file__).with_name("drift_calibration.md")
_SECTION = re.compile(r"\n## Drift: when the model goes stale\n.*?(?=\n## |\Z)", re.S)


def _calibration(path: Path | None) -> dict | None:
    path = Path(path) if path else CALIBRATION_FILE
    if not path.is_file():
        return None
    cal = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(cal, dict) or not isinstance(cal.get("thresholds"), dict):
        raise ValueError(f"{path}: not a drift calibration (no 'thresholds')")
    return cal


def write_reference(folder: Path, ids: list[str], docs: list[str], token_texts: list[str], source: dict,
                    calibration: Path | None = None, card_section: Path | None = None) -> dict:
    """Profile the training clauses with the bundle in ``folder``; write ``drift.json``, name
    it (and its hash) in the manifest, and put the calibration section into README.md."""
    from tagger.model.inference import Tagger

    folder = Path(folder)
    tagger = Tagger(folder, self_test=False)
    profiler = DriftProfiler.for_tagger(tagger)
    if profiler.vocabulary is None:
        raise ValueError(f"{folder}: the bundle has no sparse tables to read its vocabulary from (run tagger-train compile-sparse)")
    acc = profiler.new_accumulator()
    for i in range(0, len(token_texts), 512):
        sl = slice(i, i + 512)
        profiler.add(acc, ids[sl], docs[sl], token_texts[sl], tagger.probabilities_tokens(token_texts[sl]))
    cal = _calibration(calibration)
    summary = {k: cal[k] for k in ("auc_a_vs_b", "groups", "accuracy", "protocol") if k in cal} if cal else {}
    ref = build_reference(profiler, acc, {**source, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")},
                          (cal or {}).get("thresholds") or DEFAULT_THRESHOLDS, summary)
    data = (json.dumps(ref, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
    tmp = folder / (DRIFT_FILE + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(folder / DRIFT_FILE)
    manifest_path = folder / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["drift"] = {"file": DRIFT_FILE, "sha256": hashlib.sha256(data).hexdigest(), "thresholds": ref["thresholds"],
                         "score": "long OOV rate: share of words of 3+ characters without a column in the word vocabulary (tagger/model/drift.py)"}
    mtmp = manifest_path.with_suffix(".json.tmp")
    mtmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    mtmp.replace(manifest_path)
    md = Path(card_section) if card_section else CALIBRATION_MD
    card = folder / "README.md"
    if md.is_file() and card.is_file():
        text = _SECTION.sub("", card.read_text(encoding="utf-8")).rstrip("\n")
        card.write_text(text + "\n\n" + md.read_text(encoding="utf-8").strip("\n") + "\n", encoding="utf-8")
    return manifest["drift"]


def profile_bundle(folder: Path, labels_file: Path, taxonomy, calibration: Path | None = None) -> tuple[dict, dict]:
    """``tagger-train profile``: the reference of an existing bundle from the labeled clauses."""
    from tagger.model.inference import Tagger

    from .data import load_dataset

    ds = load_dataset(labels_file, taxonomy)
    if len(ds) == 0:
        raise ValueError(f"{labels_file} holds no labeled clauses")
    tok = Tagger(folder, self_test=False).tokenizer
    tokens = tok.batch(ds.texts)
    spec = write_reference(folder, ds.ids, ds.docs, tokens,
                           {"clauses_file": str(labels_file.name), "sha256": ds.hash, "n_clauses": len(ds)}, calibration)
    ref = json.loads((Path(folder) / DRIFT_FILE).read_text(encoding="utf-8"))
    return spec, ref
