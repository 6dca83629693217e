from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)
PAGE = Path(__file__).resolve().parent.parent.parent / "static" / "index.html"


@router.get("/", response_class=HTMLResponse)
def index() -> str:
    """The analysts' page: filters, results, facets, export (talks to /v1/clauses)."""
    return PAGE.read_text(encoding="utf-8")
