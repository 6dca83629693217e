"""Worker processes for the CPU-heavy requests: reading uploads, segmentation, tagging,
storing (``?store=true``) and rendering the JSON of big answers.

In threads of the server process this work holds the GIL, and the event loop that answers
``/v1/health`` and small requests waits for it (stalls of 120-250 ms during three worst-case
uploads on 2 cores; 30 ms at most in processes, README "Limits"). Here it runs in
a small pool of processes (``spawn``: an onnxruntime session must not be forked), each of
which loads the bundle once and answers with the final JSON bytes, so the server process
only moves bytes. Admission (bounded queue, 503 + Retry-After) stays with
:class:`tagger.api.limits.WorkPool`.

A job is ``fn(tagger, settings, *args, **kwargs)``: in a worker the tagger and settings are
the worker's own; without worker processes (``TAGGER_WORK_PROCESSES=0``) the same function
runs in a thread of the server with the server's tagger.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

from fastapi import HTTPException

from ..errors import TaggerError

__all__ = ["WorkerProcesses", "tag_job"]

log = logging.getLogger("tagger.api.workers")

# -- in the worker process ------------------------------------------------------------------------
_tagger = None
_settings = None


def _init(folder: str, settings, tagger_kwargs: dict, parent: int) -> None:
    """Initializer: load the bundle once per process."""
    import signal

    global _tagger, _settings
    # Ctrl-C reaches the whole process group: the server shuts its workers down itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    nice = getattr(settings, "work_process_nice", 0)
    if nice > 0:
        # Below the server's priority: a waking event loop (health checks, small requests)
        # gets a core before the batch work does.
        os.nice(nice)
    threading.Thread(target=_orphan_watch, args=(parent,), daemon=True, name="orphan-watch").start()
    from ..model.inference import Tagger

    _tagger = Tagger(Path(folder), **tagger_kwargs)
    _settings = settings


def _orphan_watch(parent: int) -> None:
    # A server killed with SIGKILL cannot stop its workers: they leave on their own.
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _ready() -> int:
    return os.getpid()


class _Raised:
    """An exception from a job with its traceback, in a form that always pickles (any
    exception class, not only :class:`TaggerError`, which pickles itself). Rebuilt in the
    server as the same class with the same attributes, so the same 4xx handler answers it."""

    def __init__(self, exc: BaseException):
        import pickle
        import traceback

        self.cls, self.args, self.state = type(exc), exc.args, dict(getattr(exc, "__dict__", {}))
        self.trace = "".join(traceback.format_exception(exc))
        try:
            pickle.dumps((self.cls, self.args, self.state))
        except Exception:
            self.cls, self.args, self.state = RuntimeError, (f"{type(exc).__name__}: {exc}",), {}

    def exception(self) -> BaseException:
        exc = self.cls.__new__(self.cls)
        exc.args = self.args
        exc.__dict__.update(self.state)
        return exc


def _in_worker(fn: Callable, args: tuple, kwargs: dict):
    try:
        return fn(_tagger, _settings, *args, **kwargs)
    except Exception as exc:
        return _Raised(exc)


# -- the jobs ----------------------------------------------------------------------------------------
def _render(content) -> bytes:
    from .routes.tag import render_json

    return render_json(content)


def tag_job(tagger, settings, clauses: list[dict], **tag_kwargs) -> tuple[bytes, int]:
    """A big ``POST /v1/tag``: the rendered answer and the clause count."""
    from ..tagging import model_version, tag_clauses

    data = tag_clauses(tagger, clauses, **tag_kwargs) if clauses else []
    return _render({"data": data, "count": len(data), "model": model_version(tagger, tag_kwargs.get("overrides"))}), len(data)


# -- in the server process ----------------------------------------------------------------------------
class WorkerProcesses:
    """``n`` worker processes, started in the background (:meth:`start`) so that start-up
    does not wait for them; a job submitted before they are up waits for them."""

    def __init__(self, n: int, folder: Path, settings, tagger_kwargs: dict | None = None):
        self.n, self.folder, self.settings = n, Path(folder), settings
        # One ONNX thread per worker (no spinning threads): the parallelism is the processes.
        self.tagger_kwargs = {"threads": 1, **(tagger_kwargs or {})}
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._warm: threading.Thread | None = None
        self.running = 0  # jobs submitted and not yet answered
        self.started = False  # every worker has loaded the bundle (reported by /v1/ready)

    @classmethod
    def for_tagger(cls, n: int, tagger, settings) -> "WorkerProcesses":
        """Workers that load the bundle ``tagger`` was loaded from, the same way."""
        # No self-test: the server's copy of the same files passed it.
        return cls(n, tagger.folder, settings, {"serving": tagger.serving, "self_test": False})

    def _get(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError("worker processes are shut down")
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    max_workers=self.n,
                    mp_context=get_context("spawn"),
                    initializer=_init,
                    initargs=(str(self.folder), self.settings, self.tagger_kwargs, os.getpid()),
                )
            return self._executor

    def start(self) -> None:
        """Spawn all workers now (a process is spawned per job while none is idle), from a
        background thread: spawning must not delay start-up."""

        def warm():
            t0 = time.perf_counter()
            try:
                futures = [self._get().submit(_ready) for _ in range(self.n)]
            except RuntimeError:  # shut down before it started
                return
            # Not f.result(): a raised exception would keep this frame, and with it the
            # executor, alive in a reference cycle after shutdown.
            wait(futures)
            failed = next((f.exception() for f in futures if not f.cancelled() and f.exception()), None)
            if failed is not None and not self._closed:
                log.warning("worker processes did not start: %s", failed)
            elif failed is None:
                self.started = True
                log.info("%d worker processes ready in %.1f s", self.n, time.perf_counter() - t0)

        self._warm = threading.Thread(target=warm, daemon=True, name="tagger-workers-start")
        self._warm.start()

    async def run(self, fn: Callable, *args, **kwargs):
        ex = self._get()
        self.running += 1
        try:
            out = await asyncio.wrap_future(ex.submit(_in_worker, fn, args, kwargs))
        except BrokenProcessPool:
            # A worker died (killed, out of memory): the next job gets a fresh pool.
            with self._lock:
                if self._executor is ex:
                    self._executor = None
            ex.shutdown(wait=False, cancel_futures=True)
            from .limits import Busy

            log.error("a worker process died; restarting the worker pool")
            raise Busy() from None
        finally:
            self.running -= 1
        if isinstance(out, _Raised):
            exc = out.exception()
            if not isinstance(exc, (HTTPException, TaggerError)):
                log.error("job %s failed in a worker process:\n%s", getattr(fn, "__name__", fn), out.trace)
            raise exc
        return out

    def pids(self) -> list[int]:
        ex = self._executor
        return sorted(getattr(ex, "_processes", None) or {}) if ex is not None else []

    def shutdown(self, timeout: float = 3.0) -> None:
        """Stop the workers and reap them (no zombies): a job still running gets
        ``timeout`` seconds, then its process is terminated; so is a worker still loading
        the bundle (it cannot take the stop signal before it is loaded)."""
        with self._lock:
            self._closed = True
            ex, self._executor = self._executor, None
        if ex is None:
            return
        procs = dict(getattr(ex, "_processes", None) or {})
        manager = getattr(ex, "_executor_manager_thread", None)  # shutdown() forgets it
        ex.shutdown(wait=False, cancel_futures=True)  # idle workers exit at once
        procs.update(getattr(ex, "_processes", None) or {})
        deadline = time.monotonic() + (timeout if self.running else 0.5)
        for p in procs.values():
            p.join(max(0.0, deadline - time.monotonic()))
        for p in procs.values():
            if p.is_alive():
                p.terminate()
                p.join(1.0)
            if p.is_alive():
                p.kill()
                p.join(1.0)
        # The processes are gone: the executor's thread closes its queues and ends.
        if manager is not None:
            manager.join(2.0)
        if self._warm is not None:
            self._warm.join(1.0)
        # Release the queues' semaphores now: uvicorn ends by re-raising SIGTERM, which skips
        # the exit-time finalizers (the resource tracker would then report them as leaked).
        del ex, manager
        import gc

        gc.collect()
