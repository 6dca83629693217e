from __future__ import annotations

import contextlib
import csv
import io
import logging
import re
import tempfile
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, StreamingResponse

from ...errors import InvalidInput
from ...store.db import ClauseQuery
from ...store.facts import format_amount
from ...taxonomy import HEADS
from ..deps import StoreDep
from ..schemas import check_strings

router = APIRouter(prefix="/v1", tags=["clauses"])
log = logging.getLogger(__name__)

Labels = Annotated[list[str] | None, Query()]
MAX_LIST_VALUES = 200
# Ids for scripts, Chinese names for readers, next to each other; the scores of a head are in
# the order of its ids ("grant;rent_subsidy" / "资金奖励;租金/场地补贴" / "0.91;0.62").
EXPORT_FIELDS = [
    "id", "doc", "doc_title", "issuer", "region", "year", "url", "section", "text",
    "topic", "topic_names", "topic_scores", "measure", "measure_names", "measure_scores",
    "industry", "industry_names", "industry_scores", "kind", "kind_name", "kind_score",
    "amount", "amount_wan", "amount_kind", "amount_per_year", "amount_text", "ratio_pct", "duration_years", "beneficiaries",
    "top_score", "model",
]
# XLSX column widths (characters; a CJK character counts about two): the text wide, ids narrow.
XLSX_WIDTHS = {"text": 80, "doc_title": 36, "issuer": 20, "region": 16, "url": 30, "section": 20, "amount_text": 24, "id": 28, "doc": 24}
XLSX_DEFAULT_WIDTH = 14


def _split(values: list[str] | None) -> list[str]:
    """Accept both ?measure=a&measure=b and ?measure=a,b."""
    out: list[str] = []
    for v in values or []:
        out += [x.strip() for x in v.split(",") if x.strip()]
    return out


Year = Annotated[int | None, Query(ge=1900, le=2100)]


def clause_query(
    topic: Labels = None,
    measure: Labels = None,
    industry: Labels = None,
    topic_all: Labels = None,
    measure_all: Labels = None,
    industry_all: Labels = None,
    # kind is single-label: any of the given kinds (?kind=target&kind=provision)
    kind: Labels = None,
    region: Labels = None,
    issuer: Labels = None,
    doc: Labels = None,
    year_from: Year = None,
    year_to: Year = None,
    min_score: Annotated[float | None, Query(ge=0, le=1)] = None,
    min_amount: Annotated[float | None, Query(ge=0, le=1e9)] = None,
    # Which amounts count for sort=amount and min_amount (tagger.store.facts): by default the caps,
    # what one beneficiary can get; budgets and statistics would otherwise top every sort.
    amount_kind: Literal["cap", "budget", "ratio", "statistic", "any"] = "cap",
    q: Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]*$")] = None,
    sort: Literal["amount", "year", "score", "position"] = "amount",
    order: Literal["asc", "desc"] = "desc",
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> ClauseQuery:
    lists = {"topic": topic, "measure": measure, "industry": industry, "topic_all": topic_all, "measure_all": measure_all,
             "industry_all": industry_all, "kind": kind, "region": region, "issuer": issuer, "doc": doc}
    for name, values in lists.items():
        # SQLite refuses expression trees past ~1,000 terms; no real filter needs 200.
        n = len(_split(values))
        if n > MAX_LIST_VALUES:
            raise InvalidInput(name, f"{n} values; at most {MAX_LIST_VALUES}")
        for v in _split(values):
            check_strings(v, name)
            if len(v) > 200 or "\x00" in v:
                raise InvalidInput(name, "values must be at most 200 characters, without NUL")
    if q is not None:
        check_strings(q, "q")
    return ClauseQuery(
        any_of={"topic": _split(topic), "measure": _split(measure), "industry": _split(industry), "kind": _split(kind)},
        all_of={"topic": _split(topic_all), "measure": _split(measure_all), "industry": _split(industry_all)},
        regions=_split(region),
        issuers=_split(issuer),
        docs=_split(doc),
        year_from=year_from,
        year_to=year_to,
        min_score=min_score,
        min_amount=min_amount,
        amount_kind=amount_kind,
        text=q,
        sort=sort,
        order=order,
        limit=limit,
        offset=offset,
    )


QueryDep = Annotated[ClauseQuery, Depends(clause_query)]


@router.get("/clauses")
def list_clauses(query: QueryDep, store: StoreDep) -> dict:
    """Stored clauses matching the filters: a page of rows, the total, facets over all matches.
    When nothing matches, ``without`` says how many clauses each filter's removal would give
    (``{"region": 12, "year": 0, ...}``), so that a client can say which filter emptied it."""
    rows, total, facets = store.query(query)
    out = {"data": rows, "count": total, "facets": facets, "limit": query.limit, "offset": query.offset}
    if total == 0:
        out["without"] = store.without_each_filter(query)
    return out


@router.get("/clauses/years")
def clause_years(query: QueryDep, store: StoreDep, head: Literal["topic", "measure", "industry", "kind"] = "measure") -> dict:
    """Matching clauses per year and per ``head`` label (the page's year chart); same filters as
    /v1/clauses, paging and sort ignored. ``years`` are the years that have matching clauses
    (a year without any is not on the axis: 1997-2014 held nothing and took half the chart).
    ``series[i].counts[j]`` is the number of matching clauses of year ``years[j]`` tagged
    ``series[i].label`` (a clause with two labels counts in both series); ``series[i].primary[j]``
    those whose most probable ``head`` label it is (each clause in one series at most);
    ``unlabeled[j]`` the clauses with no ``head`` label; ``clauses[j]`` the matching clauses of
    that year, which is the sum of ``primary`` over the series plus ``unlabeled``: a chart that
    stacks ``primary`` has columns as tall as its clause counts. Clauses of undated documents
    are counted in ``undated``, not on the axis."""
    cells, totals, primary = store.year_counts(query, head)
    dated = sorted(y for y in totals if y is not None)
    # Undated clauses' labels too: the chart's undated column is drawn from the same series.
    labels = sorted({lab for _, lab in cells} | {lab for _, lab in primary if lab is not None})
    series = [
        {"label": lab, "counts": [cells.get((y, lab), 0) for y in dated], "primary": [primary.get((y, lab), 0) for y in dated]}
        for lab in labels
    ]
    for s in series:
        s["total"] = sum(s["counts"])
    series.sort(key=lambda s: -s["total"])  # biggest first: the legend reads as a ranking
    return {
        "head": head,
        "years": dated,
        "series": series,
        "unlabeled": [primary.get((y, None), 0) for y in dated],
        "clauses": [totals.get(y, 0) for y in dated],
        "count": sum(totals.values()),
        "undated": {
            "clauses": totals.get(None, 0),
            "labels": {lab: n for (y, lab), n in cells.items() if y is None},
            "primary": {lab: n for (y, lab), n in primary.items() if y is None and lab is not None},
            "unlabeled": primary.get((None, None), 0),
        },
    }


# OWASP "CSV injection": Excel and LibreOffice run a cell that starts with one of these as a
# formula (=HYPERLINK(...) exfiltrates, =cmd|... executes); a leading quote keeps it text.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
EXPORT_CHUNK = 1 << 16
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# What XML 1.0 cannot hold (C0 controls but tab, LF and CR; surrogates; U+FFFE, U+FFFF): one
# of them in a sheet makes an XLSX that is not well-formed and does not open. Noncharacters
# (U+FDD0-U+FDEF, U+nFFFE/U+nFFFF of every plane) are never text either. Dropped from both
# formats, so that a CSV and an XLSX of one query hold the same text.
_NONCHARACTERS = "".join(chr(plane + low) for plane in range(0x10000, 0x110000, 0x10000) for low in (0xFFFE, 0xFFFF))
EXPORT_ILLEGAL = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff{_NONCHARACTERS}]")


def _cell(v):
    """One exported value: lists joined, None empty; a string loses the characters XML
    cannot hold *before* the formula check, or "\\x01=HYPERLINK(...)" would pass the check
    and reach the sheet as "=HYPERLINK(...)"."""
    if isinstance(v, list):
        v = ";".join(map(str, v))
    if v is None:
        return ""
    if isinstance(v, str):
        v = EXPORT_ILLEGAL.sub("", v)
        if v.startswith(FORMULA_START):
            return "'" + v
    return v


def _names() -> dict[str, dict[str, str]]:
    from ...config import get_settings
    from ...taxonomy import load_taxonomy

    return load_taxonomy(get_settings().taxonomy_file).names


def export_rows(rows, names: dict[str, dict[str, str]]):
    """Stored rows with the export's derived columns: label names and scores per head, the
    amount as documents write it. An id the taxonomy lacks keeps its id as its name."""
    for r in rows:
        r = dict(r)
        scores = r.get("scores") or {}
        for head in ("topic", "measure", "industry"):
            ids = list(r.get(head) or [])
            r[head + "_names"] = [names.get(head, {}).get(i, i) for i in ids]
            r[head + "_scores"] = [_score((scores.get(head) or {}).get(i)) for i in ids]
        kind = r.get("kind")
        r["kind_name"] = names.get("kind", {}).get(kind, kind) if kind else None
        r["kind_score"] = _score((scores.get("kind") or {}).get(kind)) if kind else None
        r["amount"] = format_amount(r.get("amount_wan"), bool(r.get("amount_per_year")))
        r["top_score"] = _score(r.get("top_score"))
        yield r


def _score(v):
    return round(float(v), 4) if isinstance(v, (int, float)) else None


def _write_csv(rows, out) -> None:
    text = io.TextIOWrapper(out, encoding="utf-8", newline="")
    text.write("\ufeff")  # so that Excel reads UTF-8
    w = csv.writer(text)
    w.writerow(EXPORT_FIELDS)
    for r in rows:
        w.writerow([_cell(r.get(k)) for k in EXPORT_FIELDS])
    text.detach()  # flushes, and leaves `out` open for the response


def _write_xlsx(rows, out) -> None:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    from openpyxl.utils import get_column_letter

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("clauses")
    # Set before the first row: a write-only sheet writes its columns ahead of the rows.
    for i, name in enumerate(EXPORT_FIELDS, 1):
        ws.column_dimensions[get_column_letter(i)].width = XLSX_WIDTHS.get(name, XLSX_DEFAULT_WIDTH)
    ws.freeze_panes = "A2"  # the header row stays when scrolling
    n = 0

    def cell(v):
        v = _cell(v)
        if isinstance(v, str):
            # Typed explicitly as a string: openpyxl would otherwise make a formula of a text
            # starting with "=" and an error cell of "#N/A" (whatever _cell left of it).
            c = WriteOnlyCell(ws, v)
            c.data_type = "s"
            return c
        return v

    try:
        ws.append(EXPORT_FIELDS)
        for r in rows:
            ws.append([cell(r.get(k)) for k in EXPORT_FIELDS])
            n += 1
        # Written after the rows (the sheet's tail), so the range can cover them all.
        ws.auto_filter.ref = f"A1:{get_column_letter(len(EXPORT_FIELDS))}{n + 1}"
    except Exception:
        # openpyxl streams the sheet through a temporary file of its own: finish and remove
        # it now instead of leaving it half-written until the server exits.
        with contextlib.suppress(Exception):
            ws.close()
            ws._writer.cleanup()
        raise
    wb.save(out)


def _chunks(f):
    with f:
        while chunk := f.read(EXPORT_CHUNK):
            yield chunk


@router.get("/clauses/export")
def export(query: QueryDep, store: StoreDep, format: Literal["csv", "xlsx"] = "csv"):
    """Every matching clause (not just one page) as CSV (UTF-8 with BOM, opens in Excel) or XLSX.

    The file is built completely (in a temporary file, up to the store's export cap) before
    the response starts: once a 200 is sent a failure can only cut the download short, so a
    failure must happen first and be answered as an error."""
    out = tempfile.TemporaryFile()
    try:
        (_write_csv if format == "csv" else _write_xlsx)(export_rows(store.iter_all(query), _names()), out)
    except Exception:
        out.close()
        log.exception("export of %s failed", format)
        return JSONResponse(status_code=500, content={"error": "export_failed", "message": f"the {format} export failed; nothing was sent"})
    size = out.seek(0, io.SEEK_END)
    out.seek(0)
    media = "text/csv; charset=utf-8" if format == "csv" else XLSX_TYPE
    headers = {"Content-Disposition": f'attachment; filename="clauses.{format}"', "Content-Length": str(size)}
    return StreamingResponse(_chunks(out), media_type=media, headers=headers)


@router.get("/labels")
def labels() -> dict:
    """Label ids with Chinese names per head (for filter controls)."""
    from ...config import get_settings
    from ...taxonomy import load_taxonomy

    tax = load_taxonomy(get_settings().taxonomy_file)
    return {h: [{"id": l, "name": tax.names[h][l]} for l in tax.labels[h]] for h in HEADS}
