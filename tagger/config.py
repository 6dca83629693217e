"""All runtime configuration in one typed place: env vars with the ``TAGGER_`` prefix.

Defaults work out of the box on a fresh clone and after ``pip install``; the folders
follow the rule in :mod:`tagger.locations`:

* from a checkout (editable install included): ``models/policy-tagger``, ``labels/``
  and ``var/`` of the checkout;
* from an installed wheel: the bundle and the taxonomy packaged in ``tagger/_data/``,
  and ``var/`` (SQLite store, MLflow, registry cache) in the user data folder
  ``platformdirs.user_data_dir("policy-clause-tagger")``.

``TAGGER_MODEL_DIR``, ``TAGGER_LABELS_DIR`` and ``TAGGER_VAR_DIR`` override either;
``TAGGER_OVERRIDES_FILE`` (default ``overrides.yaml`` in the labels folder) names the
override rules.
``labels/clauses.jsonl`` and ``labels/documents/`` (labeling and training) exist only in
a checkout or under a ``TAGGER_LABELS_DIR`` that holds them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path

from .locations import default_locations

__all__ = ["Settings", "get_settings", "PROJECT_ROOT", "LOOPBACK_HOSTS"]

# The folder above the package: the project root in a checkout, but ``site-packages`` in
# an installed wheel, so never build data paths on it; use Settings (tagger.locations).
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    return os.environ.get(f"TAGGER_{name.upper()}", default)


# Host names the server answers to when TAGGER_ALLOWED_HOSTS is unset or empty: loopback only.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def _allowed_hosts() -> tuple[str, ...]:
    hosts = tuple(h.strip() for h in _env("allowed_hosts", "").split(",") if h.strip())
    return hosts or LOOPBACK_HOSTS


@dataclass(frozen=True)
class Settings:
    model_dir: Path = field(default_factory=lambda: Path(_env("model_dir", str(default_locations().model_dir))))
    # e.g. models:/policy-tagger@champion — pulls the bundle from the MLflow registry.
    model_uri: str = field(default_factory=lambda: _env("model_uri", ""))
    labels_dir: Path = field(default_factory=lambda: Path(_env("labels_dir", str(default_locations().labels_dir))))
    var_dir: Path = field(default_factory=lambda: Path(_env("var_dir", str(default_locations().var_dir))))
    # Reviewed correction rules applied after the model (tagger.model.overrides); re-read when the
    # file changes. Default: overrides.yaml beside the taxonomy (labels/ in a checkout, the
    # wheel's packaged copy when installed); a missing file means no rules.
    overrides_file: Path = field(
        default_factory=lambda: Path(_env("overrides_file", str(Path(_env("labels_dir", str(default_locations().labels_dir))) / "overrides.yaml")))
    )
    database_url: str = field(default_factory=lambda: _env("database_url", ""))
    mlflow_tracking_uri: str = field(default_factory=lambda: os.environ.get("MLFLOW_TRACKING_URI", ""))
    # Request limits, sized so that the worst accepted request stays under ~200 MB of
    # server memory (measured: benchmarks/RESULTS.md, "Limits").
    max_clauses_per_request: int = field(default_factory=lambda: int(_env("max_clauses_per_request", "5000")))
    max_text_chars: int = field(default_factory=lambda: int(_env("max_text_chars", "400000")))
    max_upload_bytes: int = field(default_factory=lambda: int(_env("max_upload_bytes", str(10 * 1024 * 1024))))
    max_json_bytes: int = field(default_factory=lambda: int(_env("max_json_bytes", str(4 * 1024 * 1024))))
    # Occlusion evidence scores one variant of a clause per token, each as long as the
    # clause: its time and memory grow with the square of the clause's length (1,000
    # characters: 0.4 s, +90 MB; 100,000: tens of GB); contribution evidence (the default)
    # grows with the length, but one limit for both keeps the method a query option that
    # cannot change what is accepted. The API answers 413 when evidence is asked for a
    # longer clause. Documents never hit it: the segmenter cuts clauses at
    # tagger.ingest.segment.HARD_MAX_CHARS (400; fixed, since it decides clause ids).
    max_evidence_clause_chars: int = field(default_factory=lambda: int(_env("max_evidence_clause_chars", "1000")))
    # CPU-heavy work (reading, segmentation, tagging) runs in this many threads; this many
    # more requests may wait for them; the next one gets 503 + Retry-After.
    work_threads: int = field(default_factory=lambda: int(_env("work_threads", "2")))
    work_queue: int = field(default_factory=lambda: int(_env("work_queue", "16")))
    # A request whose work has waited this many seconds for a thread or a worker process is
    # answered 503 + Retry-After instead (its work dropped): work_queue counts jobs, not
    # their size, and 16 large jobs queued on 2 workers made the last wait minutes. Lower
    # it to shed load sooner (interactive use); 0: wait as long as it takes.
    queue_timeout: float = field(default_factory=lambda: float(_env("queue_timeout", "30")))
    # Documents and /v1/tag requests of more than work_process_min_clauses clauses run in
    # this many worker processes (each loads the bundle, ~250 MB), so that they do not hold
    # the server's GIL; -1: as many as work_threads; 0: none (all in the threads above).
    work_processes: int = field(default_factory=lambda: int(_env("work_processes", "-1")))
    # Counted in work units (tagger.api.routes.tag.work_cost): a clause of up to 200
    # characters without evidence is 1 unit, a longer one more; evidence multiplies it.
    work_process_min_clauses: int = field(default_factory=lambda: int(_env("work_process_min_clauses", "50")))
    # Micro-batches of at most this many clauses (without evidence) are tagged on the event
    # loop itself: for ~1 ms of work a hand-off to a thread costs more (GIL switches between
    # the loop and the thread) than it saves. 0: always in the threads.
    inline_clauses: int = field(default_factory=lambda: int(_env("inline_clauses", "16")))
    # The worker processes run this much nicer (lower priority) than the server.
    work_process_nice: int = field(default_factory=lambda: int(_env("work_process_nice", "5")))
    # A worker process whose resident memory passes this many MiB while it runs a job
    # (checked every 50 ms) is killed and replaced, and the job answered 413: one pathological
    # upload (a PDF page that expands to hundreds of MB) cannot take the machine's memory.
    # A loaded worker holds ~250 MB; 0: no limit.
    work_process_max_mb: int = field(default_factory=lambda: int(_env("work_process_max_mb", "1536")))
    # Reading one uploaded document (PDF, DOCX, HTML, text, or a JSON body: up to its
    # segmentation) may take this many seconds; then it is answered 422 (a 81 KB PDF whose
    # 500 pages share one 1 MB content stream read for ~14 minutes; a text PDF reads at
    # ~13 ms a page, 500 pages in ~7 s). A PDF stops at the first page begun after it; a
    # worker process still reading 2 s later is killed and replaced (tagger.api.workers).
    # 0: no limit. The kill needs worker processes.
    parse_timeout: float = field(default_factory=lambda: float(_env("parse_timeout", "10")))
    # PDFs with more pages are refused (413) before any page is read. Reading also stops at
    # the page where the text passes max_text_chars (413).
    max_pdf_pages: int = field(default_factory=lambda: int(_env("max_pdf_pages", "500")))
    # Writes need one of these keys (Authorization: Bearer …); see tagger.api.security.
    api_keys: tuple[str, ...] = field(default_factory=lambda: tuple(k.strip() for k in _env("api_keys", "").split(",") if k.strip()))
    allow_anonymous_writes: bool = field(default_factory=lambda: _env("allow_anonymous_writes", "") in ("1", "true", "yes"))
    require_key_for_reads: bool = field(default_factory=lambda: _env("require_key_for_reads", "") in ("1", "true", "yes"))
    # `tagger serve` worker processes (forked after the model is loaded; see tagger.api.server).
    web_workers: int = field(default_factory=lambda: int(_env("web_workers", "1")))
    # Connection deadlines of `tagger serve`, in seconds (tagger.api.connections); 0: none.
    # A connection with no request under way (new, or kept alive after a response) is closed
    # after idle_timeout; a request's headers must all arrive within header_timeout of its
    # first byte, its body within body_timeout of the end of the headers (totals, however
    # the bytes trickle in), else 408 and the connection is closed. body_timeout 60 s is
    # the largest upload (max_upload_bytes, 10 MiB) at ~175 KB/s.
    idle_timeout: float = field(default_factory=lambda: float(_env("idle_timeout", "5")))
    header_timeout: float = field(default_factory=lambda: float(_env("header_timeout", "10")))
    body_timeout: float = field(default_factory=lambda: float(_env("body_timeout", "60")))
    # A response the client does not take: while the server's write buffer for a connection
    # is full (64 KiB past what the kernel holds), the client must take at least 48 KiB of it
    # in every send_timeout seconds, or the connection is cut: a client that stops reading
    # would otherwise hold the response in memory, and a streamed export its database cursor,
    # for good. 30 s cuts a client slower than ~1.6 KB/s.
    send_timeout: float = field(default_factory=lambda: float(_env("send_timeout", "30")))
    # SIGTERM/SIGINT: new connections are refused at once, requests still arriving get 503 +
    # Retry-After, requests being processed get shutdown_timeout seconds to finish; every
    # process has exited about a second after that (the supervisor kills stragglers).
    shutdown_timeout: float = field(default_factory=lambda: float(_env("shutdown_timeout", "3")))
    # Request bodies held at once by all the requests in progress, whole server (tagger.api.bodies):
    # a declared Content-Length is reserved on arrival, a chunked body counted as it comes;
    # a request that does not fit gets 503 + Retry-After without being read. `tagger serve
    # --workers N` gives each worker 1/N of it (never less than the largest body a route takes).
    max_buffered_bytes: int = field(default_factory=lambda: int(_env("max_buffered_bytes", str(64 * 1024 * 1024))))
    host: str = field(default_factory=lambda: _env("host", "127.0.0.1"))
    # The Host header every request must carry (DNS rebinding: a page on evil.example whose
    # name a DNS server re-points at 127.0.0.1 is same-origin with this server to the browser,
    # but still sends Host: evil.example). Names or IP addresses, comma-separated, without
    # port (any port is accepted; IPv6 with or without brackets); the list replaces the
    # loopback default, so list localhost too if local clients should keep working. The
    # address given to --host / TAGGER_HOST is not added by itself: a server on 0.0.0.0 or a
    # LAN address answers 400 to http://<that address>/ until the names clients use are
    # listed. "*" accepts any Host: this turns the check off (unsafe; only behind a proxy
    # that checks Host itself). See tagger.api.security.HostCheck.
    allowed_hosts: tuple[str, ...] = field(default_factory=_allowed_hosts)
    port: int = field(default_factory=lambda: int(_env("port", "8000")))

    @property
    def documents_dir(self) -> Path:
        return self.labels_dir / "documents"

    @property
    def clauses_file(self) -> Path:
        return self.labels_dir / "clauses.jsonl"

    @property
    def taxonomy_file(self) -> Path:
        return self.labels_dir / "taxonomy.yaml"

    @property
    def work_process_count(self) -> int:
        return self.work_threads if self.work_processes < 0 else self.work_processes

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.var_dir / 'tagger.db'}"

    @property
    def tracking_uri(self) -> str:
        # MLflow's own default depends on the working directory; pin it to the project.
        return self.mlflow_tracking_uri or f"sqlite:///{self.var_dir / 'mlflow.db'}"

    @property
    def artifact_root(self) -> Path:
        return self.var_dir / "mlruns"

    def as_dict(self) -> dict:
        return {f.name: ("<redacted>" if f.name == "api_keys" and self.api_keys else str(getattr(self, f.name))) for f in fields(self)}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
