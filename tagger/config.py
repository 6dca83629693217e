"""All runtime configuration in one typed place: env vars with the ``TAGGER_`` prefix.

Defaults work out of the box on a fresh clone: the bundled model, a SQLite file and a
local MLflow store, both under ``var/`` in the project root.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path

__all__ = ["Settings", "get_settings", "PROJECT_ROOT"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    return os.environ.get(f"TAGGER_{name.upper()}", default)


@dataclass(frozen=True)
class Settings:
    model_dir: Path = field(default_factory=lambda: Path(_env("model_dir", str(PROJECT_ROOT / "models" / "policy-tagger"))))
    # e.g. models:/policy-tagger@champion — pulls the bundle from the MLflow registry.
    model_uri: str = field(default_factory=lambda: _env("model_uri", ""))
    labels_dir: Path = field(default_factory=lambda: Path(_env("labels_dir", str(PROJECT_ROOT / "labels"))))
    var_dir: Path = field(default_factory=lambda: Path(_env("var_dir", str(PROJECT_ROOT / "var"))))
    database_url: str = field(default_factory=lambda: _env("database_url", ""))
    mlflow_tracking_uri: str = field(default_factory=lambda: os.environ.get("MLFLOW_TRACKING_URI", ""))
    max_clauses_per_request: int = field(default_factory=lambda: int(_env("max_clauses_per_request", "5000")))
    max_text_chars: int = field(default_factory=lambda: int(_env("max_text_chars", "2000000")))
    max_upload_bytes: int = field(default_factory=lambda: int(_env("max_upload_bytes", str(20 * 1024 * 1024))))
    host: str = field(default_factory=lambda: _env("host", "127.0.0.1"))
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
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
