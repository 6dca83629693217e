"""A /v1/health latency probe for tests that time the server under load."""

from __future__ import annotations

import json
import subprocess
import sys
import time

# The probe runs in a process of its own: inside pytest it would share a GIL with whatever
# the session keeps running (servers in threads, the RSS sampler), and a 280 ms stall of the
# client was once timed as the server's (CI, stop 25). It probes until told "stop".
_PROBE = """
import httpx, json, sys, threading, time
url, min_seconds = sys.argv[1], float(sys.argv[2])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
client = httpx.Client(timeout=30, limits=httpx.Limits(max_keepalive_connections=0))
print("ready", flush=True)
lat, t_end = [], time.monotonic() + min_seconds
while not stop.is_set() or time.monotonic() < t_end:
    t0 = time.perf_counter()
    assert client.get(url + "/v1/health").status_code == 200
    lat.append(time.perf_counter() - t0)
    time.sleep(0.01)
print(json.dumps(lat))
"""


def probe_health(url: str, busy, min_seconds: float = 1.0, start=lambda: None) -> list[float]:
    """``/v1/health`` latencies, a new connection each time (as a load balancer probes),
    from ``start()`` on, while ``busy()`` and for at least ``min_seconds``."""
    p = subprocess.Popen([sys.executable, "-c", _PROBE, url, str(min_seconds)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    try:
        start()
        while busy():
            time.sleep(0.05)
        out, _ = p.communicate("stop\n", timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, "the probe failed (see its traceback above)"
    return json.loads(out)
