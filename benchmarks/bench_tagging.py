"""Tagging speed and memory, printed as numbers (no assertions: targets live here, not in tests).

    pip install -e ".[bench]"       # fastText, the reference
    python benchmarks/bench_tagging.py [--requests 4000] [--concurrency 8] [--only batch,api]
    python benchmarks/bench_tagging.py --only evidence,ingest,api --smoke   # a few minutes: indicative only

Prints, from one run: `tagger tag` JSONL -> JSONL next to fastText on the same input
(clauses/s, CPU-s, and their ratios), tokeniser and model throughput in process (sparse
path and the ONNX graph), `tagger tag` on the whole corpus from documents (peak RSS),
evidence cost by method (CPU per clause in process and through `tagger tag`, off /
contributions / occlusion), `tagger ingest` of the committed corpus by evidence method,
API single-clause latency p50/p99 and requests/s at 1, 8 and 32 clients without evidence,
with the default evidence and with occlusion, batch endpoint clauses/s, server peak RSS
and start-up to ready. ``--smoke``: a few hundred clauses, a few documents, few requests.
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def corpus_texts() -> list[str]:
    return [json.loads(l)["text"] for l in (ROOT / "labels" / "clauses.jsonl").read_text(encoding="utf-8").splitlines()]


def bench_inprocess(texts: list[str]) -> None:
    from tagger.model.features import Tokenizer
    from tagger.model.inference import Tagger

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
    fallback = Tagger(ROOT / "models" / "policy-tagger", self_test=False)
    fallback.sparse.compiled = False  # the same path without the C extension
    print(f"serving engine: {tagger.engine}")
    for name, fn in (
        ("sparse, compiled", tagger.probabilities_tokens),
        ("sparse, numpy   ", fallback.probabilities_tokens),
        ("ONNX graph      ", tagger.onnx_probabilities_tokens),
    ):
        for bs in (1, 64, 1000):
            t = time.perf_counter()
            n = 0
            while time.perf_counter() - t < 3:
                for i in range(0, len(toks), bs):
                    fn(toks[i : i + bs])
                    n += len(toks[i : i + bs])
                    if time.perf_counter() - t > 3:
                        break
            print(f"model only, {name}, batch {bs:>4}: {n / (time.perf_counter() - t):,.0f} clauses/s (1 core)")


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


def _timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, child processes included) of a command."""
    import resource

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def bench_vs_fasttext(texts: list[str], copies: int = 4, runs: int = 3) -> None:
    """`tagger tag` against fastText end to end on the same JSONL, side by side, median of runs.

    Both read JSONL, tokenise with jieba-next, predict all three heads, write JSONL with
    labels and per-label scores; start-up is included on both sides."""
    ft = ROOT / "benchmarks" / "fasttext_reference.py"
    import importlib.util

    if importlib.util.find_spec("fasttext") is None:
        print("fastText reference: not installed (pip install -e '.[bench]'); skipped")
        return
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.jsonl"
        with src.open("w", encoding="utf-8") as fh:
            for k in range(copies):
                for i, t in enumerate(texts):
                    fh.write(json.dumps({"id": f"{k}-{i}", "text": t}, ensure_ascii=False) + "\n")
        n = len(texts) * copies
        ft_dir = Path(tmp) / "ft"
        subprocess.run([sys.executable, str(ft), "train", "--dir", str(ft_dir)], check=True, cwd=ROOT, stderr=subprocess.DEVNULL)
        rows = {
            "tagger tag, 1 worker": lambda o: [sys.executable, "-m", "tagger.cli", "tag", str(src), "-o", o, "-q", "--workers", "1"],
            "tagger tag, 2 workers": lambda o: [sys.executable, "-m", "tagger.cli", "tag", str(src), "-o", o, "-q", "--workers", "2"],
            "fastText (1 process)": lambda o: [sys.executable, str(ft), "tag", str(src), o, "--dir", str(ft_dir)],
        }
        res = {}
        for name, cmd in rows.items():
            walls, cpus = [], []
            for r in range(runs):
                out = str(Path(tmp) / f"out-{len(res)}-{r}.jsonl")
                w, c = _timed(cmd(out))
                walls.append(w)
                cpus.append(c)
            res[name] = (statistics.median(walls), statistics.median(cpus))
        print(f"batch, {n:,} JSONL clauses -> JSONL, median of {runs} (start-up included):")
        for name, (w, c) in res.items():
            print(f"  {name:<22} {w:6.2f} s wall {n / w:8,.0f} clauses/s   {c:6.2f} CPU-s  {c / n * 1e6:6.0f} CPU-us/clause")
        fw, fc = res["fastText (1 process)"]
        for name in ("tagger tag, 1 worker", "tagger tag, 2 workers"):
            w, c = res[name]
            print(f"  ratio {name} / fastText: throughput {fw / w:.2f}x (>= 1 wanted), CPU per clause {c / fc:.2f}x (<= 1 wanted)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_kb(pid: int, key: str = "VmHWM") -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key):
            return int(line.split()[1])
    return 0


def bench_api(texts: list[str], n_requests: int, clients: tuple[int, ...], workers: int = 2, batch_sizes=(100, 1000)) -> None:
    """Single-clause POST /v1/tag against `tagger serve --workers N`, load generator on the
    same cores (benchmarks/loadgen.py: ~30 us of client CPU per request)."""
    from loadgen import build_requests, run_load

    import httpx

    port = _free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "tagger.cli", "serve", "--port", str(port), "--workers", str(workers)], cwd=ROOT,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                if httpx.get(url + "/v1/ready").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
            if time.perf_counter() - t0 > 120:
                raise RuntimeError("server did not start")
        print(f"API start-up to ready ({workers} workers): {time.perf_counter() - t0:.2f} s")
        bodies = [json.dumps({"text": t}, ensure_ascii=False).encode() for t in texts[:2000]]
        for path, label in (("/v1/tag?evidence=false", "evidence=false"), ("/v1/tag", "evidence (default: contributions)"),
                            ("/v1/tag?evidence_method=occlusion", "evidence by occlusion (before)")):
            reqs = build_requests(url, bodies, path=path)
            slow = "occlusion" in path
            # Warm-up: also lets the document pool, which loads in the background, finish starting.
            run_load(url, reqs, 8, min(200, n_requests) if slow else min(3000, 2 * n_requests))
            for c in clients:
                n = max(100, n_requests // 10) if slow else n_requests
                r = run_load(url, reqs, c, n)
                print(f"API single clause, {label}, {c:>2} clients, {r['requests']} requests: p50 {r['p50_ms']:.1f} ms, "
                      f"p99 {r['p99_ms']:.1f} ms, {r['rps']:,.0f} req/s, errors {r['errors']}")
        with httpx.Client(base_url=url, timeout=300) as c:
            for size in batch_sizes:
                body = {"clauses": [{"id": str(i), "text": texts[i % len(texts)]} for i in range(size)]}
                c.post("/v1/tag?evidence=false", json=body)  # warm-up
                t = time.perf_counter()
                reps = max(3, 5000 // size)
                for _ in range(reps):
                    assert c.post("/v1/tag?evidence=false", json=body).status_code == 200
                dt = time.perf_counter() - t
                print(f"API batch endpoint (evidence=false), {size} clauses/request: {size * reps / dt:,.0f} clauses/s")
    finally:
        kids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        grand = [g for k in kids for g in subprocess.run(["pgrep", "-P", k], capture_output=True, text=True).stdout.split()]
        rss = sum(_rss_kb(int(p)) for p in [proc.pid, *kids, *grand] if Path(f"/proc/{p}").exists())
        print(f"server peak RSS (sum over {1 + len(kids) + len(grand)} processes): {rss / 1024:.0f} MiB")
        proc.terminate()
        proc.wait(30)


def bench_evidence(texts: list[str], n: int = 1000) -> None:
    """Evidence cost by method on the same clauses: CPU per clause in one process (batches of
    512, as `tagger tag` tags them), then `tagger tag` itself (2 workers, start-up included)."""
    from tagger.model.inference import Tagger
    from tagger.model.overrides import NO_OVERRIDES
    from tagger.tagging import tag_clauses

    tagger = Tagger(ROOT / "models" / "policy-tagger")
    clauses = [{"id": str(i), "text": t} for i, t in enumerate(texts[:n])]
    tag_clauses(tagger, clauses[:50], evidence=True, overrides=NO_OVERRIDES)  # warm: tables built once per process
    cpu = {}
    for name, kw in (("off", {}), ("contributions", {"evidence": True}), ("occlusion", {"evidence": True, "evidence_method": "occlusion"})):
        todo = clauses if name != "occlusion" else clauses[: max(100, n // 5)]
        t = time.process_time()
        for i in range(0, len(todo), 512):
            tag_clauses(tagger, todo[i : i + 512], overrides=NO_OVERRIDES, **kw)
        cpu[name] = (time.process_time() - t) / len(todo)
        print(f"in process, evidence {name:<13}: {cpu[name] * 1e3:.3f} CPU-ms/clause ({len(todo)} clauses, batches of 512)")
    for name in ("contributions", "occlusion"):
        print(f"  evidence by {name} adds {cpu[name] / cpu['off'] - 1:.2f}x the CPU of tagging without it (target <= 2x)")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.jsonl"
        with src.open("w", encoding="utf-8") as fh:
            for c in clauses:
                fh.write(json.dumps(c, ensure_ascii=False) + "\n")
        for flag in ([], ["--evidence"], ["--evidence", "--evidence-method", "occlusion"]):
            out = Path(tmp) / f"o{len(flag)}.jsonl"
            w, c = _timed([sys.executable, "-m", "tagger.cli", "tag", str(src), "-o", str(out), "-q", *flag])
            print(f"tagger tag {' '.join(flag) or '(no evidence)':<40} {len(clauses)} clauses: {w:.1f} s = {len(clauses) / w:,.0f} clauses/s, "
                  f"{c / len(clauses) * 1e3:.2f} CPU-ms/clause")


def bench_ingest(n_docs: int | None = None) -> None:
    """`tagger ingest` of the committed corpus (labels/documents; with --smoke ``n_docs``
    files spread over it, not the 33-policy compilation) into a fresh SQLite store: without
    evidence, with the default evidence, with occlusion (the method before issue #20)."""
    from tagger.ingest.corpus import iter_files

    files = sorted(iter_files([ROOT / "labels" / "documents"]))
    if n_docs:
        rest = [f for f in files if "compilation" not in f.name]
        files = rest[:: max(1, len(rest) // n_docs)][:n_docs]
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in (("no evidence", ["--no-evidence"]), ("contributions", []), ("occlusion", ["--evidence-method", "occlusion"])):
            db = Path(tmp) / f"{len(res)}.db"
            cmd = [sys.executable, "-m", "tagger.cli", "ingest", *map(str, files), "--database-url", f"sqlite:///{db}", *flags]
            w, c = _timed(cmd)
            import sqlite3

            with sqlite3.connect(db) as conn:
                n = conn.execute("select count(*) from clauses").fetchone()[0]
            res[name] = (w, c)
            print(f"tagger ingest, {len(files)} documents, {n} clauses, {name:<13}: {w:.1f} s wall, {c:.1f} CPU-s ({n / w:,.0f} clauses/s)")
    (wo, co), (wc, cc), (wn, cn) = res["occlusion"], res["contributions"], res["no evidence"]
    print(f"  ingest with evidence, contributions vs occlusion: {wo / wc:.1f}x faster in wall time, {co / cc:.1f}x in CPU (target >= 5x); "
          f"evidence's own CPU {cc - cn:.1f} s vs {co - cn:.1f} s (start-up included in all)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--only", default="batch,inprocess,cli,evidence,ingest,api",
                    help="comma-separated sections: batch,inprocess,cli,evidence,ingest,api")
    ap.add_argument("--smoke", action="store_true", help="small sizes (300 clauses, 40 documents, 300 requests): indicative figures")
    args = ap.parse_args()
    texts = corpus_texts()
    print(f"machine: {os.cpu_count()} cores; corpus {len(texts)} clauses" + ("; SMOKE run (small sizes)" if args.smoke else ""))
    if "batch" in args.only:
        bench_vs_fasttext(texts)
    if "inprocess" in args.only:
        bench_inprocess(texts)
    if "cli" in args.only:
        bench_cli()
    if "evidence" in args.only:
        bench_evidence(texts, 300 if args.smoke else 1000)
    if "ingest" in args.only:
        bench_ingest(40 if args.smoke else None)
    if "api" in args.only:
        bench_api(texts, 300 if args.smoke else args.requests, (1, args.concurrency, 32), batch_sizes=(100,) if args.smoke else (100, 1000))


if __name__ == "__main__":
    main()
