"""Resumable, atomic JSONL output for long tagging jobs, that never loses a user's file.

Records go to ``OUT.partial`` (flushed per batch). Re-running with the same output
walks the input in lockstep with what is already written and skips those clauses, so
memory stays constant however large the input. On success ``OUT.partial`` replaces
``OUT`` in one rename: readers never see a half-written ``OUT``.

Which existing files ``-o OUT`` may touch (:func:`open_output` decides before anything
is written):

* A directory, or a path that resolves to one of the input files, is refused, with
  ``--force`` too. The same holds for ``OUT.partial``.
* Anything else that is not a regular file (``/dev/null``, a FIFO) is refused: replacing
  it by a rename would be wrong.
* An existing ``OUT`` is a *previous output* if it is empty (nothing to lose) or its
  first line is a JSON object with every field of :data:`tagger.tagging.OUTPUT_FIELDS`,
  the ``model`` version of the loaded bundle and the ``id`` of the input's first clause.
  Anything else is refused unless ``--force``, which re-tags everything and replaces it.
  The same rule decides whether ``OUT.partial`` is ours to resume (a first line cut by a
  crash counts if it is the start of the first record); ``--force`` starts a foreign one
  afresh.
* Past the first line, every record read back must carry the next input id and the
  bundle's version, or the run stops with an error and leaves the files as they are.

Nothing is ever renamed away: resuming reads ``OUT.partial``. A finished ``OUT`` is
re-verified in place; if the input has grown since, ``OUT`` is copied to ``OUT.partial``,
the new clauses are appended there, and the copy replaces ``OUT`` at the end. So killing
the process at any moment leaves ``OUT`` as it was, plus perhaps a resumable partial.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import IO, Callable, Iterable

from .errors import InvalidInput, TaggerError

__all__ = ["ResumableWriter", "OutputRefused", "OutputMismatch", "open_output"]

# A first line longer than this is not one of our records (a clause is a few KB): reading
# on would only load a foreign file into memory.
_MAX_RECORD = 16 << 20


class OutputRefused(TaggerError):
    """``-o`` names something the run must not overwrite; the message says how to force."""


class OutputMismatch(InvalidInput):
    """What ``-o`` already holds turns out, while resuming, not to be this input's output:
    a refusal too (the CLI exits 2), found only once the records are read back."""


def previous_output_problem(path: Path, version: str, first_id: Callable[[], str | None], evidence: bool | None = None) -> str | None:
    """Why ``path`` is not a previous output of this input and model (and, unless
    ``evidence`` is None, of a run with or without ``--evidence``), or None if it is."""
    with open(path, "rb") as fh:
        head = fh.readline(_MAX_RECORD)
    if not head:
        return None
    if not head.endswith(b"\n"):
        # A crash can cut the very first record; accept the cut only if it is the start
        # of what this run would write first (records begin with their id, compactly).
        fid = first_id()
        lead = '{"id":' + json.dumps(fid, ensure_ascii=False) + ","
        text = head.decode("utf-8", "ignore")
        return None if fid is not None and (lead.startswith(text) or text.startswith(lead)) else "is not tagger output"
    from .tagging import OUTPUT_FIELDS

    try:
        rec = json.loads(head)
    except (ValueError, RecursionError):
        rec = None
    if not isinstance(rec, dict) or not all(f in rec for f in OUTPUT_FIELDS):
        return "is not tagger output"
    if rec["model"] != version:
        return f"was tagged by model {rec['model']!r}, not {version}"
    if evidence is not None and ("evidence" in rec) != evidence:
        # Resuming would mix records with and without evidence in one file.
        return "was tagged " + ("without" if evidence else "with") + " --evidence"
    fid = first_id()
    if rec["id"] != fid:
        return f"starts with clause {rec['id']!r}, " + (f"the input with {fid!r}" if fid is not None else "but the input has no clause")
    return None


def open_output(
    out: Path, inputs: Iterable[Path], version: str, first_id: Callable[[], str | None], force: bool = False, evidence: bool | None = None
) -> "ResumableWriter":
    """Check what ``-o out`` would overwrite (rules in the module docstring) and open it.

    ``first_id`` is called only if an existing file has to be compared with the input.
    Raises OutputRefused, before touching any file.
    """
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    cache: list = []

    def fid() -> str | None:
        if not cache:
            cache.append(first_id())
        return cache[0]

    inputs = {Path(p).resolve() for p in inputs}
    for p in (out, partial):
        if p.is_dir():
            raise OutputRefused(f"-o {out}: {p} is a directory; give a file path (--force never replaces a directory)")
        if p.resolve() in inputs:
            raise OutputRefused(f"-o {out}: {p} is one of the input files; give another path (--force never replaces an input)")
        if p.exists() and not p.is_file():
            raise OutputRefused(f"-o {out}: {p} is not a regular file; give a file path (--force never replaces it)")
    keep_partial = True
    if partial.exists():
        why = previous_output_problem(partial, version, fid, evidence)
        if why and not force:
            raise OutputRefused(f"-o {out}: {partial} {why}; delete it, or add --force to start it afresh")
        keep_partial = not why
    if out.exists() and not force:
        why = previous_output_problem(out, version, fid, evidence)
        if why:
            raise OutputRefused(f"-o {out}: {out} exists and {why}; use another -o, or add --force to overwrite it")
    return ResumableWriter(out, version, verify_out=not force, keep_partial=keep_partial)


class ResumableWriter:
    """Skip what ``OUT.partial`` (or a finished ``OUT``) already holds, append the rest.

    Use :func:`open_output`, which checks first that these files may be used.
    """

    def __init__(self, out: Path, version: str, *, verify_out: bool = True, keep_partial: bool = True):
        self.out = Path(out)
        self.partial = self.out.with_name(self.out.name + ".partial")
        self.version = version
        self.skipped = 0
        self.written = 0
        self._ends_line = True
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._source: Path | None = None
        if keep_partial and self.partial.exists():
            self._repair_tail()
            self._source = self.partial
        elif verify_out and self.out.exists() and self.out.stat().st_size:
            self._source = self.out
        self._done: IO | None = open(self._source, encoding="utf-8") if self._source else None
        # Only verifying a finished OUT creates nothing until a new record arrives: if it
        # is complete, it stays exactly as it is.
        self._fh: IO | None = None
        if self._source != self.out:
            self._fh = open(self.partial, "a" if self._source else "w", encoding="utf-8")

    def _repair_tail(self) -> None:
        """Drop a last line cut short by a crash, so resuming never duplicates or corrupts."""
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

    def _mismatch(self, reason: str) -> OutputMismatch:
        fix = "use another -o, or add --force to re-tag and replace it" if self._source == self.out else "delete it to start over"
        return OutputMismatch(str(self._source), f"{reason}; {fix}")

    def already_written(self, clause_id: str) -> bool:
        """True if the next already-written record is this clause (then it is skipped)."""
        if self._done is None:
            return False
        line = self._done.readline()
        if not line:
            self._done.close()
            self._done = None
            return False
        self._ends_line = line.endswith("\n")
        try:
            rec = json.loads(line)
            rid, model = rec.get("id"), rec.get("model")
        except (ValueError, AttributeError, RecursionError):
            rid = model = None
        if rid != clause_id:
            raise self._mismatch(f"existing output does not match the input at record {self.skipped + 1} ({rid!r} != {clause_id!r})")
        if model != self.version:
            raise self._mismatch(f"record {self.skipped + 1} was tagged by model {model!r}, not {self.version}")
        self.skipped += 1
        return True

    def write(self, lines: list[str]) -> None:
        if self._fh is None:
            # The input grew past a finished OUT: continue in a copy, OUT stays until finish().
            shutil.copyfile(self.out, self.partial)
            self._fh = open(self.partial, "a", encoding="utf-8")
            if not self._ends_line:
                self._fh.write("\n")
        self._fh.write("".join(lines))
        self._fh.flush()
        self.written += len(lines)

    def finish(self) -> None:
        if self._done is not None:
            extra = self._done.readline()
            self._done.close()
            self._done = None
            if extra:
                raise self._mismatch("existing output has more records than the input")
        if self._fh is None:
            return  # a finished OUT, verified complete: left in place
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.partial, self.out)

    def abort(self) -> None:
        """Keep the partial file for the next run; OUT is left as it was."""
        if self._done is not None:
            self._done.close()
        if self._fh is not None:
            self._fh.close()
