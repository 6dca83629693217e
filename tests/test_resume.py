"""tagger.resume in-process: which files -o may use, and that OUT exists at every step."""

import json

import pytest

from tagger.errors import InvalidInput
from tagger.jsonio import dumps
from tagger.resume import OutputRefused, open_output
from tagger.tagging import OUTPUT_FIELDS

VERSION = "v1"


def _line(cid, model=VERSION):
    return dumps({f: "" for f in OUTPUT_FIELDS} | {"id": cid, "model": model}) + "\n"


def _open(out, first="a", force=False):
    return open_output(out, [], VERSION, lambda: first, force)


def test_a_partial_cut_in_its_first_record_is_resumed_a_foreign_one_is_not(tmp_path):
    out = tmp_path / "out.jsonl"
    partial = tmp_path / "out.jsonl.partial"
    partial.write_text(_line("a")[:9], encoding="utf-8")  # killed while writing the first record
    w = _open(out)
    assert partial.read_text(encoding="utf-8") == "" and not w.already_written("a")
    w.abort()
    partial.write_text("my own file, no newline", encoding="utf-8")
    with pytest.raises(OutputRefused, match="is not tagger output; delete it, or add --force"):
        _open(out)
    assert partial.read_text(encoding="utf-8") == "my own file, no newline"  # not "repaired"
    w = _open(out, force=True)
    w.write([_line("a")])
    w.finish()
    assert out.read_text(encoding="utf-8") == _line("a") and not partial.exists()


def test_finished_output_is_verified_in_place(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text(_line("a") + _line("b"), encoding="utf-8")
    before = out.stat()
    w = _open(out)
    assert w.already_written("a") and w.already_written("b") and not w.already_written("c")
    w.finish()
    after = out.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_grown_input_keeps_finished_output_until_the_replacement(tmp_path):
    out = tmp_path / "out.jsonl"
    partial = tmp_path / "out.jsonl.partial"
    done = _line("a") + _line("b")
    out.write_text(done, encoding="utf-8")
    w = _open(out)
    assert w.already_written("a") and w.already_written("b") and not w.already_written("c")
    assert out.read_text(encoding="utf-8") == done and not partial.exists()
    w.write([_line("c")])
    # A kill here leaves OUT as it was and a partial the next run resumes from.
    assert out.read_text(encoding="utf-8") == done
    assert partial.read_text(encoding="utf-8") == done + _line("c")
    w.finish()
    assert [json.loads(x)["id"] for x in out.read_text(encoding="utf-8").splitlines()] == ["a", "b", "c"]
    assert not partial.exists()


def test_a_record_of_another_model_stops_the_resume(tmp_path):
    out = tmp_path / "out.jsonl"
    (tmp_path / "out.jsonl.partial").write_text(_line("a") + _line("b", model="v0"), encoding="utf-8")
    w = _open(out)
    assert w.already_written("a")
    with pytest.raises(InvalidInput, match="record 2 was tagged by model 'v0', not v1; delete it"):
        w.already_written("b")
    w.abort()
