"""Evidence work per request is bounded (tagger/api/routes/tag.py, tagger/api/limits.py): one
100,000-character clause with evidence (the default) grew the server by ~100 MB/s to 6.9 GB;
its cost was counted as one clause's, so it ran in a thread of the server process; and a
document with a run without punctuation was one such clause. Real HTTP against uvicorn on a
loopback port, with the committed bundle."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from tagger.api import create_app
from tagger.api.routes.tag import batch_tag, work_cost
from tagger.config import Settings
from tagger.ingest.segment import HARD_MAX_CHARS

from ..conftest import ROOT, serve


@pytest.fixture(scope="module")
def run_text() -> str:
    """Policy text with every punctuation mark and space taken out: one long 'sentence'."""
    lines = (ROOT / "labels" / "clauses.jsonl").read_text(encoding="utf-8").splitlines()[:1500]
    return "".join(re.sub(r"[^\w]", "", json.loads(line)["text"]) for line in lines)


@pytest.fixture(scope="module")
def app(tmp_path_factory, tagger):
    settings = Settings(work_processes=0, database_url=f"sqlite:///{tmp_path_factory.mktemp('db') / 'limits.db'}")
    return create_app(settings, tagger=tagger)


@pytest.fixture(scope="module")
def base_url(app):
    yield from serve(app)


def _rss_mb() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) // 1024 for line in fh if line.startswith("VmRSS"))


def test_100k_char_clause_with_evidence_is_413_at_once(base_url, run_text):
    text = run_text[:100_000]
    assert len(text) == 100_000
    rss = _rss_mb()
    t0 = time.perf_counter()
    for body in ({"clauses": [{"id": "big", "text": text}]}, {"text": text}):
        r = httpx.post(base_url + "/v1/tag", json=body, timeout=60)
        assert r.status_code == 413, r.text[:300]
        detail = r.json()["detail"]
        assert "100000 characters" in detail and "1000" in detail and "evidence=false" in detail
    assert time.perf_counter() - t0 < 5  # it ran for minutes (evidence is quadratic in length)
    assert _rss_mb() - rss < 300  # and grew by ~100 MB/s
    # Without evidence the same clause is tagged (linear cost), off the event loop.
    r = httpx.post(base_url + "/v1/tag?evidence=false", json={"clauses": [{"id": "big", "text": text}]}, timeout=60)
    assert r.status_code == 200 and r.json()["count"] == 1


def test_evidence_limit_is_a_setting_and_clauses_at_the_limit_get_evidence(tmp_path, run_text, tagger):
    st = Settings(max_evidence_clause_chars=300, work_processes=0, database_url=f"sqlite:///{tmp_path / 'l.db'}")
    for url in serve(create_app(st, tagger=tagger)):
        r = httpx.post(url + "/v1/tag", json={"clauses": [{"id": "a", "text": run_text[:300]}, {"id": "b", "text": run_text[:301]}]}, timeout=60)
        assert r.status_code == 413 and "'b' has 301 characters" in r.json()["detail"]
        r = httpx.post(url + "/v1/tag", json={"clauses": [{"id": "a", "text": run_text[:300]}]}, timeout=60)
        assert r.status_code == 200 and "evidence" in r.json()["data"][0]


def test_default_evidence_limit_is_above_the_segmenter_cap():
    # Documents are segmented into clauses of at most HARD_MAX_CHARS: never refused for evidence.
    assert Settings().max_evidence_clause_chars >= HARD_MAX_CHARS


def test_work_cost_counts_clause_length():
    threshold = Settings().work_process_min_clauses
    # A short clause with evidence stays with the batcher (shared calls, low latency)...
    assert work_cost([120], evidence=True) <= threshold
    assert work_cost([120], evidence=True, method="occlusion") <= threshold
    # ...a long one is counted as what it costs ("cost 50 is not above 50" before): occlusion
    # grows with the square of the length, contributions with the length.
    assert work_cost([1000], evidence=True, method="occlusion") > threshold
    assert work_cost([1000], evidence=True) == 3 * work_cost([1000], evidence=False)
    assert work_cost([100] * 17, evidence=True) > threshold
    assert work_cost([100_000], evidence=False) > threshold
    assert work_cost([100] * 50, evidence=False) == 50
    assert work_cost([], evidence=True) == 0


def _record_calls(monkeypatch, app) -> list[str]:
    """Which path each /v1/tag took: 'heavy' (worker process, or a thread without them),
    'thread' (the batcher in the work pool); neither: tagged on the event loop."""
    calls: list[str] = []
    pool = app.state.pool
    run, run_heavy = pool.run, pool.run_heavy

    async def spy_run(fn, *args):
        if fn is batch_tag:
            calls.append("thread")
        return await run(fn, *args)

    async def spy_heavy(fn, *args, **kwargs):
        calls.append("heavy")
        return await run_heavy(fn, *args, **kwargs)

    monkeypatch.setattr(pool, "run", spy_run)
    monkeypatch.setattr(pool, "run_heavy", spy_heavy)
    # The batcher holds the pool's run method from start-up: point it at the spy too.
    monkeypatch.setattr(app.state.batcher, "_run", spy_run)
    return calls


def test_long_clauses_go_off_the_event_loop_and_out_of_the_server_process(monkeypatch, app, base_url, run_text):
    calls = _record_calls(monkeypatch, app)
    # One 1,000-character clause with occlusion evidence: ~0.4 s of work, the heavy path (a worker process).
    r = httpx.post(base_url + "/v1/tag?evidence_method=occlusion", json={"text": run_text[:1000]}, timeout=60)
    assert r.status_code == 200 and "evidence" in r.json()["data"][0]
    assert calls == ["heavy"]
    # With contribution evidence (the default) it is a few ms: 5 units x 3 for evidence,
    # within TAGGER_INLINE_CLAUSES (16), so tagged on the event loop; two of them in a thread.
    calls.clear()
    r = httpx.post(base_url + "/v1/tag", json={"text": run_text[:1000]}, timeout=60)
    assert r.status_code == 200 and "evidence" in r.json()["data"][0]
    assert calls == []
    r = httpx.post(base_url + "/v1/tag", json={"clauses": [{"id": "a", "text": run_text[:1000]}, {"id": "b", "text": run_text[:1000]}]}, timeout=60)
    assert r.status_code == 200 and calls == ["thread"]
    # One 10,000-character clause without evidence: not on the event loop (~25 ms there).
    calls.clear()
    r = httpx.post(base_url + "/v1/tag?evidence=false", json={"text": run_text[:10_000]}, timeout=60)
    assert r.status_code == 200 and calls == ["thread"]
    # A short clause without evidence is still tagged on the event loop.
    calls.clear()
    r = httpx.post(base_url + "/v1/tag?evidence=false", json={"text": run_text[:100]}, timeout=60)
    assert r.status_code == 200 and calls == []


@pytest.mark.parametrize("evidence", [False, True])
def test_document_with_a_run_without_punctuation_gets_bounded_clauses(base_url, run_text, evidence):
    # With evidence a shorter run keeps the test fast (~30 ms per 300-character clause).
    run = run_text[: 2_000 if evidence else 100_000]
    text = "第一条 对人工智能企业给予房租补贴。\n" + run + "\n第二条 支持企业开展技术攻关。"
    t0 = time.perf_counter()
    r = httpx.post(base_url + f"/v1/documents?evidence={str(evidence).lower()}", files={"file": ("run.txt", text.encode())}, timeout=120)
    assert r.status_code == 200, r.text[:300]
    assert time.perf_counter() - t0 < 60
    data = r.json()["data"]
    assert max(len(d["text"]) for d in data) <= HARD_MAX_CHARS
    cut = [d for d in data if d.get("hard_cut")]
    assert "".join(d["text"] for d in cut) == run
    assert len(cut) == len(data) - 2 and not data[0].get("hard_cut") and not data[-1].get("hard_cut")
    assert all(("evidence" in d) == evidence for d in data)
