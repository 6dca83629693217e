"""tagger.spark in a real local[2] Spark session, checked record for record against `tagger tag`.

Skipped only when pyspark is not installed (``pip install -e ".[spark]"``) or no Java
runtime is found. ``python -m pytest tests/test_spark.py -k throughput`` prints the
throughput (clauses/s per executor core).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import DOCS, ROOT, run_cli

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]

CORES = 2  # local[2]: two executor task slots, one Python worker each
SAMPLE = 300
DOC_FILES = [DOCS / "extra" / "x104.txt", DOCS / "extra" / "x071.txt", DOCS / "ai-pilot-zones-policy-compilation-2022.txt"]


def _java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home and (Path(home) / "bin" / "java").is_file() else shutil.which("java")
    if not java:
        return None
    try:
        ok = subprocess.run([java, "-version"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return None
    return java if ok else None


def _skip_reason() -> str | None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return 'pyspark is not installed (pip install -e ".[spark]")'
    if _java() is None:
        return "no Java runtime found (java on PATH or $JAVA_HOME/bin/java): Spark needs Java 17+"
    return None


def _session():
    from pyspark.sql import SparkSession

    # The Python workers must be this interpreter (the one with tagger, pandas and pyarrow).
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    spark = (
        SparkSession.builder.master(f"local[{CORES}]")
        .appName("tagger-spark-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", str(CORES))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


@pytest.fixture(scope="module")
def spark():
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    old = os.environ.get("PYSPARK_PYTHON")
    session = _session()
    try:
        yield session
    finally:
        session.stop()
        if old is None:
            os.environ.pop("PYSPARK_PYTHON", None)
        else:
            os.environ["PYSPARK_PYTHON"] = old


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A snapshot of the default bundle, so that Spark and the CLI use the very same one
    even if models/policy-tagger/ is replaced by a retraining while the tests run."""
    from tagger.config import get_settings

    dst = tmp_path_factory.mktemp("bundle") / "policy-tagger"
    shutil.copytree(get_settings().model_dir, dst)
    return dst


def _labeled_clauses() -> list[dict]:
    return [json.loads(line) for line in (ROOT / "labels" / "clauses.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]


def _cli_tag(tmp_path: Path, bundle: Path, inputs: list[str]) -> list[dict]:
    out = tmp_path / "cli-out.jsonl"
    r = run_cli("tag", *inputs, "-o", str(out), "--model", str(bundle), "-q")
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def _spark_records(rows) -> list[dict]:
    """Rows as `tagger tag` would write them: scores parsed back from their JSON text."""
    recs = []
    for row in rows:
        rec = row.asDict(recursive=True)
        rec["scores"] = json.loads(rec["scores"])
        recs.append(rec)
    return recs


def test_tag_dataframe_equals_cli_record_for_record(spark, bundle, tmp_path):
    from pyspark.sql.types import ArrayType, LongType, StringType, StructField, StructType

    from tagger.jsonio import dumps
    from tagger.spark import CLAUSE_SCHEMA, tag_dataframe

    allc = _labeled_clauses()
    step = max(1, len(allc) // SAMPLE)
    clauses = []
    for i, c in enumerate(allc[::step][:SAMPLE]):
        # Gold labels ride along as input columns: both tools must replace them.
        rec = {k: c[k] for k in ("id", "doc", "section", "text", "topic", "measure", "industry", "source")}
        clauses.append({**rec, "row": i, "note": None if i % 3 else f"note {i}"})
    assert len(clauses) == SAMPLE
    src = tmp_path / "in.jsonl"
    src.write_text("".join(dumps(c) + "\n" for c in clauses), encoding="utf-8")
    cli = _cli_tag(tmp_path, bundle, [str(src)])

    arr = ArrayType(StringType())
    schema = StructType(
        [StructField(n, StringType()) for n in ("id", "doc", "section", "text")]
        + [StructField(h, arr) for h in ("topic", "measure", "industry")]
        + [StructField("source", StringType()), StructField("row", LongType()), StructField("note", StringType())]
    )
    df = spark.createDataFrame(clauses, schema).repartition(3)  # partitions of uneven size, shuffled order
    tagged = tag_dataframe(df, bundle_dir=bundle, batch_size=37)
    assert tagged.schema.fieldNames() == [*CLAUSE_SCHEMA.fieldNames(), "source", "row", "note"]
    assert tagged.schema["row"].dataType == LongType()
    rows = tagged.collect()
    got = sorted(_spark_records(rows), key=lambda r: r["id"])
    want = sorted(cli, key=lambda r: r["id"])
    assert len(got) == len(want) == SAMPLE
    assert len({r["id"] for r in got}) == SAMPLE
    for g, w in zip(got, want):
        assert list(g.items()) == list(w.items())  # same fields, same order, same values
    # scores: the very JSON text of the CLI's line (same key order and float rounding)
    cli_scores = {w["id"]: dumps(w["scores"]) for w in cli}
    assert all(r.scores == cli_scores[r.id] for r in rows)
    assert any(g["topic"] or g["measure"] or g["industry"] for g in got)  # not a run of empty labels


def test_tag_documents_equals_cli_on_files(spark, bundle, tmp_path):
    from tagger.ingest.documents import doc_id_for, read_sources
    from tagger.ingest.readers import read_text
    from tagger.spark import CLAUSE_SCHEMA, tag_documents

    cli = _cli_tag(tmp_path, bundle, [str(p) for p in DOC_FILES])
    docs = []
    for p in DOC_FILES:
        meta = read_sources(p.parent).get(p.name, {})
        year = re.match(r"\d{4}", meta.get("year", ""))  # SOURCES.tsv may say "2021?"
        docs.append({"doc": doc_id_for(p), "text": read_text(p), "title": meta.get("title"), "region": meta.get("region"), "year": int(year.group()) if year else None})
    df = spark.createDataFrame(docs, "doc string, text string, title string, region string, year int")
    tagged = tag_documents(df, bundle_dir=bundle)
    assert tagged.schema.fieldNames() == [*CLAUSE_SCHEMA.fieldNames(), "title", "region", "year"]
    got = _spark_records(tagged.collect())
    assert len(got) == len(cli) > 1000
    # same clauses (ids, sections, texts) in the same order, same labels, scores and model
    assert [g["id"] for g in got] == [w["id"] for w in cli]
    for g, w in zip(got, cli):
        assert {k: g[k] for k in w} == w
    # the document's columns repeated on each of its clauses; a compilation's parts are doc-01, -02, ...
    by_doc = {d["doc"]: d for d in docs}
    for g in got:
        d = by_doc.get(g["doc"]) or by_doc[g["doc"].rsplit("-", 1)[0]]
        assert (g["title"], g["region"], g["year"]) == (d["title"], d["region"], d["year"])
    assert {g["doc"] for g in got} >= {"x104", "x071", "ai-pilot-zones-policy-compilation-2022-01"}


def test_ids_are_stringified_and_missing_text_fails_clearly(spark, bundle):
    from tagger.spark import tag_dataframe

    df = spark.createDataFrame([(7, "支持无人机产业发展。")], "no long, body string")
    [row] = tag_dataframe(df, bundle_dir=bundle, id_col="no", text_col="body").collect()
    assert (row.id, row.doc, row.section, row.text) == ("7", "", "", "支持无人机产业发展。")  # like `tagger tag`: str(id)
    bad = spark.createDataFrame([("a", "支持无人机产业发展。"), ("b", None)], "id string, text string")
    with pytest.raises(Exception, match="filter them out before tagging"):
        tag_dataframe(bad, bundle_dir=bundle).collect()


def measure_throughput(spark, bundle, n: int = 5000) -> dict:
    """Clauses/s of tag_dataframe over ``n`` real clauses in ``CORES`` partitions, after one warm-up pass."""
    from tagger.spark import tag_dataframe

    allc = _labeled_clauses()
    rows = [(c["id"], c["doc"], c["section"], c["text"]) for c in (allc * (n // len(allc) + 1))[:n]]
    df = spark.createDataFrame(rows, "id string, doc string, section string, text string").repartition(CORES).cache()
    df.count()
    tagged = tag_dataframe(df, bundle_dir=bundle)
    tagged.write.format("noop").mode("overwrite").save()  # warm-up: load the bundle in each Python worker
    t0 = time.perf_counter()
    tagged.write.format("noop").mode("overwrite").save()
    dt = time.perf_counter() - t0
    df.unpersist()
    return {"clauses": n, "seconds": dt, "per_second": n / dt, "per_core": n / dt / CORES}


def test_throughput_local2(spark, bundle, capsys):
    r = measure_throughput(spark, bundle)
    with capsys.disabled():
        print(f"\ntag_dataframe local[{CORES}]: {r['clauses']} clauses in {r['seconds']:.2f} s = {r['per_second']:,.0f} clauses/s, {r['per_core']:,.0f} per executor core")
    assert r["per_second"] > 0



def test_evidence_column_equals_cli_evidence(spark, bundle, tmp_path):
    """``evidence=True`` adds one column, the JSON text of ``tagger tag --evidence``'s field."""
    from tagger.jsonio import dumps
    from tagger.spark import CLAUSE_SCHEMA, tag_dataframe

    clauses = [{"id": c["id"], "text": c["text"]} for c in _labeled_clauses()[::280][:20]]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(dumps(c) + "\n" for c in clauses), encoding="utf-8")
    out = tmp_path / "cli-evidence.jsonl"
    # One batch on both sides: evidence scores all variants of a batch in one call.
    r = run_cli("tag", str(src), "-o", str(out), "--model", str(bundle), "-q", "--evidence", "--workers", "1")
    assert r.returncode == 0, r.stderr
    cli = {w["id"]: w for w in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    df = spark.createDataFrame(clauses, "id string, text string").coalesce(1)
    tagged = tag_dataframe(df, bundle_dir=bundle, evidence=True)
    assert tagged.schema.fieldNames() == [*CLAUSE_SCHEMA.fieldNames(), "evidence"]
    rows = tagged.collect()
    assert len(rows) == len(clauses) and any(json.loads(row.evidence) != {"topic": {}, "measure": {}, "industry": {}} for row in rows)
    for row in rows:
        assert row.evidence == dumps(cli[row.id]["evidence"]) and row.asDict(recursive=True)["provenance"] == cli[row.id]["provenance"]


def test_drift_report_equals_cli_drift_report(spark, bundle, tmp_path):
    """drift_report over a tagged frame gives `tagger tag --drift-report`'s figures for the
    same clauses: counts exactly, the verdict, the unseen terms; a foreign text is flagged."""
    from tagger.jsonio import dumps
    from tagger.spark import drift_report, tag_dataframe

    from .drift_bundle import FOREIGN

    clauses = [{"id": c["id"], "doc": c["doc"], "text": c["text"]} for c in _labeled_clauses()[::40]]
    clauses += [{"id": f"f{i}", "doc": "recipes", "text": t} for i, t in enumerate(FOREIGN)]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(dumps(c) + "\n" for c in clauses), encoding="utf-8")
    report = tmp_path / "drift.json"
    r = run_cli("tag", str(src), "-o", str(tmp_path / "out.jsonl"), "--model", str(bundle), "-q", "--drift-report", str(report))
    assert r.returncode == 0, r.stderr
    cli = json.loads(report.read_text(encoding="utf-8"))
    df = spark.createDataFrame(clauses, "id string, doc string, text string").repartition(3)
    got = drift_report(tag_dataframe(df, bundle_dir=bundle), bundle_dir=bundle)
    for key in ("clauses", "words", "oov_rate", "score", "verdict"):
        assert got[key] == cli[key], key
    assert got["documents"]["recipes"]["verdict"] == cli["documents"]["recipes"]["verdict"] == "retrain"
    assert {t["term"]: t["count"] for t in got["unseen_terms"]} == {t["term"]: t["count"] for t in cli["unseen_terms"]}
    with pytest.raises(ValueError, match="missing: scores"):
        drift_report(df, bundle_dir=bundle)
