"""The model bundle: one folder that holds everything that travels with the model.

    models/policy-tagger/
        model.onnx      text (jieba tokens joined by spaces) -> <head>_probabilities
        manifest.json   format version, label ids per head (in output order), thresholds,
                        tokenizer settings + user-dictionary hash, training-data hash,
                        CV metrics, library versions, created_at, MLflow run id
        userdict.txt    the jieba user dictionary used in training
        README.md       model card

Loading checks the manifest against the ONNX graph; a corrupt or mismatched bundle
raises :class:`~tagger.errors.InvalidBundle` with one line saying why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidBundle
from ..taxonomy import HEADS

__all__ = ["FORMAT_VERSION", "Manifest", "read_manifest", "MODEL_FILE", "MANIFEST_FILE", "USERDICT_FILE"]

FORMAT_VERSION = 1
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
USERDICT_FILE = "userdict.txt"


@dataclass(frozen=True)
class Manifest:
    raw: dict
    path: Path

    @property
    def version(self) -> str:
        return self.raw["version"]

    @property
    def heads(self) -> dict[str, dict]:
        return self.raw["heads"]

    def labels(self, head: str) -> list[str]:
        return self.heads[head]["labels"]

    def thresholds(self, head: str) -> list[float]:
        return self.heads[head]["thresholds"]

    def output(self, head: str) -> str:
        return self.heads[head]["output"]

    def gate(self, head: str) -> dict | None:
        """``{"by": "kind", "mode": "hard" | "soft", "allowed": {kind: [labels]}}`` or None
        (:mod:`tagger.model.gates`)."""
        g = self.heads[head].get("gate")
        return g if g and g.get("mode", "none") != "none" else None

    @property
    def input_name(self) -> str:
        return self.raw["input"]["name"]

    @property
    def tokenizer(self) -> dict:
        return self.raw["tokenizer"]


def read_manifest(folder: Path) -> Manifest:
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not folder.is_dir():
        raise InvalidBundle(str(folder), "no such folder")
    if not path.is_file():
        raise InvalidBundle(str(folder), f"{MANIFEST_FILE} is missing")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidBundle(str(folder), f"{MANIFEST_FILE} is not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise InvalidBundle(str(folder), f"{MANIFEST_FILE} must hold a JSON object")
    fv = raw.get("format_version")
    if fv != FORMAT_VERSION:
        raise InvalidBundle(str(folder), f"bundle format_version {fv!r}, this runtime reads {FORMAT_VERSION}")
    # Every field the runtime reads is checked for its type here, so a hand-edited or
    # truncated manifest is refused with one line instead of failing later with a traceback.
    for key, typ in (("version", str), ("heads", dict), ("input", dict), ("tokenizer", dict)):
        if not isinstance(raw.get(key), typ):
            raise InvalidBundle(str(folder), f"manifest has no '{key}' {typ.__name__}")
    if not isinstance(raw["input"].get("name"), str):
        raise InvalidBundle(str(folder), "manifest input has no 'name' string")
    for head in HEADS:
        spec = raw["heads"].get(head)
        if not isinstance(spec, dict):
            raise InvalidBundle(str(folder), f"manifest has no head '{head}'")
        labels, th = spec.get("labels"), spec.get("thresholds")
        if not isinstance(labels, list) or not isinstance(th, list) or len(labels) != len(th) or not labels:
            raise InvalidBundle(str(folder), f"head '{head}': labels and thresholds must be non-empty lists of equal length")
        if not all(isinstance(l, str) and l for l in labels) or len(set(labels)) != len(labels):
            raise InvalidBundle(str(folder), f"head '{head}': labels must be distinct non-empty strings")
        if not all(isinstance(t, (int, float)) and not isinstance(t, bool) and 0.0 <= t <= 1.0 for t in th):
            raise InvalidBundle(str(folder), f"head '{head}': thresholds must be numbers in [0, 1]")
        if not isinstance(spec.get("output"), str):
            raise InvalidBundle(str(folder), f"head '{head}': no ONNX output name")
        _check_gate(folder, raw["heads"], head)
    st = raw.get("self_test")
    if st is not None and not (isinstance(st, dict) and isinstance(st.get("texts"), list) and isinstance(st.get("scores"), dict)):
        raise InvalidBundle(str(folder), "manifest self_test must hold 'texts' and 'scores'")
    return Manifest(raw=raw, path=folder)


def _check_gate(folder: Path, heads: dict, head: str) -> None:
    gate = heads[head].get("gate")
    if gate is None:
        return
    from .gates import GATE_MODES

    by = gate.get("by") if isinstance(gate, dict) else None
    if not isinstance(heads.get(by), dict) or not isinstance(heads[by].get("labels"), list) or not isinstance(gate.get("allowed"), dict) or gate.get("mode") not in GATE_MODES:
        raise InvalidBundle(str(folder), f"head '{head}': gate must name a head ('by'), a mode {GATE_MODES} and 'allowed'")
    for kind, labs in gate["allowed"].items():
        if kind not in heads[by]["labels"] or not isinstance(labs, list) or any(l not in heads[head]["labels"] for l in labs):
            raise InvalidBundle(str(folder), f"head '{head}': gate rule for '{kind}' names labels the bundle does not have")
