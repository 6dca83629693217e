"""Drift over HTTP (issue 22): real uvicorn, the committed bundle with its drift reference."""

import re

import httpx
import pytest

from tagger.api import create_app
from tagger.config import Settings
from tagger.model.inference import Tagger

from ..conftest import DOCS, serve
from ..drift_bundle import FOREIGN, profiled_bundle


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    bundle = profiled_bundle(tmp_path_factory, "api-bundle")
    settings = Settings(database_url=f"sqlite:///{tmp_path_factory.mktemp('db') / 'api.db'}", allow_anonymous_writes=True)
    yield from serve(create_app(settings, tagger=Tagger(bundle)))


def test_documents_answer_carries_drift_per_document_and_the_store_keeps_it(base_url):
    path = DOCS / "miit-2018-ai-industry-three-year-action-plan.txt"
    r = httpx.post(base_url + "/v1/documents?evidence=false&store=true", files={"file": (path.name, path.read_bytes(), "text/plain")},
                   timeout=120)
    assert r.status_code == 200, r.text
    d = r.json()["drift"]["documents"]["miit-2018-ai-industry-three-year-action-plan"]
    assert d["verdict"] == "ok" and 0 < d["oov_rate"] < 0.2 and d["clauses"] == r.json()["count"]
    r = httpx.post(base_url + "/v1/documents?evidence=false", json={"text": "\n".join(FOREIGN), "doc": "recipes"}, timeout=60)
    assert r.status_code == 200, r.text
    j = r.json()["drift"]
    assert j["documents"]["recipes"]["verdict"] == "retrain"
    assert "鸡蛋" in {t["term"] for t in j["unseen_terms"]}


def test_recent_window_merges_the_requests(base_url):
    j = httpx.get(base_url + "/v1/drift").json()
    assert j["window"]["requests"] >= 2 and j["clauses"] > len(FOREIGN)
    assert j["verdict"] in ("ok", "watch", "retrain") and "documents" not in j
    j = httpx.get(base_url + "/v1/drift?documents=true").json()
    assert set(j["documents"]) >= {"recipes", "miit-2018-ai-industry-three-year-action-plan"}


def test_metric_labels_are_bounded(base_url):
    for i in range(3):  # new documents, new terms: no new label values
        text = FOREIGN[i] + FOREIGN[i + 1] + f"第{i}号"
        assert httpx.post(base_url + "/v1/documents?evidence=false", json={"text": text, "doc": f"new-{i}"}, timeout=60).status_code == 200
    body = httpx.get(base_url + "/metrics").text
    drift = [l for l in body.splitlines() if l.startswith("tagger_drift")]
    labels = {m for l in drift for m in re.findall(r'(\w+)="([^"]*)"', l)}
    assert {k for k, _ in labels} <= {"verdict", "le"}
    assert {v for k, v in labels if k == "verdict"} <= {"ok", "watch", "retrain", "no_reference"}
    counted = sum(float(l.split()[-1]) for l in drift if l.startswith("tagger_drift_documents_total{"))
    assert counted >= 5 and any(l.startswith('tagger_drift_documents_total{verdict="retrain"}') for l in drift)
    assert any(l.startswith("tagger_drift_document_oov_rate_count") and float(l.split()[-1]) >= 5 for l in drift)
    assert any(l.startswith("tagger_drift_window_score") for l in drift)


def test_tag_requests_feed_the_recent_window(base_url):
    """A pipeline that only calls POST /v1/tag is told too: its clauses join the window,
    grouped by their "doc" when they carry one; clauses without one add words, not documents.
    Both the batched path (small requests) and the work-pool path (a big one) count."""
    before = httpx.get(base_url + "/v1/drift?documents=true").json()
    small = [{"id": f"r{i}", "text": t, "doc": "recipes-via-tag"} for i, t in enumerate(FOREIGN)]
    assert httpx.post(base_url + "/v1/tag?evidence=false", json={"clauses": small}, timeout=60).status_code == 200
    loose = [{"id": f"x{i}", "text": FOREIGN[i % len(FOREIGN)] + f"第{i}次"} for i in range(400)]
    assert httpx.post(base_url + "/v1/tag?evidence=false", json={"clauses": loose}, timeout=120).status_code == 200
    j = httpx.get(base_url + "/v1/drift?documents=true").json()
    assert j["window"]["requests"] == before["window"]["requests"] + 2
    assert j["clauses"] == before["clauses"] + len(small) + len(loose)
    assert j["documents"]["recipes-via-tag"]["verdict"] == "retrain"
    assert "鸡蛋" in {t["term"] for t in j["unseen_terms"]}
    metrics = httpx.get(base_url + "/metrics").text
    assert 'verdict=""' not in metrics


def test_window_keeps_one_accumulator_per_minute(tmp_path_factory):
    """Every /v1/tag batch adds to the window: it keeps one merged accumulator per minute (a
    list of every request's, merged on each request, cut the API to 25 requests/s), and its
    report still counts every request and clause."""
    from tagger.api.routes.drift import DriftWindow
    from tagger.model.drift import DriftProfiler
    from tagger.tagging import tag_clauses

    tagger = Tagger(profiled_bundle(tmp_path_factory, "window-bundle"))
    profiler = DriftProfiler.for_tagger(tagger)
    window = DriftWindow()
    window.bind(profiler)
    for i in range(300):
        acc = profiler.new_accumulator()
        tag_clauses(tagger, [{"id": f"c{i}", "doc": f"d{i % 7}", "text": FOREIGN[i % len(FOREIGN)]}], drift=(profiler, acc))
        window.add(acc)
    assert len(window.buckets) <= 2  # 300 requests within a minute or two
    rep = window.report(documents=True)
    assert rep["window"]["requests"] == 300 and rep["clauses"] == 300 and len(rep["documents"]) == 7
    assert rep["verdict"] == "retrain"
