"""The annotators' loop on a document the labels have never seen, through the real commands:
segment + rank (`review uncertain`) -> Label Studio tasks (`labels export`) -> an export in
Label Studio 1.23's own JSON shape, annotated -> `labels import` (new clauses added, the
document copied into the corpus) -> `labels validate` -> `labels stats` -> `tagger-train oof`
learns from the new clauses.

Everything runs on a small labels folder in tmp (8 Zhejiang county policies), so the real
`labels/` is never touched and training takes seconds."""

import copy
import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from tagger.annotate.labels import data_hash, trainable

from ..conftest import ROOT, run_cli

pytestmark = pytest.mark.slow  # ~25 s on 2 busy cores: ten CLI processes and a training run

DOCS = ["zj-17", "zj-414", "zj-434", "zj-438", "zj-448", "zj-499", "zj-507", "zj-558"]
NEW_DOC = ROOT / "tests" / "fixtures" / "new_documents" / "wuxing-2018-graduates-excerpt.txt"
LS_EXPORT = ROOT / "tests" / "fixtures" / "label_studio" / "export.json"


@pytest.fixture
def labels_dir(tmp_path):
    """A labels folder of its own: taxonomy, 8 documents with their SOURCES rows, their labels."""
    root = tmp_path / "labels"
    (root / "documents" / "zhejiang").mkdir(parents=True)
    shutil.copy(ROOT / "labels" / "taxonomy.yaml", root / "taxonomy.yaml")
    src = ROOT / "labels" / "documents" / "zhejiang"
    with open(src / "SOURCES.tsv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    with open(root / "documents" / "zhejiang" / "SOURCES.tsv", "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n")
        w.writeheader()
        w.writerows(r for r in rows if r["doc"] in DOCS)
    for d in DOCS:
        shutil.copy(src / f"{d}.txt", root / "documents" / "zhejiang" / f"{d}.txt")
    recs = [l for l in (ROOT / "labels" / "clauses.jsonl").read_text(encoding="utf-8").splitlines() if json.loads(l)["doc"] in DOCS]
    (root / "clauses.jsonl").write_text("\n".join(recs) + "\n", encoding="utf-8")
    return root


def _ls_export(tasks: list[dict], annotate) -> list[dict]:
    """Label Studio 1.23's JSON export of a project holding ``tasks``: every field of a task
    and of an annotation as Label Studio wrote them in tests/fixtures/label_studio/export.json,
    with this project's data and the annotations ``annotate(k, task)`` returns:
    a list of (user, result, extra fields)."""
    template = json.loads(LS_EXPORT.read_text(encoding="utf-8"))[0]
    out = []
    n_ann = 0
    for k, t in enumerate(tasks):
        task = copy.deepcopy(template)
        task.update(id=100 + k, inner_id=k + 1, data=t["data"], predictions=[500 + k], total_predictions=1, project=3)
        task["annotations"] = []
        for user, result, extra in annotate(k, t):
            n_ann += 1
            a = copy.deepcopy(template["annotations"][0])
            a.update(id=n_ann, completed_by=user, result=result, task=100 + k, project=3, updated_by=user,
                     created_at=f"2026-12-0{1 + n_ann % 5}T09:00:00.000000Z", updated_at=f"2026-12-0{1 + n_ann % 5}T09:00:00.000000Z",
                     unique_id=hashlib.md5(f"{k}-{n_ann}".encode()).hexdigest())
            a["prediction"] = {**a["prediction"], "id": 500 + k, "task": 100 + k, "result": t["predictions"][0]["result"]}
            a.update(extra)
            task["annotations"].append(a)
        task["total_annotations"] = len(task["annotations"])
        out.append(task)
    return out


def _choices(result: list[dict]) -> dict:
    return {r["from_name"]: r["value"]["choices"] for r in result}


def test_new_document_round_trip(tmp_path, labels_dir):
    env = {"TAGGER_LABELS_DIR": str(labels_dir), "TAGGER_VAR_DIR": str(tmp_path / "var")}
    labels = labels_dir / "clauses.jsonl"
    before = [json.loads(l) for l in labels.read_text(encoding="utf-8").splitlines()]
    r = run_cli("labels", "validate", env=env)
    assert r.returncode == 0, r.stderr

    # A new document arrives in a folder of its own (with its SOURCES.tsv row: doc id, year).
    incoming = tmp_path / "incoming"
    shutil.copytree(NEW_DOC.parent, incoming)
    doc_file = incoming / NEW_DOC.name
    queue, tasks_file = tmp_path / "queue.jsonl", tmp_path / "tasks.json"
    r = run_cli("review", "uncertain", str(doc_file), "--n", "50", "-o", str(queue), env=env)
    assert r.returncode == 0, r.stderr
    q = [json.loads(l) for l in queue.read_text(encoding="utf-8").splitlines()]
    assert len(q) == 8 and {x["doc"] for x in q} == {"wuxing-2018-graduates-excerpt"}
    assert {x["source_file"] for x in q} == {str(doc_file.resolve())}
    assert {x["source_sha256"] for x in q} == {hashlib.sha256(doc_file.read_bytes()).hexdigest()}

    r = run_cli("labels", "export", "--ids", str(queue), "-o", str(tasks_file), env=env)
    assert r.returncode == 0, r.stderr
    tasks = json.loads(tasks_file.read_text(encoding="utf-8"))
    assert [t["data"]["clause_id"] for t in tasks] == [x["id"] for x in q]
    assert all(t["data"]["why"].startswith("不确定 uncertain #") and "new clause" in t["data"]["current"] for t in tasks)
    assert all(_choices(t["predictions"][0]["result"]).get("kind") for t in tasks)  # the model's kind, pre-selected

    # The annotators accept the pre-annotation, except: task 0 is submitted without a kind,
    # and on task 1 a second annotator chose another measure.
    ann1, ann2 = {"id": 4, "email": "anno@example.org"}, {"id": 5, "email": "second@example.org"}
    SECOND_MEASURE = "housing" if _choices(tasks[1]["predictions"][0]["result"]).get("measure") != ["housing"] else "grant"

    def first_pass(k, t):
        result = copy.deepcopy(t["predictions"][0]["result"])
        if k == 0:
            result = [x for x in result if x["from_name"] != "kind"]
        anns = [(ann1, result, {})]
        if k == 1:
            other = [x for x in copy.deepcopy(result) if x["from_name"] != "measure"]
            other.append({"from_name": "measure", "to_name": "text", "type": "choices", "value": {"choices": [SECOND_MEASURE]}})
            anns.append((ann2, other, {}))
        return anns

    export1 = tmp_path / "project-3-export.json"
    export1.write_text(json.dumps(_ls_export(tasks, first_pass), ensure_ascii=False), encoding="utf-8")

    # --dry-run: lists what would happen, writes nothing.
    snapshot = labels.read_bytes()
    r = run_cli("labels", "import", str(export1), "--dry-run", env=env)
    assert r.returncode == 2, r.stderr  # a refusal: one conflict, one incomplete task
    adds = [l.split("\t") for l in r.stdout.splitlines() if l.startswith("add\t")]
    assert sorted(a[1] for a in adds) == sorted(x["id"] for x in q[2:])
    assert f"document\twuxing-2018-graduates-excerpt\tcopy\timported/{NEW_DOC.name}" in r.stdout
    assert f"conflict: {q[1]['id']}" in r.stderr and "annotators disagree" in r.stderr and "second@example.org" in r.stderr
    assert f"incomplete: {q[0]['id']}" in r.stderr and "kind" in r.stderr
    assert "would add 6, would update 0" in r.stderr
    assert labels.read_bytes() == snapshot and not (labels_dir / "documents" / "imported").exists()
    assert not (labels_dir / "audit.jsonl").exists()

    # The real import applies the six, refuses the two, copies the document with its metadata.
    r = run_cli("labels", "import", str(export1), env=env)
    assert r.returncode == 2, r.stderr
    assert "added 6, updated 0, unchanged 0, conflicts 1, incomplete 1" in r.stderr
    copied = labels_dir / "documents" / "imported" / NEW_DOC.name
    assert copied.read_bytes() == doc_file.read_bytes()
    assert "wuxing-2018-graduates-excerpt" in (copied.parent / "SOURCES.tsv").read_text(encoding="utf-8")
    assert "6 of 8 clauses labeled" in r.stderr  # validate would list the other two
    assert run_cli("labels", "validate", env=env).returncode == 1

    # Settled in Label Studio: the kind chosen, one of the two annotations marked ground truth.
    def second_pass(k, t):
        anns = first_pass(k, t)
        if k == 0:
            anns[0][1].append({"from_name": "kind", "to_name": "text", "type": "choices", "value": {"choices": ["provision"]}})
        if k == 1:
            anns[1] = (ann2, anns[1][1], {"ground_truth": True})
        return anns

    export2 = tmp_path / "project-3-export-2.json"
    export2.write_text(json.dumps(_ls_export(tasks, second_pass), ensure_ascii=False), encoding="utf-8")
    r = run_cli("labels", "import", str(export2), env=env)
    assert r.returncode == 0, r.stderr
    assert "added 2, updated 0, unchanged 6, conflicts 0, incomplete 0" in r.stderr

    after = {json.loads(l)["id"]: json.loads(l) for l in labels.read_text(encoding="utf-8").splitlines()}
    assert len(after) == len(before) + 8
    new = [after[x["id"]] for x in q]
    assert all(n["text"] == x["text"] and n["section"] == x["section"] and n["doc"] == x["doc"] for n, x in zip(new, q))
    assert after[q[0]["id"]]["kind"] == "provision" and after[q[1]["id"]]["measure"] == [SECOND_MEASURE]
    assert after[q[1]["id"]]["source"] == "annotator:label-studio:second@example.org"
    assert {n["source"] for n in new[2:]} == {"annotator:label-studio:anno@example.org"}
    for n, t in zip(new[2:], tasks[2:]):  # accepted pre-annotations, as chosen
        pre = _choices(t["predictions"][0]["result"])
        assert {h: n[h] if h != "kind" else [n[h]] for h in ("topic", "measure", "industry", "kind")} == {
            h: sorted(pre.get(h, [])) for h in ("topic", "measure", "industry", "kind")}
    audit = [json.loads(l) for l in (labels_dir / "audit.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(audit) == 8 and all(a["previous"] is None for a in audit)

    r = run_cli("labels", "validate", env=env)
    assert r.returncode == 0, r.stderr
    r = run_cli("labels", "stats", "--json", env=env)
    stats = json.loads(r.stdout)
    assert stats["clauses"] == len(before) + 8
    assert stats["documents"]["wuxing-2018-graduates-excerpt"]["clauses"] == 8
    assert stats["sources"]["annotator:label-studio:anno@example.org"] == 7

    # Training learns from them: the out-of-fold run's data covers the 8 new clauses.
    oof = tmp_path / "oof.json"
    r = subprocess.run(
        [sys.executable, "-m", "training.cli", "oof", "--fast", "--splits", "3", "-o", str(oof)],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(oof.read_text(encoding="utf-8"))
    assert set(x["id"] for x in q) <= set(doc["ids"]) and len(doc["ids"]) == len(before) + 8
    assert doc["data_hash"] == data_hash(trainable(after.values())) != data_hash(trainable(before))
    assert "ETA" in r.stderr
