"""The analysts' store: tagged clauses in SQL (``db``) with the amounts read out of
their text (``facts``)."""

from __future__ import annotations

from .._lazy import lazy_exports

__all__ = ['ClauseQuery', 'Store', 'ingest_documents']

_WHERE = {'Store': 'db', 'ClauseQuery': 'db', 'ingest_documents': 'db'}

__getattr__ = lazy_exports(__name__, _WHERE)
