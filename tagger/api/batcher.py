"""Concurrent small `/v1/tag` requests share one model call (dynamic batching, no wait).

A model call has a fixed cost (numpy dispatch, ~0.3 ms) that dwarfs one clause's share of
it, so under concurrent load the clauses of all requests that arrived while the previous
call ran are tagged together. Nothing waits for a batch to fill: an idle server tags a
lone request at once, so batching adds no latency at low load.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

__all__ = ["MicroBatcher"]


class MicroBatcher:
    def __init__(self, run: Callable[..., Any], fn: Callable[..., list], max_clauses: int = 256, inline: Callable[[int, tuple], bool] | None = None,
                 weight: Callable[[dict], int] | None = None, side: Callable[[Any], None] | None = None):
        # ``run(fn, *args)`` awaits ``fn`` in the work pool (admission control included).
        # ``inline(n, args)``: call ``fn`` on the event loop instead (small batches); ``n`` is
        # the batch's clauses, each counted ``weight(clause)`` times (default 1: a long clause
        # costs more than a short one). ``side``: ``fn`` returns ``(records, extra)`` and
        # ``side(extra)`` gets the whole batch's extra (the /v1/tag drift counts).
        self._run, self._fn, self.max_clauses, self._side = run, fn, max_clauses, side
        self._inline = inline or (lambda n, args: False)
        self._weight = weight
        self._queues: dict[tuple, list[tuple[list[dict], asyncio.Future]]] = {}
        self._draining: set[tuple] = set()

    async def submit(self, clauses: list[dict], *args) -> list[dict]:
        """Tagged records for ``clauses``, in order; ``args`` (e.g. the tagger, an option
        flag) must be equal for requests to share a call."""
        fut = asyncio.get_running_loop().create_future()
        key = tuple(id(a) if not isinstance(a, (bool, int, str, type(None))) else a for a in args)
        self._queues.setdefault(key, []).append((clauses, fut))
        if key not in self._draining:
            self._draining.add(key)
            asyncio.create_task(self._drain(key, args))
        return await fut

    async def _drain(self, key: tuple, args: tuple) -> None:
        queue = self._queues[key]
        try:
            while queue:
                batch, n = [], 0
                while queue and (not batch or n + len(queue[0][0]) <= self.max_clauses):
                    item = queue.pop(0)
                    if item[1].cancelled():
                        continue
                    batch.append(item)
                    n += len(item[0])
                if not batch:
                    continue
                await self._tag(batch, args)
        finally:
            self._draining.discard(key)

    async def _tag(self, batch: list[tuple[list[dict], asyncio.Future]], args: tuple) -> None:
        flat = [c for clauses, _ in batch for c in clauses]
        try:
            n = len(flat) if self._weight is None else sum(self._weight(c) for c in flat)
            if self._inline(n, args):
                records = self._fn(*args, flat)
            else:
                records = await self._run(self._fn, *args, flat)
            if self._side is not None:
                records, extra = records
                self._side(extra)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc=exc)
                return
            # One request's clauses may be what failed: retry each alone, so the others
            # still get their answer and the failing one gets its own error.
            for item in batch:
                await self._tag([item], args)
            return
        i = 0
        for clauses, fut in batch:
            _settle(fut, result=records[i : i + len(clauses)])
            i += len(clauses)


def _settle(fut: asyncio.Future, result=None, exc: BaseException | None = None) -> None:
    if fut.done():  # the client went away
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
