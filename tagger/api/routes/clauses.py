from __future__ import annotations

import csv
import io
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from ...store import ClauseQuery
from ...taxonomy import HEADS
from ..deps import StoreDep

router = APIRouter(prefix="/v1", tags=["clauses"])

Labels = Annotated[list[str] | None, Query()]
EXPORT_FIELDS = [
    "id", "doc", "doc_title", "region", "year", "section", "text", "topic", "measure", "industry",
    "amount_wan", "amount_per_year", "amount_text", "ratio_pct", "duration_years", "beneficiaries", "top_score", "model",
]


def _split(values: list[str] | None) -> list[str]:
    """Accept both ?measure=a&measure=b and ?measure=a,b."""
    out: list[str] = []
    for v in values or []:
        out += [x.strip() for x in v.split(",") if x.strip()]
    return out


def clause_query(
    topic: Labels = None,
    measure: Labels = None,
    industry: Labels = None,
    topic_all: Labels = None,
    measure_all: Labels = None,
    industry_all: Labels = None,
    region: Labels = None,
    doc: Labels = None,
    year_from: int | None = None,
    year_to: int | None = None,
    min_score: Annotated[float | None, Query(ge=0, le=1)] = None,
    min_amount: Annotated[float | None, Query(ge=0)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    sort: Literal["amount", "year", "score", "position"] = "amount",
    order: Literal["asc", "desc"] = "desc",
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ClauseQuery:
    return ClauseQuery(
        any_of={"topic": _split(topic), "measure": _split(measure), "industry": _split(industry)},
        all_of={"topic": _split(topic_all), "measure": _split(measure_all), "industry": _split(industry_all)},
        regions=_split(region),
        docs=_split(doc),
        year_from=year_from,
        year_to=year_to,
        min_score=min_score,
        min_amount=min_amount,
        text=q,
        sort=sort,
        order=order,
        limit=limit,
        offset=offset,
    )


QueryDep = Annotated[ClauseQuery, Depends(clause_query)]


@router.get("/clauses")
def list_clauses(query: QueryDep, store: StoreDep) -> dict:
    """Stored clauses matching the filters: a page of rows, the total, facets over all matches."""
    rows, total, facets = store.query(query)
    return {"data": rows, "count": total, "facets": facets, "limit": query.limit, "offset": query.offset}


def _cell(v):
    if isinstance(v, list):
        return ";".join(map(str, v))
    return "" if v is None else v


@router.get("/clauses/export")
def export(query: QueryDep, store: StoreDep, format: Literal["csv", "xlsx"] = "csv"):
    """Every matching clause (not just one page) as CSV (UTF-8 with BOM, opens in Excel) or XLSX."""
    rows = store.iter_all(query)
    if format == "csv":
        def gen():
            buf = io.StringIO()
            w = csv.writer(buf)
            buf.write("\ufeff")
            w.writerow(EXPORT_FIELDS)
            for r in rows:
                w.writerow([_cell(r.get(k)) for k in EXPORT_FIELDS])
                if buf.tell() > 65536:
                    yield buf.getvalue()
                    buf.seek(0)
                    buf.truncate()
            yield buf.getvalue()

        return StreamingResponse(gen(), media_type="text/csv; charset=utf-8", headers={"Content-Disposition": 'attachment; filename="clauses.csv"'})
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("clauses")
    ws.append(EXPORT_FIELDS)
    for r in rows:
        ws.append([_cell(r.get(k)) for k in EXPORT_FIELDS])
    out = io.BytesIO()
    wb.save(out)
    return StreamingResponse(
        iter([out.getvalue()]),
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": 'attachment; filename="clauses.xlsx"'},
    )


@router.get("/labels")
def labels() -> dict:
    """Label ids with Chinese names per head (for filter controls)."""
    from ...config import get_settings
    from ...taxonomy import load_taxonomy

    tax = load_taxonomy(get_settings().taxonomy_file)
    return {h: [{"id": l, "name": tax.names[h][l]} for l in tax.labels[h]] for h in HEADS}
