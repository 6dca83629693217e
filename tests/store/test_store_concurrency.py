"""Concurrent writers on one store, on a SQLite file and (when TAGGER_TEST_POSTGRES_URL is
set, as in CI) a real PostgreSQL: threads, `tagger ingest` processes and simultaneous
`POST /v1/documents?store=true` of the same new document all succeed, the losers of the race
report `unchanged`, and the store ends with exactly one copy of each document."""

import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, select

from tagger.api import create_app
from tagger.config import Settings
from tagger.ingest.documents import load_documents
from tagger.ingest.segment import segment
from tagger.store.db import Store, clause_tags, clauses, documents
from tagger.tagging import tag_clauses

from ..conftest import DOCS, ROOT, serve
from .test_store import BACKENDS, _fresh_url

WRITERS = 8


@pytest.fixture(scope="module")
def tagged(tagger):
    (doc,) = load_documents(DOCS / "extra" / "x001.txt")
    return doc, tag_clauses(tagger, [c.record() for c in segment(doc)])


def _rows(url: str) -> tuple[int, int, int]:
    """(documents, clauses, clause tags) as stored."""
    with Store(url).engine.connect() as c:
        return tuple(c.execute(select(func.count()).select_from(t)).scalar_one() for t in (documents, clauses, clause_tags))


def _all_at_once(n: int, fn):
    # A barrier so that every writer reaches the store together, not one after the other.
    gate = threading.Barrier(n)

    def run(_):
        gate.wait()
        return fn()

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shared", [True, False], ids=["one-store", "store-per-writer"])
def test_threads_ingest_one_new_document(backend, shared, tagged, tmp_path):
    doc, recs = tagged
    url = _fresh_url(backend, tmp_path)
    # One Store shared like the API's; or one each, opened together on an empty database
    # like separate processes (the schema is created concurrently too).
    one = Store(url) if shared else None

    def stores():
        return one or Store(url)

    got = _all_at_once(WRITERS, lambda: stores().ingest(doc, recs, "v1").status)
    assert sorted(got) == ["inserted"] + ["unchanged"] * (WRITERS - 1)
    # a tag row per label of the multi-label heads, and one per clause for its kind
    n_tags = sum(len(r[h]) for r in recs for h in ("topic", "measure", "industry")) + len(recs)
    assert _rows(url) == (1, len(recs), n_tags)

    # A new model at once from every writer: one re-tags, the others find it done.
    got = _all_at_once(WRITERS, lambda: stores().ingest(doc, recs, "v2").status)
    assert sorted(got) == ["retagged"] + ["unchanged"] * (WRITERS - 1)
    assert _rows(url) == (1, len(recs), n_tags)


# `tagger ingest` with one test hook: every process opens the store and reaches each document's
# store step at the same moment (a barrier of files), so that the race happens on every run
# instead of depending on how the processes happen to be scheduled.
IN_STEP = """
import atexit, os, sys, time
from pathlib import Path
from tagger import store
from tagger.cli import main

gate, n = Path(sys.argv[1]), int(sys.argv[2])
atexit.register(lambda: (gate / "exited").touch())  # a process that died must not hang the other

def in_step(key):
    (gate / f"{key}.{os.getpid()}").touch()
    while len(list(gate.glob(f"{key}.*"))) < n and not (gate / "exited").exists():
        time.sleep(0.002)

init, ingest = store.Store.__init__, store.Store.ingest
def stepped_init(self, *a, **kw):
    in_step("open")
    init(self, *a, **kw)
def stepped_ingest(self, doc, *a, **kw):
    in_step(doc.id)
    return ingest(self, doc, *a, **kw)
store.Store.__init__, store.Store.ingest = stepped_init, stepped_ingest
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_ingest_processes_on_an_empty_store(backend, tmp_path):
    url = _fresh_url(backend, tmp_path)
    paths = sorted((DOCS / "extra").glob("*.txt"))[:4]
    docs = [d for p in paths for d in load_documents(p)]
    n_clauses = sum(len(segment(d)) for d in docs)
    gate = tmp_path / "gate"
    gate.mkdir()
    cmd = [sys.executable, "-c", IN_STEP, str(gate), "2", "ingest", *map(str, paths), "--database-url", url]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0 and "Traceback" not in err, err
    # Every document inserted by exactly one of the two; the other found it unchanged.
    inserted = [int(m.group(1)) if (m := re.search(r"inserted (\d+)", err)) else 0 for _, err in outs]
    unchanged = [int(m.group(1)) if (m := re.search(r"unchanged (\d+)", err)) else 0 for _, err in outs]
    assert sum(inserted) == sum(unchanged) == len(docs)
    assert _rows(url)[:2] == (len(docs), n_clauses)


@pytest.mark.parametrize("backend", BACKENDS)
def test_simultaneous_http_stores_of_one_new_document(backend, tagger, tmp_path, monkeypatch):
    url = _fresh_url(backend, tmp_path)
    monkeypatch.setenv("TAGGER_ALLOW_ANONYMOUS_WRITES", "1")  # a loopback-only test server
    path = DOCS / "extra" / "x002.txt"
    gen = serve(create_app(Settings(database_url=url), tagger=tagger))
    base = next(gen)
    try:
        files = {"file": (path.name, path.read_bytes(), "text/plain")}
        got = _all_at_once(WRITERS, lambda: httpx.post(base + "/v1/documents?store=true", files=files, timeout=300))
    finally:
        next(gen, None)
    assert [r.status_code for r in got] == [200] * WRITERS, [r.text for r in got if r.status_code != 200]
    assert sorted(r.json()["stored"][0]["status"] for r in got) == ["inserted"] + ["unchanged"] * (WRITERS - 1)
    assert _rows(url)[:2] == (1, got[0].json()["count"])
