"""CLI manners with real processes and real signals: Ctrl-C (SIGINT to the process group, as
a terminal sends it) and SIGTERM stop `tagger tag` and `tagger ingest` with one line and exit
130/143, no worker traceback, and the same command resumes; a closed stdout pipe is quiet;
the summary line also when tagging to stdout; `tagger ingest` shows progress on a terminal
only; an output with more records than the input is a refusal (exit 2)."""

import json
import os
import pty
import signal
import subprocess
import sys
import time

import pytest

from ..conftest import DOCS, ROOT, run_cli

NOISE = ("Traceback", "KeyboardInterrupt", "BrokenPipeError", "Exception ignored")
# Small county policies: tagging them with evidence takes a few seconds, not minutes.
SMALL_DOCS = [DOCS / "zhejiang" / f"{d}.txt" for d in ("zj-448", "zj-499", "zj-438", "zj-414")]


def _clauses(tmp_path, n: int):
    texts = [json.loads(l)["text"] for l in (ROOT / "labels" / "clauses.jsonl").read_text(encoding="utf-8").splitlines()]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"c{i}", "text": texts[i % len(texts)]}, ensure_ascii=False) + "\n" for i in range(n)),
                   encoding="utf-8")
    return src


def _default_sigint() -> None:
    # A job started in the background by a shell (`pytest ... &`, some CI runners) inherits
    # SIGINT ignored, and Python then installs no KeyboardInterrupt handler: give the child
    # what a terminal's foreground job has.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _popen(*args, **kw):
    # A session of its own: the test can signal the whole group as a terminal's Ctrl-C would.
    return subprocess.Popen([sys.executable, "-m", "tagger.cli", *args], cwd=ROOT, start_new_session=True, text=True,
                            preexec_fn=_default_sigint, **kw)


def _group_gone(pgid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_tag_interrupted_says_one_line_and_resumes(tmp_path, sig, code):
    src, out = _clauses(tmp_path, 3000), tmp_path / "out.jsonl"
    partial = tmp_path / "out.jsonl.partial"
    proc = _popen("tag", str(src), "-o", str(out), "--batch-size", "16", "--workers", "2",
                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while proc.poll() is None and not (partial.exists() and partial.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "finished before it could be interrupted"
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # Ctrl-C: the main process and its workers
    else:
        proc.send_signal(sig)  # kill PID: the main process only
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == code, err
    assert not any(n in err for n in NOISE), err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tagger: interrupted — ") and "rerun the same command to resume" in lines[0], err
    written = int(lines[0].split("— ")[1].split()[0])
    assert written == len(partial.read_text(encoding="utf-8").splitlines()) and 0 < written < 3000
    assert not out.exists() and _group_gone(proc.pid)  # no worker left behind

    r = run_cli("tag", str(src), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert f"skipped {written} already in" in r.stderr
    assert [json.loads(l)["id"] for l in out.read_text(encoding="utf-8").splitlines()] == [f"c{i}" for i in range(3000)]


def test_ingest_interrupted_says_one_line_and_resumes(tmp_path):
    db = f"sqlite:///{tmp_path / 's.db'}"
    args = ("ingest", *map(str, SMALL_DOCS), "--database-url", db, "-v")
    proc = _popen(*args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = proc.stderr.readline()  # -v: one line per stored document
    assert ": inserted (" in first, first
    os.killpg(proc.pid, signal.SIGINT)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, err
    assert not any(n in err for n in NOISE), err
    last = err.strip().splitlines()[-1]
    assert last.startswith("tagger: interrupted — ") and "stored this run); rerun the same command to resume" in last, err
    stored = int(last.split("(")[1].split()[0])
    assert stored >= 1

    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert f"unchanged {stored}" in r.stderr and "store now holds 4 documents" in r.stderr


def test_ingest_progress_on_a_terminal_only(tmp_path):
    docs = [str(p) for p in SMALL_DOCS[:2]]
    master, slave = pty.openpty()
    proc = _popen("ingest", *docs, "--no-evidence", "--database-url", f"sqlite:///{tmp_path / 'a.db'}",
                  stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=120) == 0
    tty = b"".join(chunks).decode("utf-8", "replace")
    assert "\ringest: 2 files; starting" in tty and "file 2/2, 2 documents done" in tty, tty
    assert "ingest: inserted 2; store now holds 2 documents" in tty

    r = run_cli("ingest", *docs, "--no-evidence", "--database-url", f"sqlite:///{tmp_path / 'b.db'}")
    assert r.returncode == 0 and "\r" not in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr


def test_tag_to_stdout_prints_the_summary_on_stderr():
    r = run_cli("tag", str(DOCS / "extra" / "x001.txt"))
    assert r.returncode == 0, r.stderr
    n = len(r.stdout.splitlines())
    assert r.stderr.strip().splitlines()[-1].startswith(f"tagged {n} clauses to stdout; model "), r.stderr


def test_tag_into_a_closed_pipe_is_quiet(tmp_path):
    src = _clauses(tmp_path, 3000)
    proc = _popen("tag", str(src), "--workers", "2", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert json.loads(proc.stdout.readline())["id"] == "c0"
    proc.stdout.close()  # `| head -1`
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert proc.returncode == 0 and not any(n in err for n in NOISE), err
    assert _group_gone(proc.pid)


def test_output_with_more_records_than_the_input_is_a_refusal(tmp_path):
    src, out = _clauses(tmp_path, 5), tmp_path / "out.jsonl"
    assert run_cli("tag", str(src), "-o", str(out)).returncode == 0
    before = out.read_bytes()
    _clauses(tmp_path, 3)  # the input shrank
    r = run_cli("tag", str(src), "-o", str(out))
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.splitlines()) == 1 and "existing output has more records than the input" in r.stderr
    assert out.read_bytes() == before
