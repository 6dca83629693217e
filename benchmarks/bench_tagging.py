"""Tagging speed and memory, printed as numbers (no assertions: targets live here, not in tests).

    python benchmarks/bench_tagging.py [--requests 2000] [--concurrency 8]

Prints: tokeniser and ONNX throughput, `tagger tag` clauses/s on the whole corpus
(features included, subprocess), API single-clause latency p50/p99 under concurrent
load, batch endpoint clauses/s, peak RSS of the CLI and of the server.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def corpus_texts() -> list[str]:
    return [json.loads(l)["text"] for l in (ROOT / "labels" / "clauses.jsonl").read_text(encoding="utf-8").splitlines()]


def bench_inprocess(texts: list[str]) -> None:
    from tagger.features import Tokenizer
    from tagger.model import Tagger

    for engine in ("jieba", "jieba_next"):
        try:
            tok = Tokenizer(engine=engine)
        except ImportError:
            print(f"tokeniser {engine}: not installed")
            continue
        t = time.perf_counter()
        toks = tok.batch(texts)
        print(f"tokeniser {engine:<10}: {len(texts) / (time.perf_counter() - t):,.0f} clauses/s (1 core)")
    tagger = Tagger(ROOT / "models" / "policy-tagger")
    for bs in (1, 64, 1000):
        t = time.perf_counter()
        n = 0
        while time.perf_counter() - t < 3:
            for i in range(0, len(toks), bs):
                tagger.probabilities_tokens(toks[i : i + bs])
                n += len(toks[i : i + bs])
                if time.perf_counter() - t > 3:
                    break
        print(f"onnx only, batch {bs:>4}: {n / (time.perf_counter() - t):,.0f} clauses/s")


def bench_cli() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.jsonl"
        t = time.perf_counter()
        code = (
            "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
            "print('maxrss_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)"
        )
        r = subprocess.run(
            [sys.executable, "-c", code, sys.executable, "-m", "tagger.cli", "tag", str(ROOT / "labels" / "documents"), "-o", str(out), "-q"],
            capture_output=True, text=True, cwd=ROOT,
        )
        dt = time.perf_counter() - t
        n = sum(1 for _ in out.open(encoding="utf-8"))
        rss = int(next(l.split()[1] for l in r.stderr.splitlines() if l.startswith("maxrss_kb")))
        print(f"tagger tag, whole corpus ({n} clauses, documents in, start-up included): {dt:.1f}s = {n / dt:,.0f} clauses/s; peak RSS {rss / 1024:.0f} MiB")


def bench_cli_large(texts: list[str], copies: int = 8) -> None:
    """Steady-state rate on a larger JSONL input (start-up amortised), 1 and 2 workers."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.jsonl"
        with src.open("w", encoding="utf-8") as fh:
            for k in range(copies):
                for i, t in enumerate(texts):
                    fh.write(json.dumps({"id": f"{k}-{i}", "text": t}, ensure_ascii=False) + "\n")
        n = len(texts) * copies
        for workers in (1, 2):
            out = Path(tmp) / f"out{workers}.jsonl"
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "tagger.cli", "tag", str(src), "-o", str(out), "-q", "--workers", str(workers)], check=True, cwd=ROOT)
            dt = time.perf_counter() - t
            print(f"tagger tag, {n} JSONL clauses, {workers} worker(s): {dt:.1f}s = {n / dt:,.0f} clauses/s (start-up included)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_kb(pid: int, key: str = "VmHWM") -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key):
            return int(line.split()[1])
    return 0


def bench_api(texts: list[str], n_requests: int, concurrency: int) -> None:
    import httpx

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tagger.cli", "serve", "--port", str(port)], cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(url + "/v1/ready").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        lat: list[float] = []
        lock = threading.Lock()
        counter = iter(range(n_requests))

        def worker():
            with httpx.Client(base_url=url, timeout=30) as c:
                for i in counter:
                    body = {"clauses": [{"id": str(i), "text": texts[i % len(texts)]}]}
                    t = time.perf_counter()
                    r = c.post("/v1/tag", json=body)
                    dt = time.perf_counter() - t
                    assert r.status_code == 200
                    with lock:
                        lat.append(dt)

        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        lat.sort()
        p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
        print(f"API single clause, {concurrency} concurrent clients, {len(lat)} requests: p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, {len(lat) / wall:,.0f} req/s")

        if concurrency == 1:
            return
        with httpx.Client(base_url=url, timeout=120) as c:
            for size in (100, 1000):
                body = {"clauses": [{"id": str(i), "text": texts[i % len(texts)]} for i in range(size)]}
                c.post("/v1/tag", json=body)  # warm-up
                t = time.perf_counter()
                reps = max(3, 5000 // size)
                for _ in range(reps):
                    assert c.post("/v1/tag", json=body).status_code == 200
                dt = time.perf_counter() - t
                print(f"API batch endpoint, {size} clauses/request: {size * reps / dt:,.0f} clauses/s")
    finally:
        if concurrency > 1:
            kids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
            rss = sum(_rss_kb(int(p)) for p in [proc.pid, *kids] if Path(f"/proc/{p}").exists())
            print(f"server peak RSS (sum over processes): {rss / 1024:.0f} MiB")
        proc.terminate()
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    texts = corpus_texts()
    print(f"machine: {os.cpu_count()} cores; corpus {len(texts)} clauses")
    bench_inprocess(texts)
    bench_cli()
    bench_cli_large(texts)
    for conc in (1, args.concurrency):
        bench_api(texts, args.requests, conc)


if __name__ == "__main__":
    main()
