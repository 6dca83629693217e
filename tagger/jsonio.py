"""JSONL reading and atomic writing (temp file or folder beside the target, then rename)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterable, Iterator

from .errors import InvalidInput

__all__ = ["dumps", "atomic_writer", "atomic_folder", "write_jsonl", "read_jsonl"]


def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


@contextlib.contextmanager
def atomic_writer(path: Path, mode: str = "w") -> Iterator[IO]:
    """Yield a file handle; on success the file replaces ``path`` in one rename.

    On any exception the temp file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_folder(dst: Path) -> Iterator[Path]:
    """Yield an empty folder beside ``dst``; on success it takes ``dst``'s place.

    The old folder is moved aside and removed only after the swap, so readers see the
    old or the new folder, never a half-written one. On any exception ``dst`` is untouched.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be read by others
    try:
        yield tmp
        old = dst.with_name(f".{dst.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if dst.exists():
            dst.rename(old)
        tmp.rename(dst)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_jsonl(path: Path, records: Iterable[dict]) -> int:
    n = 0
    with atomic_writer(path) as fh:
        for rec in records:
            fh.write(dumps(rec) + "\n")
            n += 1
    return n


def read_jsonl(path: Path) -> Iterator[dict]:
    """Stream records; a malformed line raises InvalidInput naming file and line."""
    if not Path(path).is_file():
        # e.g. labels/clauses.jsonl from an installed wheel: one line, not a traceback.
        raise InvalidInput(str(path), "no such file (labeled data lives in a checkout or under TAGGER_LABELS_DIR)")
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"{path}:{lineno}", f"invalid JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise InvalidInput(f"{path}:{lineno}", "expected a JSON object")
            yield rec
