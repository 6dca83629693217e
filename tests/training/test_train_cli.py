"""`tagger-train train` end to end on a small slice of the real labels: real MLflow
sqlite store, registry, champion alias, exported bundle that the runtime loads."""

import json
import os
import subprocess
import sys

import pytest

from tagger.model.inference import Tagger

from ..conftest import ROOT

pytestmark = pytest.mark.slow


def _slice(tmp_path, n_docs: int) -> str:
    """The first documents up to 2022 and a quarter from 2023 on, so the time split runs."""
    from training.data import document_years

    recs = [json.loads(l) for l in (ROOT / "labels" / "clauses.jsonl").read_text(encoding="utf-8").splitlines()]
    years = document_years(ROOT / "labels" / "documents")
    all_docs = sorted({r["doc"] for r in recs})
    new = [d for d in all_docs if (years.get(d) or 0) > 2022][: n_docs // 4]
    docs = [d for d in all_docs if d not in new][: n_docs - len(new)] + new
    p = tmp_path / f"slice{n_docs}.jsonl"
    p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs if r["doc"] in docs), encoding="utf-8")
    return str(p)


def _train(tmp_path, labels, out, *extra):
    env = {**os.environ, "TAGGER_VAR_DIR": str(tmp_path / "var")}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        # logreg only: LightGBM's export and parity are covered by tests/training/test_parity.py,
        # and three runs with it took ~15 min of CI once the kind head and the gate modes came.
        [sys.executable, "-m", "training.cli", "train", "--labels", labels, "--out", str(out), "--splits", "3", "--candidates", "logreg", *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )


def test_train_registers_champion_and_exports_bundle(tmp_path, monkeypatch):
    import mlflow

    out = tmp_path / "bundle"
    r = _train(tmp_path, _slice(tmp_path, 40), out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| head | chosen |" in r.stdout and "keyword rules" in r.stdout
    tagger = Tagger(out)
    manifest = tagger.manifest.raw
    assert manifest["cv"]["grouped_by"] == "document"
    ev = manifest["evaluation"]
    assert ev["protocol"]["time_split"]["test_documents"] == 10
    assert ev["heads"]["measure"]["time"]["macro_f1"] is not None and ev["heads"]["topic"]["keyword_time"] is not None
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "time split (nested thresholds)" in card and "word list" in card
    run_id = manifest["mlflow"]["run_id"]

    # mlflow.set_tracking_uri also sets MLFLOW_TRACKING_URI in os.environ: through monkeypatch,
    # so that it does not leak into later tests of this process.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'var' / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'var' / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    champ = client.get_model_version_by_alias("policy-tagger", "champion")
    assert champ.run_id == run_id
    run = client.get_run(run_id)
    assert run.data.params["data_hash"] == manifest["training_data"]["sha256"]
    assert "topic.logreg.macro_f1" in run.data.metrics and "cv_score" in run.data.metrics
    assert "time.measure.macro_f1" in run.data.metrics and "keyword_time.industry.micro_f1" in run.data.metrics
    arts = {a.path for a in client.list_artifacts(run_id)} | {a.path for a in client.list_artifacts(run_id, "plots")}
    assert {"cv_report.json", "plots/pr_curves_measure.png", "plots/confusion_industry.png"} <= arts

    # Same data again: not worse, so the alias moves; the per-label diff is reported.
    r2 = _train(tmp_path, _slice(tmp_path, 40), tmp_path / "bundle2")
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert "F1 change per label against the previous champion" in r2.stdout
    assert str(client.get_model_version_by_alias("policy-tagger", "champion").version) == "2"

    # Labels made worse (measure labels shuffled across clauses): not champion, bundle untouched.
    recs = [json.loads(l) for l in open(_slice(tmp_path, 40), encoding="utf-8")]
    import random

    measures = [r["measure"] for r in recs]
    random.Random(0).shuffle(measures)
    for r, m in zip(recs, measures):
        r["measure"] = m
    worse = tmp_path / "worse.jsonl"
    worse.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    r4 = _train(tmp_path, str(worse), tmp_path / "bundle3")
    assert r4.returncode == 0, r4.stderr[-3000:]
    assert "not champion" in r4.stderr and not (tmp_path / "bundle3").exists()
    assert str(client.get_model_version_by_alias("policy-tagger", "champion").version) == "2"
    assert "measure" in r4.stdout and "F1 change per label against the previous champion (v2)" in r4.stdout

    # The registry bundle loads through TAGGER_MODEL_URI.
    env = {**os.environ, "TAGGER_VAR_DIR": str(tmp_path / "var"), "TAGGER_MODEL_URI": "models:/policy-tagger@champion"}
    r3 = subprocess.run([sys.executable, "-m", "tagger.cli", "tag", str(ROOT / "labels/documents/extra/x001.txt")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r3.returncode == 0, r3.stderr[-2000:]
    from tagger.tagging import model_version  # the bundle's version + the override rules' stamp

    assert json.loads(r3.stdout.splitlines()[0])["model"] == model_version(Tagger(tmp_path / "bundle2"))
