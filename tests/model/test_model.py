"""The committed bundle loads, predicts, and refuses to start when corrupt or mismatched."""

import json
import shutil

import pytest

from tagger.errors import InvalidBundle
from tagger.model.bundle import MANIFEST_FILE, MODEL_FILE
from tagger.model.inference import Tagger
from tagger.taxonomy import HEADS, load_taxonomy

from ..conftest import ROOT, run_cli

BUNDLE = ROOT / "models" / "policy-tagger"


def test_manifest_matches_taxonomy_and_records_provenance(tagger):
    tax = load_taxonomy(ROOT / "labels" / "taxonomy.yaml")
    m = tagger.manifest.raw
    for h in HEADS:
        assert m["heads"][h]["labels"] == list(tax.labels[h])
    assert len(m["training_data"]["sha256"]) == 64
    assert "onnxruntime" in m["library_versions"] and "scikit-learn" in m["library_versions"]
    assert m["mlflow"]["run_id"]
    par = m["onnx_parity"]
    assert par["n"] >= 500 and all(par["label_sets_identical"].values())
    # training.train: the typical clause within 1e-5, the worst within one float32 tree split's leaf
    assert max(par.get("p99_abs_diff", par["max_abs_diff"]).values()) < 1e-5 and max(par["max_abs_diff"].values()) < 1e-3


def test_predicts_obvious_clauses(tagger):
    preds = tagger.predict(
        [
            "对新引进的人工智能企业，按实际租金的50%给予最高三年的房租补贴。",
            "落实研发费用加计扣除、高新技术企业所得税优惠等税收政策。",
            "支持工业机器人、服务机器人研发和产业化。",
        ]
    )
    assert "rent_subsidy" in preds[0].labels["measure"]
    assert "tax_relief" in preds[1].labels["measure"]
    assert "robotics" in preds[2].labels["industry"]
    assert set(preds[0].scores["measure"]) == set(tagger.manifest.labels("measure"))
    assert all(len(p.labels["kind"]) == 1 for p in preds) and preds[0].labels["kind"] == ["provision"]


def test_kind_is_one_label_and_gates_topic(tagger):
    """Rules v1.1: a principle or a title carries no topic, a target with a count keeps it,
    however loudly the slogans name topics."""
    texts = [
        "坚持场景牵引、创新驱动、人才为本、开放合作的原则，推动人工智能与实体经济深度融合。",
        "关于印发《某市促进人工智能产业发展若干措施》的通知",
        "到2025年，全市人工智能核心产业规模突破1000亿元，建成10个以上国家级创新平台。",
        "由市财政局按规定拨付补助资金，市经信局负责监督检查。",
    ]
    preds = tagger.predict(texts)
    kinds = [p.labels["kind"] for p in preds]
    assert kinds == [["principle"], ["title"], ["target"], ["procedure"]], kinds
    assert preds[0].labels["topic"] == [] and preds[1].labels["topic"] == []
    assert set(preds[3].labels["topic"]) <= {"governance"}
    gate = tagger.manifest.gate("topic")
    assert gate is not None and gate["by"] == "kind" and gate["mode"] in ("hard", "soft")
    # the reported score is the gated one: a label is assigned exactly when its score clears the threshold
    for p in preds:
        for lab, th in zip(tagger.manifest.labels("topic"), tagger.manifest.thresholds("topic")):
            assert (lab in p.labels["topic"]) == (p.scores["topic"][lab] >= th - 1e-6)


def test_serving_imports_no_training_libraries():
    code = "import sys, tagger.model, tagger.api; tagger.model.Tagger(__import__('pathlib').Path(sys.argv[1])); " \
           "bad=[m for m in ('sklearn','lightgbm','mlflow','skl2onnx') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", code, str(BUNDLE)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(
    "break_it,reason",
    [
        # The sparse serving path does not open the graph; the graph's hash catches it first.
        (lambda d: (d / MODEL_FILE).write_bytes(b"not onnx"), "model.onnx (cannot be loaded|does not match the hash)"),
        (lambda d: (d / MANIFEST_FILE).write_text("{", encoding="utf-8"), "not valid JSON"),
        (lambda d: _edit(d, lambda m: m.update(format_version=99)), "format_version 99"),
        (lambda d: _edit(d, lambda m: m["heads"]["measure"]["labels"].append("extra")), "labels and thresholds must be"),
        (
            lambda d: _edit(d, lambda m: (m["heads"]["measure"]["labels"].append("extra"), m["heads"]["measure"]["thresholds"].append(0.5))),
            "ONNX output has 7 columns, manifest lists 8 labels",
        ),
        (lambda d: _edit(d, lambda m: m["heads"]["topic"].update(output="nope")), "ONNX output 'nope' not in graph"),
        (lambda d: (d / "userdict.txt").write_text("篡改 1\n", encoding="utf-8"), "does not match the hash"),
        (lambda d: _edit(d, lambda m: m["heads"]["topic"]["gate"]["allowed"].update(nonsense=[])), "gate rule for 'nonsense'"),
        (lambda d: _edit(d, lambda m: m["heads"]["topic"]["gate"].update(mode="sometimes")), "gate must name a head"),
    ],
)
def test_corrupt_bundle_refuses_to_load(tmp_path, break_it, reason):
    d = tmp_path / "bundle"
    shutil.copytree(BUNDLE, d)
    break_it(d)
    with pytest.raises(InvalidBundle, match=reason):
        Tagger(d)


def _edit(d, fn):
    m = json.loads((d / MANIFEST_FILE).read_text(encoding="utf-8"))
    fn(m)
    (d / MANIFEST_FILE).write_text(json.dumps(m), encoding="utf-8")


def test_serve_refuses_corrupt_bundle_with_one_line(tmp_path):
    d = tmp_path / "bundle"
    shutil.copytree(BUNDLE, d)
    (d / MODEL_FILE).write_bytes(b"garbage")
    r = run_cli("serve", "--model", str(d), "--port", "0")
    assert r.returncode == 1
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "model.onnx does not match the hash" in lines[0]
