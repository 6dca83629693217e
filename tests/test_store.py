"""The analysts' store on SQLite and (when TAGGER_TEST_POSTGRES_URL is set, as in CI) a
real PostgreSQL: idempotent ingest, re-tagging, filters equal to direct SQL, facets."""

import json
import os
import shutil
import uuid

import pytest
from sqlalchemy import text

from tagger.ingest import document_from_text, load_documents
from tagger.model import Tagger
from tagger.store import ClauseQuery, Store, ingest_documents

from .conftest import DOCS, ROOT

BUNDLE = ROOT / "models" / "policy-tagger"
BACKENDS = ["sqlite"] + (["postgres"] if os.environ.get("TAGGER_TEST_POSTGRES_URL") else [])


@pytest.fixture(scope="module")
def tagger():
    return Tagger(BUNDLE)


def _fresh_url(kind: str, tmp_path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    # A fresh schema per test on the shared server: tests stay independent.
    base = os.environ["TAGGER_TEST_POSTGRES_URL"]
    schema = "t" + uuid.uuid4().hex[:10]
    from sqlalchemy import create_engine

    from tagger.store import engine_url

    with create_engine(engine_url(base)).begin() as c:
        c.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    return Store(_fresh_url(request.param, tmp_path))


@pytest.fixture(scope="module")
def corpus_docs():
    docs = []
    for p in sorted(DOCS.glob("*.txt")):
        docs += load_documents(p)
    return docs  # national plans, the outlook and the 33 pilot-zone policies


def test_ingest_is_idempotent_and_retag_records_model(store, tagger, corpus_docs, tmp_path):
    first = ingest_documents(store, tagger, corpus_docs)
    assert {r.status for r in first} == {"inserted"}
    n = store.counts()
    again = ingest_documents(store, tagger, corpus_docs)
    assert {r.status for r in again} == {"unchanged"} and store.counts() == n

    # A second real bundle with a new version: tags are replaced, the version recorded.
    other = tmp_path / "bundle-v2"
    shutil.copytree(BUNDLE, other)
    m = json.loads((other / "manifest.json").read_text(encoding="utf-8"))
    m["version"] = "test-v2"
    (other / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    retag = ingest_documents(store, Tagger(other), corpus_docs[:2])
    assert {r.status for r in retag} == {"retagged"} and store.counts() == n
    rows, total, _ = store.query(ClauseQuery(docs=[corpus_docs[0].id], limit=1000))
    assert total == len(rows) > 0 and {r["model"] for r in rows} == {"test-v2"}


def test_changed_document_replaces_its_clauses(store, tagger):
    d1 = document_from_text("第一条 对新引进企业给予最高500万元奖励。\n第二条 支持平台建设。", "doc-a")
    ingest_documents(store, tagger, d1)
    d2 = document_from_text("第一条 对新引进企业给予最高800万元奖励。\n第二条 支持平台建设。", "doc-a")
    assert ingest_documents(store, tagger, d2)[0].status == "replaced"
    rows, total, _ = store.query(ClauseQuery(docs=["doc-a"], sort="position", order="asc"))
    assert total == 2 and rows[0]["amount_wan"] == 800 and "800万元" in rows[0]["text"]


def test_rent_subsidy_in_chengdu_or_wuhan_equals_direct_sql(store, tagger, corpus_docs):
    ingest_documents(store, tagger, corpus_docs)
    q = ClauseQuery(any_of={"measure": ["rent_subsidy"]}, regions=["成都", "武汉"], limit=1000)
    rows, total, facets = store.query(q)
    with store.engine.connect() as c:
        direct = {
            r[0]
            for r in c.execute(
                text(
                    "SELECT c.id FROM clauses c JOIN documents d ON d.id = c.doc "
                    "JOIN clause_tags t ON t.clause_id = c.id "
                    "WHERE t.head = 'measure' AND t.label = 'rent_subsidy' "
                    "AND (d.region LIKE '%成都%' OR d.region LIKE '%武汉%')"
                )
            )
        }
    assert total == len(rows) == len(direct) > 0
    assert {r["id"] for r in rows} == direct
    # facet counts equal the rows carrying each label
    for head in ("topic", "measure", "industry"):
        for label, n in facets[head].items():
            assert n == sum(label in r[head] for r in rows), (head, label)
    assert facets["measure"]["rent_subsidy"] == total


def test_filters_sort_and_pages(store, tagger, corpus_docs):
    ingest_documents(store, tagger, corpus_docs)
    rows, total, _ = store.query(ClauseQuery(any_of={"measure": ["grant"]}, min_amount=500, limit=1000))
    assert total > 0 and all(r["amount_wan"] >= 500 and "grant" in r["measure"] for r in rows)
    amounts = [r["amount_wan"] for r in rows]
    assert amounts == sorted(amounts, reverse=True)
    both, n_both, _ = store.query(ClauseQuery(all_of={"measure": ["grant", "tax_relief"]}, limit=1000))
    either, n_either, _ = store.query(ClauseQuery(any_of={"measure": ["grant", "tax_relief"]}, limit=1000))
    assert 0 < n_both < n_either and all({"grant", "tax_relief"} <= set(r["measure"]) for r in both)
    ranged, _, _ = store.query(ClauseQuery(year_from=2019, year_to=2020, limit=1000))
    assert ranged and all(2019 <= r["year"] <= 2020 for r in ranged)
    hits, _, _ = store.query(ClauseQuery(text="首台", limit=1000))
    assert hits and all("首台" in r["text"] for r in hits)
    p1, t, _ = store.query(ClauseQuery(limit=10, offset=0, sort="position", order="asc"))
    p2, _, _ = store.query(ClauseQuery(limit=10, offset=10, sort="position", order="asc"))
    assert len(p1) == len(p2) == 10 and not {r["id"] for r in p1} & {r["id"] for r in p2}
    strong, _, _ = store.query(ClauseQuery(any_of={"industry": ["robotics"]}, min_score=0.9, limit=1000))
    assert all(r["scores"]["industry"]["robotics"] >= 0.9 for r in strong)
