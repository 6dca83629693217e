import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "labels" / "documents"
COMPILATION = DOCS / "ai-pilot-zones-policy-compilation-2022.txt"
BUNDLE = ROOT / "models" / "policy-tagger"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def tagger():
    """The shipped bundle, loaded once per session (~2 s a load, it was loaded in most
    modules). A Tagger holds no per-call state, so sharing it keeps tests independent;
    a test that needs another bundle or serving path builds its own."""
    from tagger.model.inference import Tagger

    return Tagger(BUNDLE)


@pytest.fixture(scope="session")
def corpus_clauses():
    """Every clause of the committed corpus, segmented once per test session."""
    from tagger.ingest.corpus import segment_paths

    out = []
    for doc, clauses in segment_paths([DOCS]):
        out.extend((doc, c) for c in clauses)
    return out


def run_cli(*args: str, cwd: Path = ROOT, input: str | None = None, env: dict | None = None):
    """Run the installed entry point in a subprocess, as a pipeline would."""
    import os
    import subprocess

    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "tagger.cli", *args], cwd=cwd, input=input, capture_output=True, text=True, env=full_env, timeout=600
    )


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, attempts: int = 300) -> None:
    """Poll ``url`` until it answers 200 (a server starting in a thread or a process)."""
    import time

    import httpx

    for _ in range(attempts):
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)


def serve(app):
    """Run a FastAPI app under uvicorn on a free loopback port; yields the base URL."""
    import threading

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + "/v1/health", attempts=200)
    try:
        yield url
    finally:
        server.should_exit = True
        t.join(5)


def compilation_store(tmp_path_factory, name: str, tagger=None):
    """A fresh SQLite store holding the 33 pilot-zone policies, tagged by ``tagger`` (the
    bundled model if not given); returns ``(database URL, tagger)``. One store per test
    module: modules add to it."""
    from tagger.ingest.documents import load_documents
    from tagger.model.inference import Tagger
    from tagger.store.db import Store, ingest_documents

    url = f"sqlite:///{tmp_path_factory.mktemp('db') / name}"
    tagger = tagger or Tagger(BUNDLE)
    ingest_documents(Store(url), tagger, load_documents(COMPILATION))
    return url, tagger


def corpus_store(tmp_path_factory, name: str):
    """A fresh SQLite store holding every document under labels/documents (the bundled corpus
    the README's examples run on), tagged by the bundled model without evidence (~10 s);
    returns ``(database URL, tagger)``."""
    from tagger.ingest.corpus import iter_documents
    from tagger.model.inference import Tagger
    from tagger.store.db import Store, ingest_documents

    url = f"sqlite:///{tmp_path_factory.mktemp('db') / name}"
    tagger = Tagger(ROOT / "models" / "policy-tagger")
    ingest_documents(Store(url), tagger, list(iter_documents([DOCS])))
    return url, tagger
