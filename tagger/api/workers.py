"""Worker processes for the CPU-heavy requests: reading uploads, parsing large JSON bodies,
segmentation, tagging, storing (``?store=true``) and rendering the JSON of big answers.

In threads of the server process this work holds the GIL, and the event loop that answers
``/v1/health`` and small requests waits for it (stalls of 120-250 ms during three worst-case
uploads on 2 cores; 30 ms at most in processes, README "Limits"). Here it runs in
a small pool of processes (``spawn``: an onnxruntime session must not be forked), each of
which loads the bundle once and answers with the final JSON bytes, so the server process
only moves bytes. Admission (bounded queue, 503 + Retry-After) stays with
:class:`tagger.api.limits.WorkPool`.

Each worker process is driven by a thread of the server (a *slot*) over a pipe, one job at
a time, so that one job can be stopped without touching the others: its process is killed
and the slot starts another (which loads the bundle again, ~2-4 s). A job is stopped when

* it is still reading its document (before it calls :func:`reading_done`) after its
  ``read_seconds`` (``TAGGER_PARSE_TIMEOUT``): a 81 KB PDF whose 500 pages share one
  1 MB content stream held a worker for ~14 minutes; it is answered 422;
* its client has gone away (``cancellable``; a store write, once reading is done, is
  left to finish);
* the server shuts down and the job has not finished within the grace period
  (:meth:`WorkerProcesses.drain`, :meth:`WorkerProcesses.shutdown`): 503;
* its process's resident memory passes ``work_process_max_mb`` (``TAGGER_WORK_PROCESS_MAX_MB``;
  read from ``/proc`` at each poll): 413.

A job is ``fn(tagger, settings, *args, **kwargs)``: in a worker the tagger and settings are
the worker's own; without worker processes (``TAGGER_WORK_PROCESSES=0``) the same function
runs in a thread of the server with the server's tagger (and nothing can stop it).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import threading
import time
from concurrent.futures import Future
from multiprocessing import get_context
from multiprocessing.connection import wait as wait_for
from pathlib import Path
from typing import Callable

from fastapi import HTTPException

from ..errors import TaggerError
from .limits import Busy, JobLimits, started_within

__all__ = ["WorkerProcesses", "reading_done"]

log = logging.getLogger("tagger.api.workers")

POLL = 0.05  # seconds: how often a slot looks at its job's deadline, cancellation and memory
_MIB = 1024 * 1024
try:
    _PAGE = os.sysconf("SC_PAGE_SIZE")
except (AttributeError, ValueError, OSError):
    _PAGE = 4096
KILL_GRACE = 2.0  # seconds past a job's reading time limit before its process is killed
SPAWN_BACKOFF_MAX = 30.0

# -- in the worker process ------------------------------------------------------------------------
_tagger = None
_settings = None
_conn = None  # the pipe to this worker's slot in the server


def _init(folder: str, settings, tagger_kwargs: dict, parent: int) -> None:
    """Load the bundle once per process."""
    import signal

    global _tagger, _settings
    # Ctrl-C reaches the whole process group: the server shuts its workers down itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _lower_priority(os.getpid(), parent, getattr(settings, "work_process_nice", 0))
    threading.Thread(target=_orphan_watch, args=(parent,), daemon=True, name="orphan-watch").start()
    from ..model.inference import Tagger

    _tagger = Tagger(Path(folder), **tagger_kwargs)
    _settings = settings


def _lower_priority(pid: int, parent: int, nice: int) -> None:
    """Run ``pid`` ``nice`` steps below ``parent`` (the server): a waking event loop (health
    checks, small requests) gets a core before the batch work does. Set by the worker itself
    before it loads the bundle, and for a replacement worker by the server as soon as the
    process exists (starting Python and importing the app is ~1 s of CPU)."""
    if nice <= 0:
        return
    try:
        target = min(19, os.getpriority(os.PRIO_PROCESS, parent) + nice)
        if os.getpriority(os.PRIO_PROCESS, pid) < target:
            os.setpriority(os.PRIO_PROCESS, pid, target)
    except OSError:  # gone already, or not allowed
        pass


def _orphan_watch(parent: int) -> None:
    # A server killed with SIGKILL cannot stop its workers: they leave on their own.
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _worker_main(conn, folder: str, settings, tagger_kwargs: dict, parent: int) -> None:
    """A worker process: load the bundle, say so, then run the jobs its slot sends, one at a
    time, until it is sent ``None`` or its pipe closes."""
    global _conn
    try:
        _init(folder, settings, tagger_kwargs, parent)
    except BaseException as exc:  # noqa: BLE001 - reported to the server, which logs it
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    _conn = conn
    conn.send(("ready", os.getpid()))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        fn, args, kwargs = job
        out = _in_worker(fn, args, kwargs)
        try:
            conn.send(("done", out))
        except (EOFError, OSError):
            return
        except Exception as exc:  # the result does not pickle
            conn.send(("done", _Raised(exc)))


def reading_done() -> None:
    """Called by a job when it has read its document: the job's reading time limit
    (:class:`JobLimits`) no longer applies. Does nothing outside a worker process."""
    if _conn is not None:
        _conn.send(("read", None))


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


# -- in the server process ----------------------------------------------------------------------------
class _Job:
    __slots__ = ("fn", "args", "kwargs", "limits", "future", "cancel_requested", "reading")

    def __init__(self, fn: Callable, args: tuple, kwargs: dict, limits: JobLimits):
        self.fn, self.args, self.kwargs, self.limits = fn, args, kwargs, limits
        self.future: Future = Future()
        self.cancel_requested = False
        self.reading = True

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class _Slot:
    """One worker process and the thread of the server that drives it."""

    def __init__(self, pool: "WorkerProcesses", index: int):
        self.pool, self.index = pool, index
        self.proc = None
        self.conn = None
        self.failures = 0
        self.ready_once = False
        self.thread = threading.Thread(target=self._loop, daemon=True, name=f"tagger-worker-{index}")

    # -- the process -------------------------------------------------------------------------
    def _spawn(self) -> bool:
        pool = self.pool
        ctx = get_context("spawn")
        ours, theirs = ctx.Pipe()
        proc = ctx.Process(target=_worker_main, args=(theirs, str(pool.folder), pool.settings, pool.tagger_kwargs, os.getpid()),
                           name=f"tagger-worker-{self.index}", daemon=True)
        try:
            proc.start()
        except Exception as exc:  # noqa: BLE001 - out of processes, memory...
            log.error("cannot start a worker process: %s", exc)
            ours.close()
            theirs.close()
            return False
        theirs.close()
        if self.ready_once:
            # A replacement (the one before was killed or died): started while the server is
            # under load, it must not take the server's CPU while it loads. (At start-up
            # the worker lowers itself once it has started Python, and loads sooner.)
            _lower_priority(proc.pid, os.getpid(), getattr(pool.settings, "work_process_nice", 0))
        failure = "exited while loading the bundle"
        while True:
            if pool._closed:
                self._stop(proc, ours)
                return False
            ready = wait_for([ours, proc.sentinel], timeout=0.2)
            if ours in ready:
                try:
                    kind, payload = ours.recv()
                except (EOFError, OSError):
                    break
                if kind == "ready":
                    self.proc, self.conn = proc, ours
                    self.failures = 0
                    self.ready_once = True
                    pool._slot_ready()
                    return True
                failure = payload
                break
            if proc.sentinel in ready:
                break
        log.error("a worker process did not start: %s", failure)
        self._stop(proc, ours)
        return False

    @staticmethod
    def _stop(proc, conn, kill: bool = True) -> None:
        if kill and proc.is_alive():
            proc.kill()
        proc.join(5.0)
        conn.close()

    def _kill(self) -> None:
        if self.proc is not None:
            self._stop(self.proc, self.conn)
            self.proc = self.conn = None

    def pid(self) -> int | None:
        p = self.proc
        return p.pid if p is not None else None

    def rss(self) -> int:
        """The worker process's resident memory in bytes (0 where /proc cannot tell)."""
        try:
            with open(f"/proc/{self.proc.pid}/statm", "rb") as fh:
                return int(fh.read().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError, AttributeError):
            return 0

    # -- the loop ----------------------------------------------------------------------------
    def _loop(self) -> None:
        pool = self.pool
        try:
            while not pool._closed:
                if self.proc is None and not self._spawn():
                    if pool._closed:
                        break
                    # The bundle does not load (or no process can be started): fail a waiting
                    # job rather than keep it waiting, and try again later.
                    self.failures += 1
                    job = pool._take(block=False)
                    if job is not None:
                        job.fail(Busy(message="server busy: no worker process could be started, retry later"))
                    pool._sleep(min(SPAWN_BACKOFF_MAX, 0.5 * 2 ** self.failures))
                    continue
                job = pool._take()
                if job is None:
                    break
                self._run(job)
        finally:
            if self.proc is not None:
                # Idle: told to leave, then made to.
                try:
                    self.conn.send(None)
                except (OSError, ValueError):
                    pass
                self.proc.join(0.5)
                self._kill()

    def _run(self, job: _Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            return  # its client left while it waited
        pool = self.pool
        pool._count("running", 1)
        try:
            self._drive(job)
        finally:
            pool._count("running", -1)

    def _drive(self, job: _Job) -> None:
        pool = self.pool
        limits = job.limits
        started = time.monotonic()
        deadline = started + limits.read_seconds + KILL_GRACE if limits.read_seconds else None
        max_mb = getattr(pool.settings, "work_process_max_mb", 0) or 0
        try:
            self.conn.send((job.fn, job.args, job.kwargs))
        except (OSError, ValueError):
            self._kill()
            job.fail(Busy())
            return
        except Exception as exc:  # the job's arguments do not pickle: a bug, answered 500
            job.fail(exc)
            return
        while True:
            ready = wait_for([self.conn, self.proc.sentinel], timeout=POLL)
            if self.conn in ready:
                try:
                    kind, payload = self.conn.recv()
                except (EOFError, OSError):
                    kind, payload = "died", None
                if kind == "read":
                    job.reading = False
                    deadline = None
                    continue
                if kind == "done":
                    if not job.future.done():
                        job.future.set_result(payload)
                    return
                ready = [self.proc.sentinel]
            if self.proc.sentinel in ready:
                # Killed from outside, out of memory, a crash in native code.
                code = self.proc.exitcode
                self._kill()
                pool._count("restarts", 1)
                log.error("a worker process died (exit code %s) running %s; starting another", code, _name(job.fn))
                job.fail(Busy())
                return
            now = time.monotonic()
            if job.cancel_requested and (job.reading or limits.cancellable_after_read):
                self._kill()
                pool._count("restarts", 1)
                log.info("stopped %s after %.1f s: its client went away", _name(job.fn), now - started)
                job.fail(Busy(message="the client went away"))
                return
            if pool._kill_at is not None and now >= pool._kill_at:
                self._kill()
                log.warning("stopped %s after %.1f s: the server is shutting down", _name(job.fn), now - started)
                job.fail(Busy(message="server shutting down, retry later"))
                return
            if deadline is not None and now >= deadline:
                self._kill()
                pool._count("restarts", 1)
                pool._count("timeouts", 1)
                log.warning("killed the worker process running %s: reading %s took more than %g s; starting another",
                            _name(job.fn), limits.what, limits.read_seconds)
                job.fail(limits.too_slow(limits.what, limits.read_seconds))
                return
            if max_mb and self.rss() > max_mb * _MIB:
                self._kill()
                pool._count("restarts", 1)
                log.warning("killed the worker process running %s: it used more than %d MiB (TAGGER_WORK_PROCESS_MAX_MB); "
                            "starting another", _name(job.fn), max_mb)
                job.fail(HTTPException(status_code=413, detail=f"the request needed more than {max_mb} MiB of memory "
                                       "(TAGGER_WORK_PROCESS_MAX_MB) and was stopped: send fewer or shorter clauses, "
                                       "or a smaller document"))
                return


def _name(fn) -> str:
    return getattr(fn, "__name__", str(fn))


class WorkerProcesses:
    """``n`` worker processes, started in the background (:meth:`start`) so that start-up
    does not wait for them; a job submitted before they are up waits for them."""

    def __init__(self, n: int, folder: Path, settings, tagger_kwargs: dict | None = None):
        self.n, self.folder, self.settings = n, Path(folder), settings
        # One ONNX thread per worker (no spinning threads): the parallelism is the processes.
        self.tagger_kwargs = {"threads": 1, **(tagger_kwargs or {})}
        self._cond = threading.Condition()
        self._queue: collections.deque[_Job] = collections.deque()
        self._slots: list[_Slot] = []
        self._closed = False
        self._kill_at: float | None = None  # draining: running jobs are stopped at this time
        self.running = 0  # jobs being run by a worker
        self.restarts = 0  # worker processes replaced (a job stopped, or a process died)
        self.timeouts = 0  # jobs stopped at their reading time limit
        self.started = False  # every worker has loaded the bundle (reported by /v1/ready)

    @classmethod
    def for_tagger(cls, n: int, tagger, settings) -> "WorkerProcesses":
        """Workers that load the bundle ``tagger`` was loaded from, the same way."""
        # No self-test: the server's copy of the same files passed it.
        return cls(n, tagger.folder, settings, {"serving": tagger.serving, "self_test": False})

    def start(self) -> None:
        """Start the slots; each spawns its worker process in the background (start-up does
        not wait for them)."""
        with self._cond:
            if self._closed or self._slots:
                return
            self._t0 = time.perf_counter()
            self._slots = [_Slot(self, i) for i in range(self.n)]
        for slot in self._slots:
            slot.thread.start()

    def _slot_ready(self) -> None:
        if not self.started and all(s.ready_once for s in self._slots):
            self.started = True
            log.info("%d worker processes ready in %.1f s", self.n, time.perf_counter() - self._t0)

    def _count(self, name: str, delta: int) -> None:
        with self._cond:
            setattr(self, name, getattr(self, name) + delta)

    # -- the queue ---------------------------------------------------------------------------
    def _take(self, block: bool = True) -> _Job | None:
        with self._cond:
            while not self._queue and not self._closed and block:
                self._cond.wait()
            if self._closed or not self._queue:
                return None
            return self._queue.popleft()

    def _sleep(self, seconds: float) -> None:
        with self._cond:
            if not self._closed:
                self._cond.wait(seconds)

    def _discard(self, job: _Job) -> None:
        """Drop a job that will not run (its arguments may be a 10 MB body)."""
        with self._cond:
            try:
                self._queue.remove(job)
            except ValueError:
                pass

    def submit(self, fn: Callable, args: tuple = (), kwargs: dict | None = None, limits: JobLimits | None = None) -> _Job:
        job = _Job(fn, args, kwargs or {}, limits or JobLimits())
        with self._cond:
            if self._closed:
                raise Busy(message="server shutting down, retry later")
            self._queue.append(job)
            self._cond.notify()
        if not self._slots:
            self.start()
        return job

    async def run(self, fn: Callable, *args, limits: JobLimits | None = None, queue_timeout: float = 0.0, **kwargs):
        """``fn(tagger, settings, *args, **kwargs)`` in a worker process; :class:`Busy` if no
        worker has taken it after ``queue_timeout`` seconds (0: it waits)."""
        job = self.submit(fn, args, kwargs, limits)
        try:
            out = await started_within(job.future, queue_timeout, ready=lambda: self.started)
        except asyncio.CancelledError:
            # The request was cancelled (its client left, or a shutdown deadline): a job
            # still waiting is dropped (started_within cancelled it), a running one stopped.
            if job.limits.cancellable:
                job.cancel_requested = True
            raise
        finally:
            if job.future.cancelled():
                self._discard(job)
        if isinstance(out, _Raised):
            exc = out.exception()
            if not isinstance(exc, (HTTPException, TaggerError)):
                log.error("job %s failed in a worker process:\n%s", _name(fn), out.trace)
            raise exc
        return out

    def pids(self) -> list[int]:
        return sorted(p for s in self._slots if (p := s.pid()) is not None)

    # -- stopping ----------------------------------------------------------------------------
    def drain(self, grace: float) -> None:
        """Stop taking jobs (new and waiting ones get 503); running jobs get ``grace``
        seconds, then their processes are killed. Returns at once (the slots do it)."""
        with self._cond:
            if self._kill_at is None or time.monotonic() + grace < self._kill_at:
                self._kill_at = time.monotonic() + max(0.0, grace)
            self._closed = True
            waiting, self._queue = list(self._queue), collections.deque()
            self._cond.notify_all()
        for job in waiting:
            job.fail(Busy(message="server shutting down, retry later"))

    def shutdown(self, timeout: float = 3.0) -> None:
        """Stop the workers and reap them (no zombies): a job still running gets
        ``timeout`` seconds, then its process is killed; so is a worker still loading the
        bundle. Returns when every worker process has exited."""
        self.drain(timeout)
        for slot in self._slots:
            slot.thread.join(timeout + 10.0)
