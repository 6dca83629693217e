"""Where an imported new clause's document goes: copied into the corpus, found there already
(queued from a corpus file), or only referenced by its sha256 when the file is gone."""

import json
import shutil

import pytest

from tagger.annotate.labelstudio import file_sha256, make_tasks
from tagger.ingest.corpus import segment_paths

from ..conftest import ROOT, run_cli

NEW_DOC = ROOT / "tests" / "fixtures" / "new_documents" / "wuxing-2018-graduates-excerpt.txt"


@pytest.fixture
def labels_dir(tmp_path):
    root = tmp_path / "labels"
    (root / "documents" / "zhejiang").mkdir(parents=True)
    shutil.copy(ROOT / "labels" / "taxonomy.yaml", root / "taxonomy.yaml")
    shutil.copy(ROOT / "labels" / "documents" / "zhejiang" / "zj-448.txt", root / "documents" / "zhejiang")
    recs = [l for l in (ROOT / "labels" / "clauses.jsonl").read_text(encoding="utf-8").splitlines() if json.loads(l)["doc"] == "zj-448"]
    (root / "clauses.jsonl").write_text("\n".join(recs) + "\n", encoding="utf-8")
    return root


def _export(doc_file, tmp_path):
    """Tasks for every clause of ``doc_file`` as 'labels export' makes them, annotated in full."""
    clauses = [c.record() | {"source_file": str(doc_file.resolve()), "source_sha256": file_sha256(doc_file)}
               for _, cs in segment_paths([doc_file]) for c in cs]
    tasks = make_tasks(clauses, None, "")
    for k, t in enumerate(tasks):
        t.update(id=k + 1, annotations=[{"id": k + 1, "completed_by": 9, "was_cancelled": False, "ground_truth": False,
                                         "created_at": "2026-12-01T00:00:00Z", "updated_at": "2026-12-01T00:00:00Z",
                                         "result": [{"from_name": "kind", "to_name": "text", "type": "choices", "value": {"choices": ["provision"]}}]}])
    f = tmp_path / "export.json"
    f.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
    return f, clauses


def test_document_gone_is_referenced_by_sha256(tmp_path, labels_dir):
    env = {"TAGGER_LABELS_DIR": str(labels_dir)}
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    doc_file = incoming / "wuxing-notice.txt"  # no SOURCES.tsv: the doc id is the file's stem
    shutil.copy(NEW_DOC, doc_file)
    export, clauses = _export(doc_file, tmp_path)
    sha = file_sha256(doc_file)
    doc_file.unlink()
    r = run_cli("labels", "import", str(export), env=env)
    assert r.returncode == 0, r.stderr
    assert "document wuxing-notice: not copied" in r.stderr and "is not there any more" in r.stderr and sha[:12] in r.stderr
    recs = {json.loads(l)["id"]: json.loads(l) for l in (labels_dir / "clauses.jsonl").read_text(encoding="utf-8").splitlines()}
    assert all(recs[c["id"]]["document_sha256"] == sha and recs[c["id"]]["kind"] == "provision" for c in clauses)
    assert not (labels_dir / "documents" / "imported").exists()
    r = run_cli("labels", "validate", env=env)
    assert r.returncode == 0 and f"{len(clauses)} records from documents not in the corpus" in r.stderr, r.stderr


def test_document_queued_from_the_corpus_is_not_copied_again(tmp_path, labels_dir):
    env = {"TAGGER_LABELS_DIR": str(labels_dir)}
    doc_file = labels_dir / "documents" / "zhejiang" / "wuxing-notice.txt"
    shutil.copy(NEW_DOC, doc_file)
    export, clauses = _export(doc_file, tmp_path)
    r = run_cli("labels", "import", str(export), "--dry-run", env=env)
    assert r.returncode == 0 and "document\twuxing-notice\tpresent\tzhejiang/wuxing-notice.txt" in r.stdout, r.stdout + r.stderr
    r = run_cli("labels", "import", str(export), env=env)
    assert r.returncode == 0 and f"added {len(clauses)}," in r.stderr, r.stderr
    assert not (labels_dir / "documents" / "imported").exists()
    r = run_cli("labels", "validate", env=env)
    assert r.returncode == 0 and "not in the corpus" not in r.stderr, r.stderr
