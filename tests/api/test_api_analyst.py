"""What the analyst page asks of the API, over real HTTP on a real SQLite store of the whole
bundled corpus (labels/documents): the README's example queries find clauses; facets by
region, year, issuer and kind equal direct SQL; an empty result says which filter emptied it;
exports carry Chinese label names, scores, issuer, URL and the amount as written, and the XLSX
has column widths, a frozen header row and an autofilter (opened with openpyxl)."""

import csv
import io
import re
from collections import Counter
from urllib.parse import parse_qsl, urlsplit

import httpx
import openpyxl
import pytest

from tagger.api import create_app
from tagger.config import Settings
from tagger.store.facts import format_amount
from tagger.taxonomy import load_taxonomy

from ..conftest import ROOT, corpus_store, serve
from .test_api_views import _sql

README = ROOT / "README.md"


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return corpus_store(tmp_path_factory, "corpus.db")


@pytest.fixture(scope="module")
def base_url(db):
    yield from serve(create_app(Settings(database_url=db[0]), tagger=db[1]))


def readme_example_queries() -> list[str]:
    """The query strings of every /v1/clauses example the README's analyst section gives."""
    section = README.read_text(encoding="utf-8").split("## Analysts", 1)[1].split("\n## ", 1)[0]
    found = re.findall(r"`(/v1/clauses\?[^`\s]+)`", section)
    assert len(found) >= 2, "the README's analyst section lost its example URLs"
    return found


def test_readme_examples_return_clauses(base_url):
    for url in readme_example_queries():
        params = parse_qsl(urlsplit(url).query)
        r = httpx.get(base_url + "/v1/clauses", params=params)
        assert r.status_code == 200, (url, r.text)
        assert r.json()["count"] >= 1, f"the README example {url} finds nothing on the bundled corpus"


def test_readme_rent_subsidy_example_is_the_dated_chengdu_policy(base_url):
    """The Chengdu special policy (成办函〔2019〕15号, as its implementation rules cite it) is
    dated 2019 in SOURCES.tsv; it is what the README's 2019-2022 example finds."""
    j = httpx.get(base_url + "/v1/clauses", params={"measure": "rent_subsidy", "region": "成都,武汉", "year_from": 2019, "year_to": 2022}).json()
    assert j["count"] >= 1
    assert all(2019 <= r["year"] <= 2022 and ("成都" in r["region"] or "武汉" in r["region"]) for r in j["data"])
    assert "ai-pilot-zones-policy-compilation-2022-13" in {r["doc"] for r in j["data"]}


@pytest.mark.parametrize("params", [{}, {"measure": "grant"}, {"region": "浙江", "kind": "provision"}])
def test_document_facets_equal_sql(base_url, db, params):
    """Each facet counts the matches of every filter but its own (what choosing one of its
    values would find), each equal to direct SQL."""
    j = httpx.get(base_url + "/v1/clauses", params={**params, "limit": 1}).json()

    def rows(without: str = ""):
        where, bind = ["1 = 1"], {}
        if "measure" in params and without != "measure":
            where.append("EXISTS (SELECT 1 FROM clause_tags t WHERE t.clause_id = c.id AND t.head = 'measure' AND t.label = :m)")
            bind["m"] = params["measure"]
        if "region" in params and without != "region":
            where.append("d.region LIKE :r")
            bind["r"] = f"%{params['region']}%"
        if "kind" in params and without != "kind":
            where.append("c.kind = :k")
            bind["k"] = params["kind"]
        return _sql(db[0], f"SELECT d.region, d.year, d.issuer, c.kind, c.id FROM clauses c JOIN documents d ON d.id = c.doc WHERE {' AND '.join(where)}", **bind)

    assert len(rows()) == j["count"] > 0
    f = j["facets"]
    assert f["region"] == dict(Counter(r[0] for r in rows("region") if r[0]))
    assert f["year"] == dict(Counter("none" if r[1] is None else str(r[1]) for r in rows()))
    assert list(f["year"]) == sorted(f["year"], key=lambda y: (y == "none", y))  # calendar order
    assert f["issuer"] == dict(Counter(r[2] for r in rows() if r[2]))
    assert f["kind"] == dict(Counter(r[3] for r in rows("kind")))
    assert list(f["region"].values()) == sorted(f["region"].values(), reverse=True)
    ids = {r[4] for r in rows("measure")}
    tags = _sql(db[0], "SELECT clause_id, label FROM clause_tags WHERE head = 'measure'")
    assert f["measure"] == dict(Counter(lab for cid, lab in tags if cid in ids))
    if params:  # a filtered facet still offers the values its filter left out
        own = {"measure": "measure", "region": "region"}[next(iter(params))]
        assert len(f[own]) > 1


def test_issuer_filter(base_url, db):
    issuers = _sql(db[0], "SELECT issuer, COUNT(*) FROM clauses c JOIN documents d ON d.id = c.doc WHERE issuer != '' GROUP BY issuer")
    assert issuers, "the corpus names no issuer any more"
    name, n = issuers[0]
    j = httpx.get(base_url + "/v1/clauses", params={"issuer": name, "limit": 1000}).json()
    assert j["count"] == n and all(r["issuer"] == name for r in j["data"])
    # the issuer facet leaves out its own filter: every issuer, this one with its count
    assert j["facets"]["issuer"] == {i: c for i, c in sorted(issuers, key=lambda ic: (-ic[1], ic[0]))}
    assert j["facets"]["issuer"][name] == n


@pytest.mark.parametrize(
    "params",
    [
        {"measure": "rent_subsidy", "region": "成都", "year_from": 2023},
        {"industry_all": "robotics,chips", "q": "贷款", "min_amount": 100000, "kind": "target"},
        {"topic": "talent", "region": "不存在的地方", "min_score": 0.99, "year_to": 2016},
    ],
)
def test_empty_result_counts_each_filter_dropped(base_url, params):
    j = httpx.get(base_url + "/v1/clauses", params=params).json()
    assert j["count"] == 0
    without = j["without"]
    names = {k if k not in ("year_from", "year_to") else "year" for k in params}
    assert set(without) == names
    for name, n in without.items():
        rest = {k: v for k, v in params.items() if (k if k not in ("year_from", "year_to") else "year") != name}
        assert n == httpx.get(base_url + "/v1/clauses", params={**rest, "limit": 1}).json()["count"], name
    # A query that finds something carries no hint.
    assert "without" not in httpx.get(base_url + "/v1/clauses", params={"limit": 1}).json()


def test_years_skip_empty_years_and_stack_to_clause_counts(base_url):
    for head in ("measure", "industry", "topic", "kind"):
        j = httpx.get(base_url + "/v1/clauses/years", params={"head": head}).json()
        assert j["years"] == sorted(j["years"]) and all(n > 0 for n in j["clauses"])
        for i, y in enumerate(j["years"]):
            assert sum(s["primary"][i] for s in j["series"]) + j["unlabeled"][i] == j["clauses"][i]
        # The undated column is drawn from the same series: a label only undated clauses carry is one.
        assert set(j["undated"]["primary"]) | set(j["undated"]["labels"]) <= {s["label"] for s in j["series"]}
        if head == "kind":  # one kind per clause: its top label is its label
            assert all(s["primary"] == s["counts"] for s in j["series"]) and not any(j["unlabeled"])
    # The corpus spans 1997-2026 with gaps: the gaps are not on the axis.
    years = httpx.get(base_url + "/v1/clauses/years").json()["years"]
    assert len(years) < years[-1] - years[0] + 1


def _names() -> dict:
    return load_taxonomy(ROOT / "labels" / "taxonomy.yaml").names


def _check_export_row(row: dict, api: dict, names: dict) -> None:
    assert row["doc_title"] == api["doc_title"] and (row["issuer"] or "") == (api["issuer"] or "")
    assert (row["url"] or "") == (api["url"] or "")
    assert str(row["year"] or "") == str(api["year"] or "")
    for head in ("topic", "measure", "industry"):
        ids = [x for x in str(row[head] or "").split(";") if x]
        assert ids == api[head]
        assert [x for x in str(row[head + "_names"] or "").split(";") if x] == [names[head][i] for i in ids]
        scores = [float(x) for x in str(row[head + "_scores"] or "").split(";") if x]
        assert scores == pytest.approx([api["scores"][head][i] for i in ids], abs=1e-4)
    assert row["kind"] == api["kind"] and row["kind_name"] == names["kind"][api["kind"]]
    assert float(row["kind_score"]) == pytest.approx(api["scores"]["kind"][api["kind"]], abs=1e-4)
    assert (row["amount"] or "") == format_amount(api["amount_wan"], api["amount_per_year"])


def test_exports_carry_names_scores_source_and_amounts(base_url):
    params = {"measure": "rent_subsidy", "sort": "amount", "amount_kind": "any", "limit": 1000}
    api = httpx.get(base_url + "/v1/clauses", params=params).json()
    assert api["count"] > 5 and any(r["url"] for r in api["data"])
    by_id = {r["id"]: r for r in api["data"]}
    names = _names()

    r = httpx.get(base_url + "/v1/clauses/export", params={**params, "format": "csv"})
    assert r.status_code == 200
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert [x["id"] for x in rows] == [x["id"] for x in api["data"]]
    for row in rows:
        _check_export_row(row, by_id[row["id"]], names)

    r = httpx.get(base_url + "/v1/clauses/export", params={**params, "format": "xlsx"})
    assert r.status_code == 200
    wb = openpyxl.load_workbook(io.BytesIO(r.content))
    ws = wb["clauses"]
    header = [c.value for c in ws[1]]
    n = ws.max_row - 1
    assert n == api["count"]
    assert ws.freeze_panes == "A2"
    last = openpyxl.utils.get_column_letter(len(header))
    assert ws.auto_filter.ref == f"A1:{last}{n + 1}"
    widths = {name: ws.column_dimensions[openpyxl.utils.get_column_letter(i)].width for i, name in enumerate(header, 1)}
    assert widths["text"] >= 60 and all(w and w >= 10 for w in widths.values())
    for values in ws.iter_rows(min_row=2, values_only=True):
        row = dict(zip(header, values))
        _check_export_row(row, by_id[row["id"]], names)
    col = header.index("measure_names")
    assert all("租金/场地补贴" in row[col] for row in ws.iter_rows(min_row=2, values_only=True))  # Chinese names


def test_export_of_a_huge_amount_reads_as_documents_write_it(base_url, db):
    (cid, wan, per_year), = _sql(db[0], "SELECT id, amount_wan, amount_per_year FROM clauses ORDER BY amount_wan DESC LIMIT 1")
    assert wan >= 10000  # the corpus has budgets in 亿元
    (body,) = _sql(db[0], "SELECT text FROM clauses WHERE id = :i", i=cid)[0]
    r = httpx.get(base_url + "/v1/clauses/export", params={"format": "csv", "q": body[:60], "amount_kind": "any"})
    rows = [x for x in csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))) if x["id"] == cid]
    assert rows and rows[0]["amount"] == format_amount(wan, bool(per_year)) and "亿元" in rows[0]["amount"]
