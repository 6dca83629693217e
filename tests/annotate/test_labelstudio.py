"""Label Studio round-trip: export tasks + config, import an export in Label Studio's
JSON format (built from its documented task format), conflicts, audit trail, rejection."""

import json
from xml.etree import ElementTree

import pytest

from tagger.annotate.labelstudio import labeling_config
from tagger.taxonomy import load_taxonomy

from ..conftest import ROOT, run_cli

TAX = load_taxonomy(ROOT / "labels" / "taxonomy.yaml")
FIXTURE = ROOT / "tests" / "fixtures" / "label_studio_export.json"


@pytest.fixture
def labels(tmp_path):
    recs = (ROOT / "labels" / "clauses.jsonl").read_text(encoding="utf-8").splitlines()[:12]
    p = tmp_path / "clauses.jsonl"
    p.write_text("\n".join(recs) + "\n", encoding="utf-8")
    return p


def test_config_has_multichoice_groups_a_single_kind_and_id_aliases():
    root = ElementTree.fromstring(labeling_config(TAX))
    groups = {c.get("name"): c for c in root.iter("Choices")}
    assert set(groups) == {"topic", "measure", "industry", "kind"}
    for head, c in groups.items():
        assert c.get("choice") == ("single-radio" if head == "kind" else "multiple") and c.get("toName") == "text"
        assert [x.get("alias") for x in c.iter("Choice")] == list(TAX.labels[head])
    assert "租金/场地补贴 rent_subsidy" in [x.get("value") for x in groups["measure"].iter("Choice")]


def _export(tmp_path, labels):
    out = tmp_path / "tasks.json"
    r = run_cli("labels", "export", "--format", "label-studio", "--labels", str(labels), "-o", str(out))
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text(encoding="utf-8"))


def _annotate(tasks, edits: dict[int, dict], cancelled=(), unannotated=()):
    """What Label Studio's JSON export looks like after annotators worked on the tasks."""
    out = []
    for k, t in enumerate(tasks):
        task = {"id": 1000 + k, "data": t["data"], "predictions": t.get("predictions", []), "project": 7, "annotations": []}
        if k in unannotated:
            out.append(task)
            continue
        labels = edits.get(k) or {h: [x for x in t["data"][f"current_{h}"].split(", ") if x] for h in ("topic", "measure", "industry")}
        result = [
            {"id": f"r{k}{h}", "from_name": h, "to_name": "text", "type": "choices", "origin": "manual", "value": {"choices": v}}
            for h, v in labels.items()
            if v
        ]
        task["annotations"].append(
            {
                "id": 5000 + k,
                "completed_by": {"id": 3, "email": "anno@example.org"} if k % 2 else 3,
                "result": result,
                "was_cancelled": k in cancelled,
                "ground_truth": False,
                "created_at": "2026-11-20T10:00:00.000000Z",
                "updated_at": f"2026-11-2{k % 7}T10:00:00.000000Z",
                "lead_time": 12.5,
                "task": 1000 + k,
            }
        )
        out.append(task)
    return out


def test_round_trip_updates_audits_and_reports_conflicts(tmp_path, labels):
    tasks = _export(tmp_path, labels)
    assert len(tasks) == 12 and tasks[0]["predictions"][0]["model_version"]
    exported = tasks[1]["data"]
    edits = {1: {"topic": ["finance"], "measure": ["rent_subsidy", "grant"], "industry": []}, 2: {"topic": ["talent"], "measure": [], "industry": ["chips"]}, 3: {"topic": [], "measure": ["housing"], "industry": []}}
    ls_export = _annotate(tasks, edits, cancelled=(4,), unannotated=(5,))
    # Someone edits clause 3 in the repository after the export: its import must conflict.
    recs = [json.loads(l) for l in labels.read_text(encoding="utf-8").splitlines()]
    recs[3]["measure"] = ["procurement"]
    labels.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")

    f = tmp_path / "project-7-export.json"
    f.write_text(json.dumps(ls_export, ensure_ascii=False), encoding="utf-8")
    r = run_cli("labels", "import", str(f), "--labels", str(labels))
    assert r.returncode == 2  # a conflict is a refusal, not silent
    assert f"conflict: {recs[3]['id']}" in r.stderr
    assert "added 0, updated 2, unchanged 7, conflicts 1, incomplete 0, tasks without annotation 2" in r.stderr, r.stderr[-300:]

    after = {json.loads(l)["id"]: json.loads(l) for l in labels.read_text(encoding="utf-8").splitlines()}
    one = after[exported["clause_id"]]
    assert one["measure"] == ["grant", "rent_subsidy"] and one["source"] == "annotator:label-studio:anno@example.org"
    assert after[recs[3]["id"]]["measure"] == ["procurement"]  # not overwritten
    audit = [json.loads(l) for l in (tmp_path / "audit.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {a["id"] for a in audit} == {recs[1]["id"], recs[2]["id"]}
    a1 = next(a for a in audit if a["id"] == recs[1]["id"])
    assert a1["previous"]["source"] == recs[1]["source"] and a1["file"] == f.name and a1["by"].startswith("annotator:label-studio:")

    # --force applies the conflicting one; re-importing the same file changes nothing more.
    r = run_cli("labels", "import", str(f), "--labels", str(labels), "--force")
    assert r.returncode == 0 and "updated 1" in r.stderr
    r = run_cli("labels", "import", str(f), "--labels", str(labels))
    assert r.returncode == 0 and "updated 0" in r.stderr
    assert run_cli("labels", "validate", "--file", str(labels), "--no-segmentation").returncode == 0


@pytest.mark.parametrize(
    "breakage,needle",
    [
        (lambda t: t[4]["annotations"][0]["result"].append({"from_name": "measure", "to_name": "text", "type": "choices", "value": {"choices": ["rent"]}}), "task 1004 (#5): unknown measure label id(s) ['rent']"),
        (lambda t: t[2]["data"].pop("clause_id"), "task 1002 (#3): data.clause_id is missing"),
        (lambda t: t[6]["annotations"][0]["result"].append({"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["x"]}}), "task 1006 (#7): result from unknown control 'sentiment'"),
    ],
)
def test_malformed_export_is_rejected_whole(tmp_path, labels, breakage, needle):
    tasks = _annotate(_export(tmp_path, labels), {0: {"topic": ["talent"], "measure": [], "industry": []}})
    breakage(tasks)
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
    before = labels.read_bytes()
    r = run_cli("labels", "import", str(f), "--labels", str(labels))
    assert r.returncode == 1 and needle in r.stderr
    assert labels.read_bytes() == before and not (tmp_path / "audit.jsonl").exists()


def test_kind_round_trip(tmp_path, labels):
    """kind is exported as a single choice with the model's prediction, imported as one id;
    a task without a kind choice keeps the current kind, two kinds are refused."""
    tasks = _export(tmp_path, labels)
    pred = tasks[0]["predictions"][0]["result"]
    kinds = [r["value"]["choices"] for r in pred if r["from_name"] == "kind"]
    assert len(kinds) == 1 and len(kinds[0]) == 1 and kinds[0][0] in TAX.labels["kind"]
    assert tasks[0]["data"]["current_kind"] in TAX.labels["kind"]
    before = {json.loads(l)["id"]: json.loads(l) for l in labels.read_text(encoding="utf-8").splitlines()}
    ls = _annotate(tasks, {0: {"topic": [], "measure": [], "industry": [], "kind": ["title"]},
                           1: {"topic": ["talent"], "measure": [], "industry": []}})
    f = tmp_path / "kind.json"
    f.write_text(json.dumps(ls, ensure_ascii=False), encoding="utf-8")
    r = run_cli("labels", "import", str(f), "--labels", str(labels))
    assert r.returncode == 0, r.stderr
    after = {json.loads(l)["id"]: json.loads(l) for l in labels.read_text(encoding="utf-8").splitlines()}
    c0, c1 = tasks[0]["data"]["clause_id"], tasks[1]["data"]["clause_id"]
    assert after[c0]["kind"] == "title" and after[c0]["topic"] == []
    assert after[c1]["kind"] == before[c1]["kind"] and after[c1]["topic"] == ["talent"]
    assert run_cli("labels", "validate", "--file", str(labels), "--no-segmentation").returncode == 0
    ls[0]["annotations"][0]["result"] = [{"from_name": "kind", "to_name": "text", "type": "choices", "value": {"choices": ["title", "target"]}}]
    f.write_text(json.dumps(ls, ensure_ascii=False), encoding="utf-8")
    r = run_cli("labels", "import", str(f), "--labels", str(labels))
    assert r.returncode == 1 and "'kind' takes one choice" in r.stderr


def test_not_json_or_not_a_list(tmp_path, labels):
    f = tmp_path / "x.json"
    f.write_text("{", encoding="utf-8")
    assert "not valid JSON" in run_cli("labels", "import", str(f), "--labels", str(labels)).stderr
    f.write_text('{"tasks": []}', encoding="utf-8")
    assert "expected a JSON list of tasks" in run_cli("labels", "import", str(f), "--labels", str(labels)).stderr


def test_real_label_studio_export(tmp_path):
    """An export written by Label Studio 1.23.2 itself (see tests/fixtures/label_studio/README.md)."""
    fx = ROOT / "tests" / "fixtures" / "label_studio"
    labels = tmp_path / "clauses.jsonl"
    labels.write_bytes((fx / "clauses.jsonl").read_bytes())
    r = run_cli("labels", "import", str(fx / "export.json"), "--labels", str(labels))
    assert r.returncode == 0, r.stderr
    assert "added 0, updated 2, unchanged 1, conflicts 0, incomplete 0, tasks without annotation 1" in r.stderr
    after = [json.loads(l) for l in labels.read_text(encoding="utf-8").splitlines()]
    assert after[1]["measure"] == ["grant", "rent_subsidy"] and after[1]["topic"] == ["finance"]
    assert after[2]["industry"] == ["chips"] and after[2]["source"] == "annotator:label-studio:user-1"
    assert len(after) == 12
