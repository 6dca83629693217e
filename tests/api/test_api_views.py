"""The page's read views over real HTTP and a real SQLite store: one document with its clauses
(GET /v1/documents/{id}) and matching clauses per year and label (GET /v1/clauses/years),
checked against direct SQL over the stored rows."""

from collections import Counter

import httpx
import pytest
from sqlalchemy import create_engine, text

from tagger.api import create_app
from tagger.config import Settings

from ..conftest import COMPILATION, compilation_store, serve

KEY = "views-test-key"


@pytest.fixture(scope="module")
def db(tmp_path_factory, tagger):
    return compilation_store(tmp_path_factory, "views.db", tagger)


@pytest.fixture(scope="module")
def base_url(db):
    yield from serve(create_app(Settings(database_url=db[0]), tagger=db[1]))


def _sql(db_url: str, query: str, **params):
    with create_engine(db_url).connect() as c:
        return c.execute(text(query), params).all()


def test_document_view_is_every_clause_in_order(base_url, db):
    docs = [r[0] for r in _sql(db[0], "SELECT id FROM documents ORDER BY id")]
    assert len(docs) == 33
    for doc in docs[::8]:
        r = httpx.get(f"{base_url}/v1/documents/{doc}")
        assert r.status_code == 200
        j = r.json()
        stored = _sql(db[0], "SELECT id, position FROM clauses WHERE doc = :d ORDER BY position", d=doc)
        assert [c["id"] for c in j["clauses"]] == [s[0] for s in stored] and j["count"] == len(stored) > 0
        assert [c["position"] for c in j["clauses"]] == list(range(len(stored)))
        info = j["document"]
        assert info["id"] == doc and info["n_clauses"] == len(stored)
        # The file name only: the server's folders are not part of the answer.
        assert info["source"] == COMPILATION.name and "content_sha256" not in info
        # Rows are shaped like /v1/clauses rows (the page renders both with one function).
        listed = httpx.get(base_url + "/v1/clauses", params={"doc": doc, "sort": "position", "order": "asc", "limit": 1000}).json()
        assert listed["data"] == j["clauses"]


def test_unknown_document_is_404_with_message(base_url):
    r = httpx.get(base_url + "/v1/documents/no-such-doc")
    assert r.status_code == 404 and "no-such-doc" in r.json()["detail"]
    # An id with a slash reaches the route (404), not a router-level miss or a 500.
    r = httpx.get(base_url + "/v1/documents/a%2Fb")
    assert r.status_code == 404 and "a/b" in r.json()["detail"]


@pytest.mark.parametrize("raw", ["x" * 201, "a%00b", "%ED%A0%80"])
def test_bad_document_id_is_4xx(base_url, raw):
    r = httpx.get(base_url + "/v1/documents/" + raw)
    assert 400 <= r.status_code < 500
    body = r.json()
    assert body.get("message") or body.get("detail")


def _sql_years(db_url: str, where: str, **params) -> tuple[Counter, Counter]:
    base = f"FROM clauses c JOIN documents d ON d.id = c.doc WHERE {where}"
    cells = Counter(
        {
            (y, lab): n
            for y, lab, n in _sql(
                db_url,
                f"SELECT d.year, t.label, COUNT(*) {base.replace('WHERE', 'JOIN clause_tags t ON t.clause_id = c.id WHERE t.head = :head AND')} GROUP BY d.year, t.label",
                head="measure",
                **params,
            )
        }
    )
    totals = Counter({y: n for y, n in _sql(db_url, f"SELECT d.year, COUNT(*) {base} GROUP BY d.year", **params)})
    return cells, totals


@pytest.mark.parametrize(
    "params, where, sql_params",
    [
        ({}, "1 = 1", {}),
        ({"industry": "robotics", "year_from": 2018}, "d.year >= 2018 AND EXISTS (SELECT 1 FROM clause_tags x WHERE x.clause_id = c.id AND x.head = 'industry' AND x.label = 'robotics')", {}),
        ({"region": "成都"}, "d.region LIKE '%成都%'", {}),
    ],
)
def test_years_equal_sql(base_url, db, params, where, sql_params):
    j = httpx.get(base_url + "/v1/clauses/years", params=params).json()
    cells, totals = _sql_years(db[0], where, **sql_params)
    # Only the years that have matching clauses: no empty columns.
    assert j["years"] == sorted(y for y in totals if y is not None)
    assert all(n > 0 for n in j["clauses"])
    got = Counter({(y, s["label"]): n for s in j["series"] for y, n in zip(j["years"], s["counts"]) if n})
    got.update({(None, lab): n for lab, n in j["undated"]["labels"].items()})
    assert got == cells
    assert j["clauses"] == [totals.get(y, 0) for y in j["years"]]
    assert j["undated"]["clauses"] == totals.get(None, 0)
    assert j["count"] == sum(totals.values()) == httpx.get(base_url + "/v1/clauses", params={**params, "limit": 1}).json()["count"]
    assert [s["total"] for s in j["series"]] == sorted((s["total"] for s in j["series"]), reverse=True)
    # Each clause in one stack segment (its top label, or none): the stacks are the clause counts.
    for i, n in enumerate(j["clauses"]):
        assert sum(s["primary"][i] for s in j["series"]) + j["unlabeled"][i] == n
        for s in j["series"]:
            assert s["primary"][i] <= s["counts"][i]
    und = j["undated"]
    assert sum(und["primary"].values()) + und["unlabeled"] == und["clauses"]
    top = _sql_top_labels(db[0], where)
    got_top = Counter({(y, s["label"]): n for s in j["series"] for y, n in zip(j["years"], s["primary"]) if n})
    got_top.update({(None, lab): n for lab, n in und["primary"].items() if n})
    assert got_top == top


def _sql_top_labels(db_url: str, where: str) -> Counter:
    """(year, label) -> matching clauses whose highest-scoring measure label it is (ties: smallest id)."""
    rows = _sql(
        db_url,
        "SELECT c.id, d.year, t.label, t.score FROM clauses c JOIN documents d ON d.id = c.doc "
        f"JOIN clause_tags t ON t.clause_id = c.id AND t.head = 'measure' WHERE {where}",
    )
    best: dict[str, tuple] = {}
    for cid, year, label, score in rows:
        if cid not in best or (-score, label) < (-best[cid][2], best[cid][1]):
            best[cid] = (year, label, score)
    return Counter((y, lab) for y, lab, _ in best.values())


def test_years_other_head_and_bad_input(base_url):
    j = httpx.get(base_url + "/v1/clauses/years", params={"head": "industry"}).json()
    assert j["head"] == "industry" and j["series"]
    for bad in ({"head": "nope"}, {"year_from": 1800}, {"min_score": 3}, {"q": "a\x00b"}):
        r = httpx.get(base_url + "/v1/clauses/years", params=bad)
        assert r.status_code == 422 and r.json()["message"], bad


def test_views_follow_the_read_key_rule(db):
    st = Settings(api_keys=(KEY,), require_key_for_reads=True, database_url=db[0])
    for url in serve(create_app(st, tagger=db[1])):
        doc = "ai-pilot-zones-policy-compilation-2022-13"
        for path in (f"/v1/documents/{doc}", "/v1/clauses/years"):
            assert httpx.get(url + path).status_code == 401
            assert httpx.get(url + path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert httpx.get(url + "/").status_code == 200  # the page itself is static
