"""The analysts' store: documents and tagged clauses in SQL (SQLite by default,
PostgreSQL with ``TAGGER_DATABASE_URL=postgresql://…``), through SQLAlchemy Core.

Tags live twice: as JSON lists on the clause (what the API returns) and as rows of
``clause_tags`` (head, label, score) so that any-of / all-of filters and facet counts
are plain indexed SQL on both back ends.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Iterable, Iterator

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    case,
    create_engine,
    delete,
    exists,
    func,
    insert,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from ..ingest.documents import Document
from ..taxonomy import HEADS, MULTI_HEADS, as_labels
from .facts import AMOUNT_KINDS, extract_facts

__all__ = ["Store", "ClauseQuery", "IngestResult", "engine_url", "ingest_documents", "add_missing_columns"]

metadata = MetaData()

documents = Table(
    "documents",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("title", Text, nullable=False, default=""),
    Column("issuer", Text, nullable=False, default=""),
    Column("region", Text, nullable=False, default=""),
    Column("year", Integer, nullable=True, index=True),
    Column("source", Text, nullable=False, default=""),
    Column("url", Text, nullable=False, default=""),
    Column("content_sha256", String(64), nullable=False),
    Column("model", String(100), nullable=False),
    Column("n_clauses", Integer, nullable=False),
    Column("ingested_at", DateTime(timezone=True), nullable=False),
    # Drift of the document against the model that tagged it (tagger.model.drift); nullable:
    # added to older databases by add_missing_columns, NULL until the document is re-tagged.
    Column("oov_rate", Float, nullable=True),
    Column("mean_confidence", Float, nullable=True),
    Column("drift_score", Float, nullable=True),
    Column("drift_verdict", String(20), nullable=True, index=True),
)

clauses = Table(
    "clauses",
    metadata,
    Column("id", String(240), primary_key=True),
    Column("doc", String(200), ForeignKey("documents.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("section", Text, nullable=False, default=""),
    Column("text", Text, nullable=False),
    Column("topic", JSON, nullable=False),
    Column("measure", JSON, nullable=False),
    Column("industry", JSON, nullable=False),
    # The kind head's one id (rules v1.1); nullable so that add_missing_columns can add it to
    # an older database (rows stored before it stay NULL until re-tagged by a new model).
    Column("kind", String(20), nullable=True, index=True),
    Column("scores", JSON, nullable=False),
    Column("model", String(100), nullable=False),
    Column("amount_wan", Float, nullable=True, index=True),
    Column("amount_per_year", Boolean, nullable=False, default=False),
    Column("amount_text", Text, nullable=False, default=""),
    # cap | budget | ratio | statistic (tagger.store.facts): what amount_wan is. Sorting and min_amount
    # use caps unless asked otherwise, so that a province's budget does not top a firm's cap.
    Column("amount_kind", String(20), nullable=True, index=True),
    Column("ratio_pct", Float, nullable=True),
    Column("duration_years", Float, nullable=True),
    Column("beneficiaries", JSON, nullable=False),
    Column("top_score", Float, nullable=False, default=0.0),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # {head: {label: [{start, end, text, weight}]}} (tagger.model.evidence); NULL when tagged without
    # it. Nullable, so that add_missing_columns can add both to an older database.
    # none_as_null: a record without evidence is SQL NULL, not the JSON text 'null'.
    Column("evidence", JSON(none_as_null=True), nullable=True),
    Column("provenance", JSON(none_as_null=True), nullable=True),  # {head: {label: "model" | "override:<id>"}}
)

clause_tags = Table(
    "clause_tags",
    metadata,
    Column("clause_id", String(240), ForeignKey("clauses.id", ondelete="CASCADE"), primary_key=True),
    Column("head", String(20), primary_key=True),
    Column("label", String(40), primary_key=True),
    Column("score", Float, nullable=False),
    Index("ix_clause_tags_head_label", "head", "label"),
)

# Writers that lose a race retry this often (each retry re-reads what the winner stored).
INGEST_ATTEMPTS = 5
SQLITE_BUSY_TIMEOUT_S = 60

# Document fields counted as facets next to the tag heads.
DOC_FACETS = ("region", "year", "issuer")

SORTS = {"amount": clauses.c.amount_wan, "score": clauses.c.top_score, "year": documents.c.year, "position": clauses.c.position}


def _amount(q: "ClauseQuery"):
    """The amount that counts for ``q``: amount_wan where the clause's amount is of the chosen
    kind, NULL elsewhere (such rows sort with the clauses that name no amount)."""
    if q.amount_kind == "any":
        return clauses.c.amount_wan
    if q.amount_kind not in AMOUNT_KINDS:
        raise ValueError(f"amount_kind must be one of {AMOUNT_KINDS + ('any',)}, not {q.amount_kind!r}")
    return case((clauses.c.amount_kind == q.amount_kind, clauses.c.amount_wan), else_=None)


def add_missing_columns(conn, meta: MetaData = metadata) -> list[tuple[str, str]]:
    """Add the columns of ``meta``'s tables that an existing database lacks; returns the
    (table, column) pairs added.

    The store has no migrations: ``create_all`` creates missing tables but leaves existing
    ones alone, so a database written by an older version (var/tagger.db) would fail on the
    first SELECT of a newer column. A new column must therefore be nullable (or have a server
    default): ALTER TABLE ADD COLUMN cannot fill a NOT NULL column in existing rows. Indexes
    declared on added columns are created too. Works on SQLite and PostgreSQL; call it inside
    the transaction that runs ``create_all`` (the DDL is transactional on both)."""
    insp = inspect(conn)
    prep = conn.dialect.identifier_preparer
    added: list[tuple[str, str]] = []
    for table in meta.sorted_tables:
        if not insp.has_table(table.name, schema=table.schema):
            continue  # create_all makes it whole
        have = {c["name"] for c in insp.get_columns(table.name, schema=table.schema)}
        missing = [c for c in table.columns if c.name not in have]
        for col in missing:
            if not col.nullable and col.server_default is None:
                raise RuntimeError(
                    f"cannot add NOT NULL column {table.name}.{col.name} to an existing database: "
                    "declare it nullable or give it a server_default"
                )
            ddl = f"ALTER TABLE {prep.format_table(table)} ADD COLUMN {prep.format_column(col)} {col.type.compile(dialect=conn.dialect)}"
            if col.server_default is not None:
                arg = col.server_default.arg  # text("0") or a plain string
                ddl += " DEFAULT " + (arg.text if hasattr(arg, "text") else "'" + str(arg).replace("'", "''") + "'")
            if not col.nullable:
                ddl += " NOT NULL"
            conn.execute(text(ddl))
            added.append((table.name, col.name))
        names = {c.name for c in missing}
        for index in table.indexes:
            if names & {c.name for c in index.columns}:
                index.create(conn, checkfirst=True)
    return added


def _refresh_facts(conn) -> None:
    """Recompute the facts columns of stored clauses from their text (run once, when the
    ``amount_kind`` column is added to an older database): re-ingesting would not do it, as an
    unchanged document with an unchanged model is skipped."""
    rows = conn.execute(select(clauses.c.id, clauses.c.text)).all()
    if not rows:
        return
    params = []
    for cid, body in rows:
        f = extract_facts(body)
        # Parameter names must differ from the column names (SQLAlchemy reserves those).
        params.append({"cid": cid, **{"p_" + k: getattr(f, k) for k in _FACT_COLUMNS}})
    stmt = update(clauses).where(clauses.c.id == bindparam("cid")).values({k: bindparam("p_" + k) for k in _FACT_COLUMNS})
    conn.execute(stmt, params)


_FACT_COLUMNS = ("amount_wan", "amount_per_year", "amount_text", "amount_kind", "ratio_pct", "duration_years", "beneficiaries")


def engine_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (the driver the project installs)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


@dataclass
class IngestResult:
    doc: str
    status: str  # inserted | unchanged | retagged | replaced
    clauses: int


@dataclass
class ClauseQuery:
    any_of: dict[str, list[str]] = field(default_factory=dict)  # head -> labels (clause has any)
    all_of: dict[str, list[str]] = field(default_factory=dict)  # head -> labels (clause has all)
    regions: list[str] = field(default_factory=list)  # substring match, any
    issuers: list[str] = field(default_factory=list)  # substring match, any
    year_from: int | None = None
    year_to: int | None = None
    docs: list[str] = field(default_factory=list)
    min_score: float | None = None
    min_amount: float | None = None
    amount_kind: str = "cap"  # whose amounts count for sort=amount and min_amount: a kind or "any"
    text: str | None = None
    sort: str = "amount"
    order: str = "desc"
    limit: int = 50
    offset: int = 0


def _enable_wal(dbapi_conn) -> None:
    """Switch a new SQLite file to WAL, waiting out other processes doing the same.

    The switch needs an exclusive lock, and SQLite answers "database is locked" at once,
    without its busy timeout, when two connections to a fresh file escalate together
    (seen in CI: two `tagger ingest` processes opening one empty store). WAL is stored in
    the file, so once any connection has switched, the others only read the mode.
    """
    import random
    import sqlite3

    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            if dbapi_conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                dbapi_conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))


def filter_drops(q: ClauseQuery) -> dict[str, ClauseQuery]:
    """For each filter ``q`` sets, ``q`` with that one filter dropped, keyed by the API's
    parameter name (``topic`` for the head's any-of list, ``topic_all`` for its all-of list;
    the year range is one filter, ``year``). One table for the facets (each counted without
    its own filter) and for the page's hint when a query finds nothing."""
    drops: dict[str, ClauseQuery] = {}
    for attr, suffix in (("any_of", ""), ("all_of", "_all")):
        for head, labels in getattr(q, attr).items():
            if labels:
                drops[head + suffix] = replace(q, **{attr: {**getattr(q, attr), head: []}})
    for name, attr in (("region", "regions"), ("issuer", "issuers"), ("doc", "docs")):
        if getattr(q, attr):
            drops[name] = replace(q, **{attr: []})
    if q.year_from is not None or q.year_to is not None:
        drops["year"] = replace(q, year_from=None, year_to=None)
    for name, attr in (("min_score", "min_score"), ("min_amount", "min_amount"), ("q", "text")):
        if getattr(q, attr) is not None and getattr(q, attr) != "":
            drops[name] = replace(q, **{attr: None})
    return drops


class Store:
    """Safe for several writers at once (threads of the API, `tagger ingest` processes):
    writes of one document are serialised and the losers of a race see the winner's rows."""

    def __init__(self, url: str):
        self.url = url
        kwargs = {}
        if url.startswith("sqlite"):
            # timeout is SQLite's busy timeout: a writer waits for the lock instead of failing.
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}
            path = url.split("sqlite:///", 1)[-1]
            if path and path != ":memory:":
                from pathlib import Path

                Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(engine_url(url), future=True, **kwargs)
        if url.startswith("sqlite"):
            from sqlalchemy import event

            @event.listens_for(self.engine, "connect")
            def _on_connect(dbapi_conn, _):
                # pysqlite would open transactions itself, late (at the first INSERT) and
                # DEFERRED, so a read-then-write races; we issue BEGIN ourselves (below).
                dbapi_conn.isolation_level = None
                dbapi_conn.execute("PRAGMA foreign_keys=ON")  # enforced only when asked
                # WAL: readers (the API, exports) neither block nor are blocked by a writer.
                _enable_wal(dbapi_conn)
                # In WAL mode NORMAL syncs at checkpoints, not at every commit: a crash of the
                # process loses nothing, a power cut at most the last commits, and the file is
                # never corrupt either way (SQLite's documentation). FULL made every stored
                # document wait ~30 ms for the disk: most of `tagger ingest`'s time (measured:
                # 2.4 s of 7.3 s for 79 documents, more than tagging them with evidence).
                dbapi_conn.execute("PRAGMA synchronous=NORMAL")

            @event.listens_for(self.engine, "begin")
            def _on_begin(conn):
                # Writers take the write lock before their first read: a second writer waits
                # (busy timeout) and then reads what the first committed.
                conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

        self._writer = self.engine.execution_options(write=True)
        with self._writer.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Concurrent CREATE TABLEs of one schema fail on PostgreSQL's catalog; one at a time.
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('tagger.store.create_all'))"))
            metadata.create_all(conn)
            added = add_missing_columns(conn)
            if ("clauses", "amount_kind") in added:
                _refresh_facts(conn)

    # ---- writing -------------------------------------------------------------------
    def ingest(self, doc: Document, tagged: list[dict], model_version: str, drift: dict | None = None) -> IngestResult:
        """Store one document with its tagged clauses, idempotently.

        Same text and model: nothing changes. Same text, new model: tags are replaced and
        the new model version recorded. Changed text: the document's clauses are replaced.
        Concurrent ingests of one document are serialised; the later ones report what they
        find after the first, usually ``unchanged``.
        """
        for attempt in range(1, INGEST_ATTEMPTS):
            try:
                return self._ingest_once(doc, tagged, model_version, drift)
            except (IntegrityError, OperationalError) as exc:
                # IntegrityError: on PostgreSQL two writers of a new document both found no row
                # (a row lock cannot lock a row that does not exist yet) and the other one
                # inserted first; the retry finds its row. "database is locked": SQLite's busy
                # timeout ran out under a long queue of writers.
                if not (isinstance(exc, IntegrityError) or "database is locked" in str(exc)):
                    raise
                time.sleep(0.05 * attempt)
        return self._ingest_once(doc, tagged, model_version, drift)  # the last attempt raises what it meets

    @staticmethod
    def _lacks_evidence(conn, doc_id: str) -> bool:
        return conn.execute(select(clauses.c.id).where(clauses.c.doc == doc_id, clauses.c.evidence.is_(None)).limit(1)).first() is not None

    def is_current(self, doc: Document, model_version: str, evidence: bool = False) -> bool:
        """True if ``ingest`` would find ``doc`` unchanged: same text, same model stamp, and
        (``evidence``) evidence stored. Lets ``ingest_documents`` skip tagging it at all."""
        digest = hashlib.sha256(doc.text.encode("utf-8")).hexdigest()
        with self.engine.connect() as conn:
            row = conn.execute(select(documents.c.content_sha256, documents.c.model).where(documents.c.id == doc.id)).first()
            if row is None or row.content_sha256 != digest or row.model != model_version:
                return False
            return not (evidence and self._lacks_evidence(conn, doc.id))

    def _ingest_once(self, doc: Document, tagged: list[dict], model_version: str, drift: dict | None = None) -> IngestResult:
        digest = hashlib.sha256(doc.text.encode("utf-8")).hexdigest()
        now = datetime.now(timezone.utc)
        with self._writer.begin() as conn:
            # FOR UPDATE (PostgreSQL; SQLite's BEGIN IMMEDIATE already holds the lock): a second
            # writer of this document waits here and then reads the first one's commit.
            row = conn.execute(
                select(documents.c.content_sha256, documents.c.model).where(documents.c.id == doc.id).with_for_update()
            ).first()
            if row is not None and row.content_sha256 == digest and row.model == model_version:
                # Stored without evidence and now tagged with it: store the evidence (retag).
                if not (tagged and "evidence" in tagged[0] and self._lacks_evidence(conn, doc.id)):
                    return IngestResult(doc.id, "unchanged", len(tagged))
            status = "inserted" if row is None else ("retagged" if row.content_sha256 == digest else "replaced")
            meta = {
                "title": doc.title or "",
                "issuer": doc.issuer or "",
                "region": doc.region or "",
                "year": doc.year,
                "source": doc.source or "",
                "url": doc.url or "",
                "content_sha256": digest,
                "model": model_version,
                "n_clauses": len(tagged),
                "ingested_at": now,
                # the document's entry of DriftProfiler.report (None: tagged without a profile)
                "oov_rate": (drift or {}).get("oov_rate"),
                "mean_confidence": (drift or {}).get("mean_confidence"),
                "drift_score": (drift or {}).get("score"),
                "drift_verdict": (drift or {}).get("verdict"),
            }
            if row is None:
                conn.execute(insert(documents).values(id=doc.id, **meta))
            else:
                conn.execute(update(documents).where(documents.c.id == doc.id).values(**meta))
                old = select(clauses.c.id).where(clauses.c.doc == doc.id)
                conn.execute(delete(clause_tags).where(clause_tags.c.clause_id.in_(old)))
                conn.execute(delete(clauses).where(clauses.c.doc == doc.id))
            if tagged:
                conn.execute(insert(clauses), [self._clause_row(doc.id, i, rec, now) for i, rec in enumerate(tagged)])
                tags = [
                    {"clause_id": rec["id"], "head": h, "label": lab, "score": float(rec["scores"][h][lab])}
                    for rec in tagged
                    for h in HEADS
                    for lab in (as_labels(h, rec.get(h)) or [])
                ]
                if tags:
                    conn.execute(insert(clause_tags), tags)
        return IngestResult(doc.id, status, len(tagged))

    @staticmethod
    def _clause_row(doc_id: str, position: int, rec: dict, now) -> dict:
        f = extract_facts(rec["text"])
        # kind is on every clause: the top score is over the tags an analyst filters for.
        top = max((rec["scores"][h][l] for h in MULTI_HEADS for l in rec[h]), default=0.0)
        return {
            "id": rec["id"],
            "doc": doc_id,
            "position": position,
            "section": rec.get("section", ""),
            "text": rec["text"],
            **{h: list(rec[h]) for h in MULTI_HEADS},
            "kind": rec.get("kind"),
            "scores": rec["scores"],
            "model": rec["model"],
            "amount_wan": f.amount_wan,
            "amount_per_year": f.amount_per_year,
            "amount_text": f.amount_text,
            "amount_kind": f.amount_kind,
            "ratio_pct": f.ratio_pct,
            "duration_years": f.duration_years,
            "beneficiaries": f.beneficiaries,
            "top_score": float(top),
            "updated_at": now,
            "evidence": rec.get("evidence"),
            "provenance": rec.get("provenance"),
        }

    # ---- reading -------------------------------------------------------------------
    def _where(self, q: ClauseQuery):
        conds = []
        score_ok = (lambda: clause_tags.c.score >= q.min_score) if q.min_score is not None else None
        for head, labels in q.any_of.items():
            if labels:
                c = [clause_tags.c.clause_id == clauses.c.id, clause_tags.c.head == head, clause_tags.c.label.in_(labels)]
                if score_ok:
                    c.append(score_ok())
                conds.append(exists().where(and_(*c)))
        for head, labels in q.all_of.items():
            for lab in labels:
                c = [clause_tags.c.clause_id == clauses.c.id, clause_tags.c.head == head, clause_tags.c.label == lab]
                if score_ok:
                    c.append(score_ok())
                conds.append(exists().where(and_(*c)))
        if q.min_score is not None and not any(q.any_of.values()) and not any(q.all_of.values()):
            conds.append(clauses.c.top_score >= q.min_score)
        if q.regions:
            conds.append(or_(*[documents.c.region.contains(r, autoescape=True) for r in q.regions]))
        if q.issuers:
            conds.append(or_(*[documents.c.issuer.contains(r, autoescape=True) for r in q.issuers]))
        if q.year_from is not None:
            conds.append(documents.c.year >= q.year_from)
        if q.year_to is not None:
            conds.append(documents.c.year <= q.year_to)
        if q.docs:
            conds.append(clauses.c.doc.in_(q.docs))
        if q.min_amount is not None:
            conds.append(_amount(q) >= q.min_amount)
        if q.text:
            conds.append(clauses.c.text.contains(q.text, autoescape=True))
        return and_(*conds) if conds else None

    def _base(self, cols, q: ClauseQuery):
        stmt = select(*cols).select_from(clauses.join(documents, clauses.c.doc == documents.c.id))
        where = self._where(q)
        return stmt.where(where) if where is not None else stmt

    _COLS = [
        clauses,
        documents.c.title.label("doc_title"),
        documents.c.region,
        documents.c.year,
        documents.c.issuer,
        documents.c.url,
    ]

    def query(self, q: ClauseQuery) -> tuple[list[dict], int, dict[str, dict[str, int]]]:
        """(rows of the page, total matching, facets over all matching)."""
        with self.engine.connect() as conn:
            total = conn.execute(self._base([func.count()], q)).scalar_one()
            rows = [self._row(r) for r in conn.execute(self._page(q))]
            facets = self._facets(conn, q)
        return rows, total, facets

    def _page(self, q: ClauseQuery, limit: int | None = None):
        col = _amount(q) if q.sort == "amount" else SORTS.get(q.sort, clauses.c.amount_wan)
        key = col.desc() if q.order == "desc" else col.asc()
        # NULL amounts/years last whatever the direction; ties broken by document order.
        stmt = self._base(self._COLS, q).order_by(col.is_(None), key, clauses.c.doc, clauses.c.position)
        return stmt.limit(limit if limit is not None else q.limit).offset(q.offset if limit is None else 0)

    def iter_all(self, q: ClauseQuery, cap: int = 200_000) -> Iterator[dict]:
        with self.engine.connect() as conn:
            for r in conn.execute(self._page(q, limit=cap)):
                yield self._row(r)

    def _facets(self, conn, q: ClauseQuery) -> dict[str, dict[str, int]]:
        """Matching clauses per label of each head, and per document ``region``, ``year`` and
        ``issuer`` (keys as text; an undated document's clauses under ``"none"``, documents
        without region or issuer left out: no filter could select them).

        Each facet is counted with its own filter left out and every other filter kept: the
        counts say what choosing a value of that facet would find. With ``region=成都`` the
        region facet still lists 武汉 and its count (clicking a region or a year replaces the
        filter; a label is added to the head's any-of list), where counting under the region
        filter itself could only ever show 成都. ``<head>_all`` filters stay: they narrow."""
        out: dict[str, dict[str, int]] = {h: {} for h in HEADS}
        drops = filter_drops(q)
        plans = [(q, [h for h in HEADS if h not in drops])] + [(drops[h], [h]) for h in HEADS if h in drops]
        for qq, heads in plans:
            if not heads:
                continue
            ids = self._base([clauses.c.id], qq).subquery()
            stmt = (
                select(clause_tags.c.head, clause_tags.c.label, func.count())
                .where(clause_tags.c.clause_id.in_(select(ids.c.id)), clause_tags.c.head.in_(heads))
                .group_by(clause_tags.c.head, clause_tags.c.label)
            )
            for head, label, n in conn.execute(stmt):
                out.setdefault(head, {})[label] = int(n)
        for name in DOC_FACETS:
            col = documents.c[name]
            by = self._base([col, func.count()], drops.get(name, q)).group_by(col)
            counts = {("none" if v is None else str(v)): int(n) for v, n in conn.execute(by) if v != ""}
            # Largest first; years in calendar order (the page lists them as an axis).
            key = (lambda kv: kv[0]) if name == "year" else (lambda kv: (-kv[1], kv[0]))
            out[name] = dict(sorted(counts.items(), key=key))
        return out

    def count(self, q: ClauseQuery) -> int:
        with self.engine.connect() as conn:
            return conn.execute(self._base([func.count()], q)).scalar_one()

    def without_each_filter(self, q: ClauseQuery) -> dict[str, int]:
        """For each filter ``q`` sets, how many clauses match with that one filter dropped (the
        page's hint when a query finds nothing: which filter emptied it). Keys are the API's
        parameter names; the year range counts as one filter, ``year``."""
        drops = filter_drops(q)
        with self.engine.connect() as conn:
            return {name: conn.execute(self._base([func.count()], d)).scalar_one() for name, d in drops.items()}

    @staticmethod
    def _row(r) -> dict:
        m = dict(r._mapping)
        for k in ("updated_at",):
            if m.get(k) is not None:
                m[k] = m[k].isoformat()
        return m

    def documents(self) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(documents).order_by(documents.c.id))]

    def counts(self) -> dict:
        with self.engine.connect() as conn:
            return {
                "documents": conn.execute(select(func.count()).select_from(documents)).scalar_one(),
                "clauses": conn.execute(select(func.count()).select_from(clauses)).scalar_one(),
            }

    def document(self, doc_id: str) -> dict | None:
        """One document's metadata and all its clauses in position order (the page's document
        view), or None. Clause rows have the shape of :meth:`query` rows so that the page
        renders both with the same code."""
        with self.engine.connect() as conn:
            meta = conn.execute(select(documents).where(documents.c.id == doc_id)).first()
            if meta is None:
                return None
            stmt = self._base(self._COLS, ClauseQuery(docs=[doc_id])).order_by(clauses.c.position)
            rows = [self._row(r) for r in conn.execute(stmt)]
        info = dict(meta._mapping)
        info["ingested_at"] = info["ingested_at"].isoformat() if info.get("ingested_at") else None
        return {"document": info, "clauses": rows}

    def year_counts(self, q: ClauseQuery, head: str = "measure") -> tuple[dict, dict, dict]:
        """Over all clauses matching ``q`` (paging ignored): ({(year, label): clauses with that
        ``head`` label}, {year: matching clauses}, {(year, label): clauses whose most probable
        ``head`` label it is, label None for clauses with no label of ``head``}); year is None
        for undated documents. The third sums to the second year by year: a chart stacking it
        has columns as tall as the clause counts written over them."""
        m = self._base([clauses.c.id.label("cid"), documents.c.year.label("year")], q).subquery()
        by_label = (
            select(m.c.year, clause_tags.c.label, func.count())
            .select_from(m.join(clause_tags, clause_tags.c.clause_id == m.c.cid))
            .where(clause_tags.c.head == head)
            .group_by(m.c.year, clause_tags.c.label)
        )
        by_year = select(m.c.year, func.count()).group_by(m.c.year)
        # Each clause's top label: highest score, ties by label id. Picked here from the tag rows
        # of the matching clauses (a window function over a joined subquery took 5 s on SQLite
        # for 6,000 clauses; these rows are a few per clause).
        tags = (
            select(m.c.cid, m.c.year, clause_tags.c.label, clause_tags.c.score)
            .select_from(m.join(clause_tags, clause_tags.c.clause_id == m.c.cid))
            .where(clause_tags.c.head == head)
        )
        with self.engine.connect() as conn:
            cells = {(y, lab): int(n) for y, lab, n in conn.execute(by_label)}
            totals = {y: int(n) for y, n in conn.execute(by_year)}
            best: dict[str, tuple] = {}
            for cid, year, label, score in conn.execute(tags):
                if cid not in best or (-score, label) < (-best[cid][2], best[cid][1]):
                    best[cid] = (year, label, score)
        primary: dict[tuple, int] = {}
        for year, label, _ in best.values():
            primary[(year, label)] = primary.get((year, label), 0) + 1
        for year, n in totals.items():  # clauses with no label of the head
            primary[(year, None)] = n - sum(c for (y, lab), c in primary.items() if y == year and lab is not None)
        return cells, totals, primary


def ingest_documents(store: Store, tagger, docs: Iterable[Document], evidence: bool = False, overrides=None,
                     evidence_method: str | None = None, progress=None) -> list[IngestResult]:
    """Segment, tag and store documents one by one (``tagger ingest``, which asks for the
    evidence). The override rules are read once (``overrides``: see
    :func:`tagger.tagging.resolve_overrides`); their stamp is part of the model version, so
    an edited rules file re-tags stored documents. A document already stored as it would be
    now is not tagged again (evidence costs time). ``progress(doc, result)`` is called before
    a document is tagged (result None) and once it is stored: each document is stored on its
    own, so an interrupted run keeps what it stored and a rerun skips it."""
    from ..ingest.segment import segment
    from ..tagging import resolve_overrides, tag_clauses

    from ..model.drift import DriftProfiler

    ov = resolve_overrides(tagger, overrides)
    version = ov.version(tagger.version)
    profiler = DriftProfiler.for_tagger(tagger)
    results = []
    for doc in docs:
        recs = [c.record() for c in segment(doc)]
        if store.is_current(doc, version, evidence):
            results.append(IngestResult(doc.id, "unchanged", len(recs)))
        else:
            if progress:
                progress(doc, None)
            acc = profiler.new_accumulator()
            tagged = tag_clauses(tagger, recs, evidence=evidence, overrides=ov, evidence_method=evidence_method,
                                 drift=(profiler, acc)) if recs else []
            drift = profiler.document(acc.docs[doc.id]) if doc.id in acc.docs else None
            results.append(store.ingest(doc, tagged, version, drift))
        if progress:
            progress(doc, results[-1])
    return results

