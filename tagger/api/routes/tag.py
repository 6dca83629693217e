from __future__ import annotations

import hashlib

from typing import Literal

from fastapi import APIRouter, Depends, Request

from ...tagging import model_version, resolve_overrides, tag_clauses
from ..deps import PoolDep, SettingsDep, TaggerDep
from ..jsonbody import INLINE_JSON_BYTES, TAG_BODY_SCHEMA, parse_tag_body
from ..limits import Busy, JobLimits, check_evidence_limit, check_limits
from ..rendering import FastJSON, render_json
from ..schemas import TagRequest, TagResponse, check_strings
from ..security import require_json

router = APIRouter(prefix="/v1", tags=["tag"])

# For choosing where a request runs, a clause with evidence weighs as much as this many
# without: occlusion scores ~50 variants of each clause; contributions (the default) are one
# more pass over the clause's features, measured 1.3-1.8x the CPU of tagging, counted 3.
EVIDENCE_COST = {"occlusion": 50, "contributions": 3}
EvidenceMethod = Literal["contributions", "occlusion"]
# The length of clause that costs one work unit. Tagging a longer clause costs in
# proportion to its length; occlusion evidence in proportion to the square of it (one
# variant per token, each as long as the clause), contributions in proportion to it.
COST_UNIT_CHARS = 200


def work_cost(lengths, evidence: bool, method: str = "contributions") -> int:
    """The work of tagging clauses of these lengths (characters), in units of one clause of
    up to COST_UNIT_CHARS characters tagged without evidence; compared with
    ``work_process_min_clauses`` to decide where a request runs. Counting clauses alone
    weighed a 100,000-character clause with evidence like a short one (50, "not above 50"):
    it ran in a thread of the server process, holding its GIL for minutes."""
    cost = 0
    for n in lengths:
        units = max(1, -(-n // COST_UNIT_CHARS))
        if not evidence:
            cost += units
        elif method == "occlusion":
            cost += EVIDENCE_COST["occlusion"] * units * units
        else:
            cost += EVIDENCE_COST["contributions"] * units
    return cost


def batch_tag(tagger, evidence: bool, overrides, evidence_method: str, clauses: list[dict]) -> tuple[list[dict], object]:
    """The batcher's model call: the clauses of several concurrent requests at once, and
    their drift counts."""
    from ...model.drift import DriftProfiler

    drift = DriftProfiler.pair(tagger)
    records = tag_clauses(tagger, clauses, evidence=evidence, overrides=overrides, evidence_method=evidence_method, drift=drift)
    return records, drift[1]


def _clauses_of(body: TagRequest, settings, evidence: bool) -> list[dict]:
    """The clauses of a validated request, checked (strings, limits, evidence limit)."""
    if body.text is not None:
        check_strings(body.text, "text")
        clauses = [{"id": "text-" + hashlib.sha1(body.text.encode("utf-8")).hexdigest()[:12], "text": body.text}]
    else:
        clauses = [c.model_dump() for c in body.clauses]
        check_strings(clauses, "clauses")
    check_limits(len(clauses), sum(len(c["text"]) for c in clauses), settings)
    if evidence:
        check_evidence_limit(clauses, settings)
    return clauses


def tag_job(tagger, settings, clauses: list[dict], **tag_kwargs) -> tuple[bytes, int, object]:
    """A big ``POST /v1/tag``, in a worker process (:mod:`tagger.api.workers`): the rendered
    answer, the clause count and the drift counts."""
    data, acc = batch_tag(tagger, clauses=clauses, **tag_kwargs) if clauses else ([], None)
    return render_json({"data": data, "count": len(data), "model": model_version(tagger, tag_kwargs.get("overrides"))}), len(data), acc


def tag_body_job(tagger, settings, raw: bytes, **tag_kwargs) -> tuple[bytes, int, object]:
    """A ``POST /v1/tag`` with a large body, all in the work pool (a worker process):
    parse, validate, check, tag and render."""
    clauses = _clauses_of(parse_tag_body(raw, settings), settings, tag_kwargs.get("evidence", True))
    return tag_job(tagger, settings, clauses, **tag_kwargs)


@router.post("/tag", response_model=TagResponse, response_class=FastJSON, dependencies=[Depends(require_json)],
             openapi_extra=TAG_BODY_SCHEMA)
async def tag(request: Request, tagger: TaggerDep, settings: SettingsDep, pool: PoolDep, evidence: bool = True,
              evidence_method: EvidenceMethod = "contributions"):
    """Tag clauses (or one text) in a single vectorisation pass.

    Each record carries ``evidence`` (the text spans behind each label; ``evidence_method``:
    ``contributions``, the model's own arithmetic, or ``occlusion``, ~20x slower) unless
    ``?evidence=false``; and ``provenance`` (model or override rule)."""
    method = evidence_method
    # The body is read here, not by FastAPI: parsing a large one (up to max_json_bytes) on
    # the event loop stalled every other request (tagger.api.jsonbody).
    raw = await request.body()
    if len(raw) > INLINE_JSON_BYTES:
        # Parsed, validated, tagged and rendered in a worker process. (The override rules
        # are pinned first: a broken rules file is a 503 before the body's own checks.)
        ov = resolve_overrides(tagger, settings.overrides_file)
        rendered, n, acc = await pool.run_heavy(tag_body_job, tagger, settings, raw, evidence=evidence, overrides=ov,
                                                evidence_method=method, limits=JobLimits(), receive=request.receive)
        request.app.state.metrics.clauses.inc(n)
        request.app.state.drift.add(acc)
        return FastJSON(rendered)
    clauses = _clauses_of(parse_tag_body(raw, settings), settings, evidence)
    # The override rules as of this request, read off the event loop before the route ran
    # (deps.fresh_overrides, a router dependency) and pinned: no file access here. The
    # records and the answer's "model" carry the same stamp. A broken file: 503 (api/__init__).
    ov = resolve_overrides(tagger, settings.overrides_file)
    if work_cost((len(c["text"]) for c in clauses), evidence, method) > settings.work_process_min_clauses:
        # Big: tagged and rendered in a worker process, off this process's GIL.
        rendered, n, acc = await pool.run_heavy(tag_job, tagger, settings, clauses, evidence=evidence, overrides=ov,
                                                evidence_method=method, limits=JobLimits(), receive=request.receive)
        request.app.state.metrics.clauses.inc(n)
        request.app.state.drift.add(acc)
        return FastJSON(rendered)
    # Small requests that arrive together share one model call (api/batcher.py). With the work
    # queue full, one that needs the work pool is refused now (503), not after waiting in the
    # batcher's queue for the batch under way.
    if pool.full and work_cost((len(c["text"]) for c in clauses), evidence, method) > settings.inline_clauses:
        raise Busy(message="server shutting down, retry later" if pool.draining else None)
    data = await request.app.state.batcher.submit(clauses, tagger, evidence, ov, method if evidence else None) if clauses else []
    request.app.state.metrics.clauses.inc(len(data))
    # Returned as a response object: skips re-validating every record against the
    # response model (the contract is kept by tag_clauses and tested).
    body = {"data": data, "count": len(data), "model": ov.version(tagger.version)}
    return FastJSON(await pool.run(render_json, body) if len(data) > 50 else body)
