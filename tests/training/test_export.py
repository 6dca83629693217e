"""CSV/XLSX export over real HTTP: stored text that looks like a spreadsheet formula is
exported as text (OWASP "CSV injection"), and a failing export is an error status, never a
200 with an empty or cut-short file."""

import csv
import io

import httpx
import pytest
from openpyxl import load_workbook

from tagger.api import create_app
from tagger.api.routes.clauses import _cell
from tagger.config import Settings
from tagger.ingest.documents import document_from_text
from tagger.store.db import Store, ingest_documents

from ..conftest import serve

# What an uploaded policy could contain; Excel would run each as a formula.
FORMULAS = ['=HYPERLINK("http://x","y")对新引进企业给予最高500万元奖励。', "@SUM(1)支持平台建设，给予补贴。", "-1+2对企业研发投入给予补助。"]
TITLE = "=cmd|' /C calc'!A0"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory, tagger):
    db = f"sqlite:///{tmp_path_factory.mktemp('db') / 'export.db'}"
    (doc,) = document_from_text("\n".join(FORMULAS), "inj")
    doc.title = TITLE
    ingest_documents(Store(db), tagger, [doc])
    yield from serve(create_app(Settings(database_url=db), tagger=tagger))


@pytest.mark.parametrize(
    "value, cell",
    [("=1+2", "'=1+2"), ("+1", "'+1"), ("-1", "'-1"), ("@A1", "'@A1"), ("\tx", "'\tx"), ("\rx", "'\rx"),
     ("a=b", "a=b"), ("", ""), (None, ""), (["=a", "b"], "'=a;b"), (-1.5, -1.5), (500, 500), (False, False)],
)
def test_cell_escapes_formula_starts_and_keeps_numbers(value, cell):
    assert _cell(value) == cell


def test_csv_cells_that_look_like_formulas_are_text(base_url):
    r = httpx.get(base_url + "/v1/clauses/export", params={"doc": "inj", "sort": "position", "order": "asc", "format": "csv"})
    assert r.status_code == 200
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert [row["text"] for row in rows] == ["'" + t for t in FORMULAS]
    assert {row["doc_title"] for row in rows} == {"'" + TITLE}
    assert rows[0]["amount_wan"] == "500.0"  # numbers are not quoted
    assert int(r.headers["content-length"]) == len(r.content)  # built whole before it was sent


def test_xlsx_cells_that_look_like_formulas_are_strings(base_url):
    r = httpx.get(base_url + "/v1/clauses/export", params={"doc": "inj", "sort": "position", "order": "asc", "format": "xlsx"})
    assert r.status_code == 200
    ws = load_workbook(io.BytesIO(r.content)).active
    header, *rows = ws.iter_rows()
    col = {c.value: i for i, c in enumerate(header)}
    assert [row[col["text"]].value for row in rows] == ["'" + t for t in FORMULAS]
    assert {row[col["doc_title"]].value for row in rows} == {"'" + TITLE}
    assert not [c.coordinate for row in rows for c in row if c.data_type == "f"]
    assert {row[col["text"]].data_type for row in rows} == {"s"}
    amount = rows[0][col["amount_wan"]]
    assert amount.value == 500 and amount.data_type == "n"


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_export_failing_midway_is_an_error_not_an_empty_200(base_url, fmt, monkeypatch):
    real = Store.iter_all

    def breaks_after_one_row(self, q, cap=200_000):
        rows = real(self, q, cap)
        yield next(rows)
        raise RuntimeError("connection to the database lost")

    monkeypatch.setattr(Store, "iter_all", breaks_after_one_row)
    r = httpx.get(base_url + "/v1/clauses/export", params={"format": fmt})
    assert r.status_code == 500 and r.json()["error"] == "export_failed"


def test_xlsx_drops_control_characters_instead_of_failing():
    import io

    from openpyxl import load_workbook

    from tagger.api.routes.clauses import EXPORT_FIELDS, _write_xlsx

    row = {f: "" for f in EXPORT_FIELDS}
    row.update(text="第一条\x01 支持\x0b企业", id="c1")
    buf = io.BytesIO()
    _write_xlsx([row], buf)
    buf.seek(0)
    ws = load_workbook(buf).active
    texts = [c.value for c in ws[2]]
    assert "第一条 支持企业" in texts
