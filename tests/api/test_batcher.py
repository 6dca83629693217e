"""Concurrent small /v1/tag requests share model calls (tagger/api/batcher.py): each client
still gets exactly its own records, small batches run on the event loop, large ones in the
work threads, and one failing request does not take the others of its batch down."""

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tagger.api import create_app
from tagger.api.batcher import MicroBatcher
from tagger.config import Settings
from tagger.tagging import tag_clauses

from ..conftest import ROOT, serve


@pytest.fixture(scope="module")
def base_url(tmp_path_factory, tagger):
    settings = Settings(database_url=f"sqlite:///{tmp_path_factory.mktemp('db') / 'api.db'}", work_processes=0)
    yield from serve(create_app(settings, tagger=tagger))


def test_concurrent_single_clause_requests_get_their_own_records(base_url, tagger):
    lines = (ROOT / "labels" / "clauses.jsonl").read_text(encoding="utf-8").splitlines()
    texts = [json.loads(line)["text"] for line in lines[::len(lines) // 64]][:64]
    with httpx.Client(base_url=base_url, timeout=60) as client, ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda t: client.post("/v1/tag?evidence=false", json={"text": t}).json()["data"][0], texts))
    want = tag_clauses(tagger, [{"id": g["id"], "text": t} for g, t in zip(got, texts)])
    assert [g["text"] for g in got] == texts
    for g, w in zip(got, want):
        assert (g["topic"], g["measure"], g["industry"]) == (w["topic"], w["measure"], w["industry"])
        # The sparse path is batch-independent: sharing a call changes no score.
        assert g["scores"] == w["scores"]


def _run_batcher(sizes: list[int], inline_max: int, fail_on: str | None = None):
    """Submit one request per size at once; return the requests, each one's answer or
    error, and the model calls as (clauses, ran on the event loop thread)."""
    calls: list[tuple[int, bool]] = []

    def fn(tag, clauses):
        if any(c["text"] == fail_on for c in clauses):
            raise ValueError(f"bad clause {fail_on}")
        # asyncio.run below runs the loop in this test's (main) thread.
        calls.append((len(clauses), threading.current_thread() is threading.main_thread()))
        return [{"id": c["id"], "tag": tag} for c in clauses]

    async def main():
        executor = ThreadPoolExecutor(2)

        async def run(f, *args):
            return await asyncio.get_running_loop().run_in_executor(executor, f, *args)

        b = MicroBatcher(run, fn, inline=lambda n, args: n <= inline_max)
        reqs = [[{"id": f"{i}.{k}", "text": f"{i}.{k}"} for k in range(n)] for i, n in enumerate(sizes)]
        out = await asyncio.gather(*[b.submit(r, "x") for r in reqs], return_exceptions=True)
        executor.shutdown()
        return reqs, out

    reqs, out = asyncio.run(main())
    return reqs, out, calls


def test_batcher_answers_each_request_in_order_and_inlines_small_batches():
    reqs, out, calls = _run_batcher([1, 1, 1], inline_max=8)
    assert [[r["id"] for r in o] for o in out] == [[c["id"] for c in r] for r in reqs]
    # All three arrived together: one call, on the event loop thread.
    assert calls == [(3, True)]

    reqs, out, calls = _run_batcher([5, 5, 5], inline_max=8)
    assert [[r["id"] for r in o] for o in out] == [[c["id"] for c in r] for r in reqs]
    assert calls == [(15, False)]


def test_one_failing_request_gets_its_error_and_the_others_their_records():
    reqs, out, calls = _run_batcher([1, 1, 1], inline_max=8, fail_on="1.0")
    assert isinstance(out[1], ValueError) and "1.0" in str(out[1])
    assert [o[0]["id"] for i, o in enumerate(out) if i != 1] == ["0.0", "2.0"]
