"""Resumable, atomic JSONL output for long tagging jobs.

Records go to ``OUT.partial`` (flushed per batch). Re-running with the same output
walks the input in lockstep with what is already written and skips those clauses, so
memory stays constant however large the input. On success ``OUT.partial`` is renamed
to ``OUT`` in one step: readers never see a half-written ``OUT``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO

from .errors import InvalidInput

__all__ = ["ResumableWriter"]


class ResumableWriter:
    def __init__(self, out: Path):
        self.out = Path(out)
        self.partial = self.out.with_name(self.out.name + ".partial")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if self.out.exists() and not self.partial.exists():
            # A finished output: resume from it (everything already tagged is skipped).
            os.replace(self.out, self.partial)
        self._repair_tail()
        self._done: IO | None = open(self.partial, encoding="utf-8") if self.partial.exists() else None
        self._fh = open(self.partial, "a", encoding="utf-8")
        self.skipped = 0
        self.written = 0

    def _repair_tail(self) -> None:
        """Drop a last line cut short by a crash, so resuming never duplicates or corrupts."""
        if not self.partial.exists():
            return
        with open(self.partial, "rb+") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            if size == 0:
                return
            pos = size
            while pos > 0:
                step = min(65536, pos)
                fh.seek(pos - step)
                chunk = fh.read(step)
                nl = chunk.rfind(b"\n")
                if nl != -1:
                    cut = pos - step + nl + 1
                    if cut != size:
                        fh.truncate(cut)
                    return
                pos -= step
            fh.truncate(0)

    def already_written(self, clause_id: str) -> bool:
        """True if the next already-written record is this clause (then it is skipped)."""
        if self._done is None:
            return False
        line = self._done.readline()
        if not line:
            self._done.close()
            self._done = None
            return False
        try:
            rid = json.loads(line).get("id")
        except json.JSONDecodeError:
            rid = None
        if rid != clause_id:
            raise InvalidInput(
                str(self.out), f"existing output does not match the input at record {self.skipped + 1} ({rid!r} != {clause_id!r}); use another -o or delete it"
            )
        self.skipped += 1
        return True

    def write(self, lines: list[str]) -> None:
        self._fh.write("".join(lines))
        self._fh.flush()
        self.written += len(lines)

    def finish(self) -> None:
        if self._done is not None:
            extra = self._done.readline()
            self._done.close()
            if extra:
                raise InvalidInput(str(self.out), "existing output has more records than the input; use another -o or delete it")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.partial, self.out)

    def abort(self) -> None:
        """Keep the partial file for the next run; the final file is not created."""
        if self._done is not None:
            self._done.close()
        self._fh.close()
