"""A lean HTTP/1.1 load generator (stdlib asyncio, keep-alive connections).

The load generator shares the 2 cores with the server, so its own cost per request must be
small: httpx costs ~1 ms of CPU per request, which would be measured as server latency.
Here a request is one pre-built byte string and a response is read by Content-Length
(~30 us of client CPU).

    python benchmarks/loadgen.py URL --clients 8 --requests 4000 [--body-file bodies.jsonl]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlsplit

__all__ = ["run_load", "build_requests"]


def build_requests(url: str, bodies: list[bytes], path: str = "/v1/tag", headers: dict | None = None) -> list[bytes]:
    u = urlsplit(url)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return [
        (f"POST {path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nContent-Type: application/json\r\n"
         f"Content-Length: {len(b)}\r\n{extra}\r\n").encode() + b
        for b in bodies
    ]


async def _client(host: str, port: int, requests: list[bytes], counter, lat: list[float], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for i in counter:
            req = requests[i % len(requests)]
            t = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t)
            if status != 200:
                errors.append(str(status))
    finally:
        writer.close()


async def _run(url: str, requests: list[bytes], clients: int, total: int) -> dict:
    u = urlsplit(url)
    lat: list[float] = []
    errors: list[str] = []
    counter = iter(range(total))
    t0 = time.perf_counter()
    await asyncio.gather(*[_client(u.hostname, u.port, requests, counter, lat, errors) for _ in range(clients)])
    wall = time.perf_counter() - t0
    lat.sort()

    def q(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    return {"clients": clients, "requests": len(lat), "errors": len(errors), "p50_ms": q(0.5), "p99_ms": q(0.99),
            "max_ms": lat[-1] * 1000 if lat else float("nan"), "rps": len(lat) / wall}


def run_load(url: str, requests: list[bytes], clients: int, total: int) -> dict:
    return asyncio.run(_run(url, requests, clients, total))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--text", default="对首次认定的国家级人工智能创新平台，给予最高500万元资助。")
    a = ap.parse_args()
    body = json.dumps({"text": a.text}, ensure_ascii=False).encode()
    print(json.dumps(run_load(a.url, build_requests(a.url, [body]), a.clients, a.requests)))


if __name__ == "__main__":
    main()
