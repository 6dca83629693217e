"""`tagger ingest` as a subprocess: stores, is idempotent, reports unreadable files."""

from ..conftest import DOCS, run_cli


def test_ingest_twice_then_bad_file(tmp_path):
    db = f"sqlite:///{tmp_path / 'a.db'}"
    docs = [str(DOCS / "extra" / "x001.txt"), str(DOCS / "zhejiang" / "zj-528.txt")]
    r1 = run_cli("ingest", *docs, "--database-url", db)
    assert r1.returncode == 0 and "ingest: inserted 2; store now holds 2 documents" in r1.stderr
    r2 = run_cli("ingest", *docs, "--database-url", db)
    assert r2.returncode == 0 and "ingest: unchanged 2; store now holds 2 documents" in r2.stderr
    r3 = run_cli("ingest", str(tmp_path / "missing.pdf"), "--database-url", db)
    assert r3.returncode == 1 and "missing.pdf: no such file" in r3.stderr
