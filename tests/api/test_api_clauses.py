"""Analysts' API over real HTTP: store via /v1/documents?store=true, filter /v1/clauses,
export CSV/XLSX; results equal a direct SQL filter over the stored tags."""

import io
from collections import Counter

import httpx
import pandas as pd
import pytest
from sqlalchemy import create_engine, text

from tagger.api import create_app
from tagger.config import Settings

from ..conftest import DOCS, compilation_store, serve


@pytest.fixture(scope="module")
def app_db(tmp_path_factory, tagger):
    # The 33 pilot-zone policies go in directly; two documents go through the HTTP path below.
    return compilation_store(tmp_path_factory, "analysts.db", tagger)


@pytest.fixture(scope="module")
def base_url(app_db):
    db, tagger = app_db
    # Writes without a key: allowed only because this test server binds to loopback.
    yield from serve(create_app(Settings(database_url=db, allow_anonymous_writes=True), tagger=tagger))


def test_store_via_documents_endpoint_is_idempotent(base_url):
    path = DOCS / "extra" / "x001.txt"
    files = {"file": (path.name, path.read_bytes(), "text/plain")}
    r1 = httpx.post(base_url + "/v1/documents?store=true", files=files).json()
    r2 = httpx.post(base_url + "/v1/documents?store=true", files=files).json()
    assert r1["stored"][0]["status"] == "inserted" and r2["stored"][0]["status"] == "unchanged"
    got = httpx.get(base_url + "/v1/clauses", params={"doc": "x001", "limit": 1000}).json()
    assert got["count"] == r1["count"]


def _direct_ids(db: str) -> set[str]:
    with create_engine(db).connect() as c:
        return {
            r[0]
            for r in c.execute(
                text(
                    "SELECT c.id FROM clauses c JOIN documents d ON d.id = c.doc JOIN clause_tags t ON t.clause_id = c.id "
                    "WHERE t.head='measure' AND t.label='rent_subsidy' AND (d.region LIKE '%成都%' OR d.region LIKE '%武汉%')"
                )
            )
        }


def test_rent_subsidy_chengdu_wuhan_matches_sql_and_exports(base_url, app_db):
    params = {"measure": "rent_subsidy", "region": ["成都", "武汉"], "limit": 1000}
    j = httpx.get(base_url + "/v1/clauses", params=params).json()
    direct = _direct_ids(app_db[0])
    assert j["count"] == len(j["data"]) == len(direct) > 0
    assert {r["id"] for r in j["data"]} == direct
    assert j["facets"]["measure"]["rent_subsidy"] == j["count"]
    for head in ("topic", "industry"):
        for label, n in j["facets"][head].items():
            assert n == sum(label in r[head] for r in j["data"])
    # The measure facet leaves out its own filter: every measure of the Chengdu/Wuhan clauses.
    around = httpx.get(base_url + "/v1/clauses", params={"region": ["成都", "武汉"], "limit": 1000}).json()
    assert around["count"] == len(around["data"]) > j["count"]
    assert j["facets"]["measure"] == dict(Counter(m for r in around["data"] for m in r["measure"]))
    assert len(j["facets"]["measure"]) > 1
    # and the region facet leaves out the region filter: rent subsidies in every region
    rent = httpx.get(base_url + "/v1/clauses", params={"measure": "rent_subsidy", "limit": 1000}).json()
    assert j["facets"]["region"] == dict(Counter(r["region"] for r in rent["data"] if r["region"]))
    assert len(j["facets"]["region"]) > 2
    csv = httpx.get(base_url + "/v1/clauses/export", params={**params, "format": "csv"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    df = pd.read_csv(io.BytesIO(csv.content), encoding="utf-8-sig")
    assert set(df["id"]) == direct and len(df) == len(direct)
    xlsx = httpx.get(base_url + "/v1/clauses/export", params={**params, "format": "xlsx"})
    dx = pd.read_excel(io.BytesIO(xlsx.content))
    assert set(dx["id"]) == direct


def test_sorted_by_amount_with_years_and_pages(base_url):
    j = httpx.get(base_url + "/v1/clauses", params={"measure": "grant", "year_from": 2019, "year_to": 2022, "sort": "amount", "limit": 20}).json()
    # Caps sort (the default amount_kind); other kinds keep their amount but sort after them.
    amounts = [r["amount_wan"] for r in j["data"] if r["amount_kind"] == "cap"]
    assert amounts == sorted(amounts, reverse=True) and len(amounts) > 5
    assert [r["amount_kind"] for r in j["data"][: len(amounts)]] == ["cap"] * len(amounts)
    assert all(2019 <= r["year"] <= 2022 for r in j["data"])
    page2 = httpx.get(base_url + "/v1/clauses", params={"measure": "grant", "year_from": 2019, "year_to": 2022, "limit": 20, "offset": 20}).json()
    assert page2["count"] == j["count"] and not {r["id"] for r in page2["data"]} & {r["id"] for r in j["data"]}


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 5000}, {"sort": "nope"}, {"min_score": 2}, {"year_from": "x"}, {"amount_kind": "caps"}, {"amount_kind": ""}],
)
def test_bad_query_is_422(base_url, params):
    r = httpx.get(base_url + "/v1/clauses", params=params)
    assert r.status_code == 422 and r.json()["message"]


def test_labels_endpoint_has_chinese_names(base_url):
    j = httpx.get(base_url + "/v1/labels").json()
    assert {"id": "rent_subsidy", "name": "租金/场地补贴"} in j["measure"]


def test_amount_kind_parameter_and_export(base_url):
    """?amount_kind= picks whose amounts sort and filter; the export takes the same query and
    carries the kind of every amount."""
    base = {"sort": "amount", "limit": 30}
    caps = httpx.get(base_url + "/v1/clauses", params=base).json()["data"]
    assert caps[0]["amount_kind"] == "cap"
    stats = httpx.get(base_url + "/v1/clauses", params={**base, "amount_kind": "statistic"}).json()["data"]
    top = [r["amount_wan"] for r in stats if r["amount_kind"] == "statistic"]
    # The 33 pilot-zone policies hold targets such as 相关产业规模达到6000亿元: far above any cap.
    assert len(top) > 5 and top == sorted(top, reverse=True) and top[0] > caps[0]["amount_wan"]
    assert [r["amount_kind"] for r in stats[: len(top)]] == ["statistic"] * len(top)
    big = {"min_amount": 100000, "limit": 1000}
    n_cap = httpx.get(base_url + "/v1/clauses", params=big).json()["count"]
    n_any = httpx.get(base_url + "/v1/clauses", params={**big, "amount_kind": "any"}).json()["count"]
    assert n_any > n_cap
    csv = httpx.get(base_url + "/v1/clauses/export", params={**big, "amount_kind": "budget", "format": "csv"})
    df = pd.read_csv(io.BytesIO(csv.content), encoding="utf-8-sig")
    assert len(df) > 0 and set(df["amount_kind"]) == {"budget"} and (df["amount_wan"] >= 100000).all()
    bad = httpx.get(base_url + "/v1/clauses/export", params={"amount_kind": "total"})
    assert bad.status_code == 422 and "amount_kind" in bad.text


def test_kind_filter_facets_and_export_column(base_url, app_db):
    """kind is one id per stored clause: a column, tag rows for filters and facets, an export column."""
    allj = httpx.get(base_url + "/v1/clauses", params={"limit": 1000}).json()
    kinds = allj["facets"]["kind"]
    assert set(kinds) <= {"provision", "target", "principle", "condition", "procedure", "title"} and len(kinds) >= 3
    assert sum(kinds.values()) == allj["count"]  # exactly one kind per clause
    assert all(isinstance(r["kind"], str) for r in allj["data"])
    # "every target clause about computing power since 2019" in one URL
    params = {"kind": "target", "topic": "infrastructure", "limit": 1000}
    j = httpx.get(base_url + "/v1/clauses", params=params).json()
    with create_engine(app_db[0]).connect() as c:
        direct = {r[0] for r in c.execute(text(
            "SELECT c.id FROM clauses c JOIN clause_tags t ON t.clause_id = c.id AND t.head='topic' AND t.label='infrastructure' "
            "WHERE c.kind = 'target'"))}
    assert {r["id"] for r in j["data"]} == direct
    assert all(r["kind"] == "target" for r in j["data"])
    two = httpx.get(base_url + "/v1/clauses", params={"kind": "target,principle", "limit": 1}).json()
    assert two["count"] == kinds.get("target", 0) + kinds.get("principle", 0)
    csv = httpx.get(base_url + "/v1/clauses/export", params={"format": "csv", "kind": "principle"}).content.decode("utf-8-sig")
    df = pd.read_csv(io.StringIO(csv))
    assert "kind" in df.columns and set(df["kind"]) <= {"principle"} and len(df) == kinds.get("principle", 0)
    # principles carry no topic under rules v1.1 (the kind gate), whatever their slogans say:
    # none with a hard gate; a soft gate scales topics by P(a kind that allows them)
    p = httpx.get(base_url + "/v1/clauses", params={"kind": "principle", "limit": 1000}).json()
    with_topic = sum(1 for r in p["data"] if r["topic"])
    mode = app_db[1].manifest.gate("topic")["mode"]
    assert p["count"] > 0 and (with_topic == 0 if mode == "hard" else with_topic <= 0.1 * p["count"]), (mode, with_topic, p["count"])
