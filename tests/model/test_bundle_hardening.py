"""A hand-edited manifest is refused with one line: wrong structure, or labels listed in
another order than the graph's columns (caught by the self-test recorded at training)."""

import json
import shutil

import pytest

from tagger.errors import InvalidBundle
from tagger.model.inference import Tagger

from ..conftest import ROOT, run_cli

BUNDLE = ROOT / "models" / "policy-tagger"


def _copy(tmp_path, edit):
    dst = tmp_path / "bundle"
    shutil.copytree(BUNDLE, dst)
    m = json.loads((dst / "manifest.json").read_text(encoding="utf-8"))
    edit(m)
    (dst / "manifest.json").write_text(json.dumps(m, ensure_ascii=False), encoding="utf-8")
    return dst


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.update(heads=[]), "no 'heads' dict"),
        (lambda m: m.update(input="text"), "no 'input' dict"),
        (lambda m: m["input"].pop("name"), "input has no 'name'"),
        (lambda m: m["heads"]["topic"].update(labels=[1, 2, 3, 4, 5, 6, 7, 8]), "distinct non-empty strings"),
        (lambda m: m["heads"]["topic"].update(output=None), "no ONNX output name"),
        (lambda m: m["heads"]["measure"].update(thresholds=[True] * len(m["heads"]["measure"]["labels"])), "numbers in [0, 1]"),
        (lambda m: m.update(self_test="yes"), "self_test"),
    ],
)
def test_wrong_manifest_structure_is_one_line(tmp_path, edit, message):
    folder = _copy(tmp_path, edit)
    with pytest.raises(InvalidBundle, match=message.replace("[", r"\[").replace("]", r"\]")):
        Tagger(folder)
    r = run_cli("tag", str(ROOT / "labels/documents/extra/x001.txt"), env={"TAGGER_MODEL_DIR": str(folder)})
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_swapped_label_order_is_detected(tmp_path):
    assert json.loads((BUNDLE / "manifest.json").read_text(encoding="utf-8")).get("self_test"), "bundle has no self-test"

    def swap(m):
        hd = m["heads"]["measure"]
        hd["labels"][0], hd["labels"][1] = hd["labels"][1], hd["labels"][0]
        hd["thresholds"][0], hd["thresholds"][1] = hd["thresholds"][1], hd["thresholds"][0]

    with pytest.raises(InvalidBundle, match="self-test failed on head 'measure'"):
        Tagger(_copy(tmp_path, swap))
