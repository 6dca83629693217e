"""The analyst page in headless Chromium on a store of the whole bundled corpus: every filter
restorable from its link with the count of /v1/clauses; a message for link values the page
cannot use; the hint when a filter empties the result; the README's example link; the year
chart (column totals = per-year counts of /v1/clauses, click to filter, head selector);
sortable columns and page size; amounts as documents write them; facets for region, year,
issuer and kind; and the layout at 1,024 and 1,440 px (screenshots, no sideways scroll,
facets inside the viewport)."""

import os
import re
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from tagger.api import create_app
from tagger.config import Settings
from tagger.store.facts import format_amount

from ..conftest import corpus_store, serve
from .test_api_analyst import readme_example_queries
# browser: one headless Chromium per module, on this module's base_url
from .test_page import CHROMIUM, browser  # noqa: F401

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    if not CHROMIUM:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI (.ci/services.sh installs it)")
        pytest.skip("no chromium on this machine")
    db, tagger = corpus_store(tmp_path_factory, "page-corpus.db")
    yield from serve(create_app(Settings(database_url=db), tagger=tagger))


def _new_page(browser, width=1280):
    ctx = browser.new_context(viewport={"width": width, "height": 900}, accept_downloads=True)
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    return ctx, pg, errors


@pytest.fixture
def page(browser):
    ctx, pg, errors = _new_page(browser)
    yield pg
    ctx.close()
    assert not errors, f"script errors on the page: {errors}"


def _ready(page):
    page.wait_for_selector("#results[data-state=ready]", timeout=30_000)


def _query(url: str) -> list[tuple[str, str]]:
    return sorted(parse_qsl(urlsplit(url).query))


def _api(base_url: str, path: str, params) -> dict:
    r = httpx.get(base_url + path, params=params, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _ids(page) -> list[str]:
    return [r.get_attribute("data-id") for r in page.query_selector_all("#results tbody tr")]


def test_readme_example_links_show_clauses(base_url, page):
    for example in readme_example_queries():
        query = urlsplit(example).query
        page.goto(base_url + "/?" + query)
        _ready(page)
        api = _api(base_url, "/v1/clauses", parse_qsl(query))
        assert int(page.inner_text("#count")) == api["count"] >= 1, example
        assert _ids(page) == [r["id"] for r in api["data"][:50]]
        assert page.is_hidden("#url-problems") and page.is_hidden("#empty-hint")


# Every parameter the page has, in links; the page's count must be the API's for the same query.
ROUND_TRIPS = [
    {"measure": "rent_subsidy", "region": "成都,武汉", "year_from": "2019", "year_to": "2022"},
    {"kind": "target", "topic": "infrastructure", "year_from": "2023", "sort": "year", "order": "asc"},
    {"industry": "robotics", "min_amount": "50", "amount_kind": "any", "limit": "10", "offset": "10"},
    {"issuer": "国务院", "sort": "position", "order": "asc", "limit": "25"},
    {"measure_all": ["grant", "equity_investment"], "min_score": "0.5", "chart": "industry"},
    {"q": "算力", "kind": ["target", "provision"], "chart": "kind", "sort": "score"},
]


@pytest.mark.parametrize("params", ROUND_TRIPS)
def test_every_filter_restores_from_its_link(base_url, page, params):
    wanted = sorted((k, v) for k, vs in params.items() for v in (vs if isinstance(vs, list) else [vs]))
    page.goto(base_url + "/?" + str(httpx.QueryParams(params)))
    _ready(page)
    page.wait_for_selector("#years-chart[data-state=ready]")
    assert _query(page.url) == wanted and page.is_hidden("#url-problems")
    api_params = {k: v for k, v in params.items() if k != "chart"}
    limit = int(params.get("limit", 50))
    api = _api(base_url, "/v1/clauses", {**api_params, "limit": limit})
    assert int(page.inner_text("#count")) == api["count"] > 0
    assert _ids(page) == [r["id"] for r in api["data"]]
    assert page.input_value("#f-limit") == str(limit) and page.input_value("#f-chart") == params.get("chart", "measure")
    for head in ("region", "issuer"):
        if head in params:
            assert page.input_value("#f-" + head) == params[head]
    # The chart stacks by the head the link names.
    labels = {s.get_attribute("data-label") for s in page.query_selector_all("#years-chart rect.seg")} - {"none"}
    years = _api(base_url, "/v1/clauses/years", {**api_params, "head": params.get("chart", "measure")})
    assert labels <= {s["label"] for s in years["series"]}
    # Applying the form unchanged rebuilds the same link (paging restarts, as after any Apply).
    page.click("#apply")
    _ready(page)
    assert _query(page.url) == [kv for kv in wanted if kv[0] != "offset"]


@pytest.mark.parametrize(
    "query, bad",
    [
        ("year_from=abc&measure=grant", ["year_from=abc"]),
        ("amount_kind=foo&sort=amount", ["amount_kind=foo"]),
        ("year_to=1800&min_score=2&limit=7&order=up&chart=nope&colour=red", ["year_to=1800", "min_score=2", "limit=7", "order=up", "chart=nope", "colour=red"]),
    ],
)
def test_invalid_link_values_are_shown(base_url, page, query, bad):
    page.goto(base_url + "/?" + query)
    _ready(page)
    assert page.is_visible("#url-problems")
    listed = [li.get_attribute("data-param") for li in page.query_selector_all("#url-problems li")]
    assert sorted(listed) == sorted(b.split("=")[0] for b in bad)
    text = page.inner_text("#url-problems")
    for b in bad:
        assert b in text
    # The rest of the link still applies, and the table is what the API gives for it.
    good = [(k, v) for k, v in parse_qsl(query) if f"{k}={v}" not in bad]
    assert int(page.inner_text("#count")) == _api(base_url, "/v1/clauses", good + [("limit", 1)])["count"]
    # The API refuses the same values outright (what the page explains instead).
    for b in bad:
        k, v = b.split("=")
        if k not in ("limit", "chart", "colour"):
            assert httpx.get(base_url + "/v1/clauses", params={k: v}).status_code == 422, b
    # Any change the analyst makes removes the message.
    page.click("#apply")
    _ready(page)
    assert page.is_hidden("#url-problems")


def test_an_unknown_label_is_reported_and_kept(base_url, page):
    page.goto(base_url + "/?measure=no_such_measure")
    _ready(page)
    assert "measure=no_such_measure" in page.inner_text("#url-problems")
    assert int(page.inner_text("#count")) == 0 and ("measure", "no_such_measure") in _query(page.url)


def test_empty_result_names_the_filter_that_emptied_it(base_url, page):
    params = {"measure": "rent_subsidy", "region": "成都", "year_from": "2023"}
    page.goto(base_url + "/?" + str(httpx.QueryParams(params)))
    _ready(page)
    assert int(page.inner_text("#count")) == 0
    assert page.is_visible("#empty-hint")
    api = _api(base_url, "/v1/clauses", params)
    buttons = page.query_selector_all("#empty-hint button[data-filter]")
    shown = {b.get_attribute("data-filter"): int(b.get_attribute("data-count")) for b in buttons}
    assert shown == {k: n for k, n in api["without"].items() if n > 0} and shown
    # Following the hint drops that filter and finds what it promised.
    name, n = max(shown.items(), key=lambda kv: kv[1])
    page.click(f'#empty-hint button[data-filter="{name}"]')
    page.wait_for_function("document.getElementById('count').textContent !== '0'")
    _ready(page)
    assert int(page.inner_text("#count")) == n
    assert page.is_hidden("#empty-hint")


def _column_totals(page) -> dict[str, int]:
    totals: dict[str, int] = {}
    for seg in page.query_selector_all("#years-chart rect.seg"):
        y = seg.get_attribute("data-year")
        totals[y] = totals.get(y, 0) + int(seg.get_attribute("data-count"))
    return totals


@pytest.mark.parametrize("params", [{}, {"measure": "grant"}, {"region": "浙江", "chart": "industry"}, {"kind": "target", "chart": "topic"}])
def test_year_chart_columns_are_per_year_clause_counts(base_url, page, params):
    page.goto(base_url + "/?" + str(httpx.QueryParams(params)))
    _ready(page)
    page.wait_for_selector("#years-chart[data-state=ready]")
    api_params = {k: v for k, v in params.items() if k != "chart"}
    totals = _column_totals(page)
    numbers = {t.get_attribute("data-year"): int(t.text_content()) for t in page.query_selector_all("#years-chart text.sum")}
    axis = [t.get_attribute("data-year") for t in page.query_selector_all("#years-chart text.year")]
    assert totals == numbers and axis and set(axis) == set(totals)
    for year in axis:
        if year == "undated":
            continue
        n = _api(base_url, "/v1/clauses", {**api_params, "year_from": year, "year_to": year, "limit": 1})["count"]
        assert totals[year] == n > 0, year  # no empty year on the axis
    dated = [y for y in axis if y != "undated"]
    assert dated == sorted(dated)
    # The axis's top tick is the tallest column, in clauses.
    ticks = [int(t.get_attribute("data-value")) for t in page.query_selector_all("#years-chart text.tick")]
    assert max(ticks) == max(totals.values()) == int(page.get_attribute("#years-chart", "data-max"))
    assert sum(totals.values()) == int(page.inner_text("#count"))


def test_year_column_click_filters_and_head_selector_switches(base_url, page):
    page.goto(base_url + "/?measure=grant")
    _ready(page)
    page.wait_for_selector("#years-chart[data-state=ready]")
    totals = _column_totals(page)
    year = max((y for y in totals if y != "undated"), key=totals.get)
    page.click(f'#years-chart rect.col[data-year="{year}"]')
    page.wait_for_function(f"new URLSearchParams(location.search).get('year_from') === '{year}'")
    _ready(page)
    assert ("year_from", year) in _query(page.url) and ("year_to", year) in _query(page.url)
    assert int(page.inner_text("#count")) == totals[year]

    page.select_option("#f-chart", "industry")
    page.wait_for_function("new URLSearchParams(location.search).get('chart') === 'industry'")
    _ready(page)
    page.wait_for_selector("#years-chart[data-state=ready]")
    j = _api(base_url, "/v1/clauses/years", {"measure": "grant", "year_from": year, "year_to": year, "head": "industry"})
    labels = {s.get_attribute("data-label") for s in page.query_selector_all("#years-chart rect.seg")}
    assert labels == {s["label"] for s in j["series"] if s["primary"][0]} | ({"none"} if j["unlabeled"][0] else set())
    page.go_back()
    _ready(page)
    assert page.input_value("#f-chart") == "measure"


def test_sort_by_clicking_headers_and_page_size(base_url, page):
    page.goto(base_url + "/?measure=grant")
    _ready(page)
    page.click('#results th[data-sort="year"]')
    page.wait_for_function("new URLSearchParams(location.search).get('sort') === 'year'")
    _ready(page)
    assert _ids(page) == [r["id"] for r in _api(base_url, "/v1/clauses", {"measure": "grant", "sort": "year", "order": "desc"})["data"]]
    assert page.get_attribute('#results th[data-sort="year"]', "aria-sort") == "descending"
    page.click('#results th[data-sort="year"]')  # again: the other direction
    page.wait_for_function("new URLSearchParams(location.search).get('order') === 'asc'")
    _ready(page)
    api = _api(base_url, "/v1/clauses", {"measure": "grant", "sort": "year", "order": "asc"})
    assert _ids(page) == [r["id"] for r in api["data"]]
    assert page.get_attribute('#results th[data-sort="year"]', "aria-sort") == "ascending"
    years = [int(t) for t in re.findall(r"\b(19\d\d|20\d\d)\b", " ".join(page.locator("#results tbody .region").all_inner_texts()))]
    assert years == sorted(years)

    page.select_option("#f-limit", "10")
    page.wait_for_function("new URLSearchParams(location.search).get('limit') === '10'")
    _ready(page)
    assert len(_ids(page)) == 10 and page.inner_text("#page").startswith("1–10 of")
    page.click("#next")
    _ready(page)
    assert ("offset", "10") in _query(page.url)
    api = _api(base_url, "/v1/clauses", {"measure": "grant", "sort": "year", "order": "asc", "limit": 10, "offset": 10})
    assert _ids(page) == [r["id"] for r in api["data"]]
    # The whole state comes back from the link alone.
    url = page.url
    page.goto("about:blank")
    page.goto(url)
    _ready(page)
    assert _ids(page) == [r["id"] for r in api["data"]] and page.input_value("#f-limit") == "10"


def test_amounts_read_as_documents_write_them(base_url, page):
    values = [10000000, 10000, 12345.678, 213000000, 200, 1.5, 0.5, 0.12, 3000]
    page.goto(base_url + "/?measure=grant&amount_kind=any")
    _ready(page)
    assert page.evaluate("(vs) => vs.map(v => formatAmount(v, false))", values) == [format_amount(v) for v in values]
    assert page.evaluate("formatAmount(200, true)") == format_amount(200, True) == "200万元/年"
    # The largest amounts in the corpus are budgets of 亿元: the table shows them so.
    api = _api(base_url, "/v1/clauses", {"measure": "grant", "amount_kind": "any"})
    cells = [c.split("\n")[0].strip() for c in page.locator("#results tbody td.amount").all_inner_texts()]
    want = [format_amount(r["amount_wan"], r["amount_per_year"]) for r in api["data"]]
    assert [c[: len(w)] for c, w in zip(cells, want)] == want
    assert any("亿元" in w for w in want)
    assert not any(re.search(r"\d{5,} ?万元", c) for c in cells)  # no 10000000 万元


def test_facets_for_region_year_issuer_kind_filter_on_click(base_url, page):
    page.goto(base_url + "/")
    _ready(page)
    api = _api(base_url, "/v1/clauses", {"limit": 1})
    for facet in ("region", "year", "issuer", "kind"):
        assert page.query_selector(f'#facets [data-facet="{facet}"]') is not None
        for bar in page.query_selector_all(f'#facets [data-facet="{facet}"] .bar'):
            assert int(bar.query_selector(".n").inner_text()) == api["facets"][facet][bar.get_attribute("data-label")]
    region = page.get_attribute('#facets .bar[data-head="region"]', "data-label")
    page.click(f'#facets .bar[data-head="region"][data-label="{region}"]')
    page.wait_for_function("new URLSearchParams(location.search).has('region')")
    _ready(page)
    assert int(page.inner_text("#count")) == _api(base_url, "/v1/clauses", {"region": region, "limit": 1})["count"]
    # the region facet leaves out its own filter: the other regions stay offered, this one marked
    bars = page.query_selector_all('#facets .bar[data-head="region"]')
    assert len(bars) > 1
    on = {b.get_attribute("data-label"): "on" in b.get_attribute("class").split() for b in bars}
    # the filter matches by substring: "浙江" holds every 浙江省… region, all marked
    assert on[region] and on == {label: region in label for label in on} and not all(on.values())
    page.click('#facets .bar[data-head="year"]:not(.off)')
    page.wait_for_function("new URLSearchParams(location.search).has('year_from')")
    _ready(page)
    q = dict(parse_qsl(urlsplit(page.url).query))
    assert q["year_from"] == q["year_to"] and int(page.inner_text("#count")) == _api(base_url, "/v1/clauses", {**q, "limit": 1})["count"]
    page.goto(base_url + "/?region=全国")
    _ready(page)
    page.click('#facets .bar[data-head="issuer"]')
    page.wait_for_function("new URLSearchParams(location.search).has('issuer')")
    _ready(page)
    q = dict(parse_qsl(urlsplit(page.url).query))
    assert int(page.inner_text("#count")) == _api(base_url, "/v1/clauses", {**q, "limit": 1})["count"] > 0


def test_multi_selects_show_what_is_selected(base_url, page):
    page.goto(base_url + "/?measure=grant,rent_subsidy,housing&kind=target")
    _ready(page)
    picked = page.locator("#picked-measure .chip")
    assert sorted(picked.evaluate_all("cs => cs.map(c => c.dataset.value)")) == ["grant", "housing", "rent_subsidy"]
    assert all(picked.nth(i).is_visible() for i in range(3))
    page.click('#picked-measure .chip[data-value="housing"] button')
    page.click("#apply")
    _ready(page)
    assert [v for k, v in _query(page.url) if k == "measure"] == ["grant", "rent_subsidy"]


@pytest.mark.parametrize("width", [1024, 1440])
def test_layout_fits_the_window(browser, base_url, width, tmp_path):
    ctx, pg, errors = _new_page(browser, width)
    try:
        pg.goto(base_url + "/?measure=rent_subsidy,grant,equity_investment,interest_subsidy&industry=robotics,chips,ai_models")
        _ready(pg)
        pg.wait_for_selector("#years-chart[data-state=ready]")
        shot = tmp_path / f"page-{width}.png"
        pg.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        geo = pg.evaluate(
            """() => {
              const d = document.documentElement, r = (s) => document.querySelector(s).getBoundingClientRect();
              const boxes = [...document.querySelectorAll('#facets > div, #facets .bar, #results, #years-chart, aside, #results-view')].map(e => e.getBoundingClientRect());
              return { scrollWidth: d.scrollWidth, clientWidth: d.clientWidth, inner: window.innerWidth,
                       facets: r('#facets').toJSON(), right: Math.max(...boxes.map(b => b.right)), left: Math.min(...boxes.map(b => b.left)),
                       picked: [...document.querySelectorAll('#picked-measure .chip, #picked-industry .chip')].filter(c => c.getBoundingClientRect().width > 0).length };
            }"""
        )
        assert geo["clientWidth"] == width and geo["scrollWidth"] == width, geo  # no sideways scroll
        assert geo["facets"]["left"] >= 0 and geo["facets"]["right"] <= width, geo
        assert geo["left"] >= 0 and geo["right"] <= width, geo  # every facet, the table, the chart inside
        assert geo["picked"] == 7
        pg.evaluate("window.scrollTo(500, 0)")
        assert pg.evaluate("window.scrollX") == 0
    finally:
        ctx.close()
    assert not errors, errors
