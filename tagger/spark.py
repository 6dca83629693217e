"""Tag clauses and documents held in Spark DataFrames, record for record like ``tagger tag``.

    from tagger.spark import tag_dataframe, tag_documents

    tagged = tag_dataframe(spark.read.parquet("clauses.parquet"))   # id, text[, doc, section, ...]
    tagged = tag_documents(spark.read.parquet("documents.parquet")) # doc, text[, title, region, year, ...]
    report = drift_report(tagged)   # an action: the run's drift, as `tagger tag --drift-report`

Needs ``pip install "policy-clause-tagger[spark]"`` on the driver and on every executor
(the executors import this module and run the ONNX model), and a Java runtime for Spark.

Output columns (:data:`CLAUSE_SCHEMA`, then the input's extra columns with their own types):

    id        string            the input id as a string (``tagger tag`` does ``str(id)``)
    doc       string            "" when the input has no ``doc`` column
    section   string            "" when the input has no ``section`` column
    text      string
    topic     array<string>     label ids over the bundle's thresholds, in the bundle's order
    measure   array<string>
    industry  array<string>
    kind      string            one kind id per clause (single label)
    scores    string            JSON text of {head: {label: probability}}, byte for byte the
                                ``scores`` object of a ``tagger tag`` JSONL line (same keys, same
                                order, probabilities rounded to 6 decimals). Kept as text so that
                                equality with ``tagger tag`` is exact; for a typed column use
                                ``F.from_json("scores", "map<string,map<string,double>>")``.
    model     string            the bundle version (+ the override rules' stamp, as ``tagger tag``)
    provenance map<string,map<string,string>>  {head: {label: "model" | "override:<rule id>"}}
    evidence  string            only with ``evidence=True``: JSON text of ``tagger tag --evidence``'s
                                ``evidence`` object (spans behind each label, :mod:`tagger.model.evidence`)

Extra input columns pass through after these, as extra JSONL fields do in ``tagger tag``;
an input column named like an output column (e.g. gold ``topic`` labels) is replaced, as
there. Rows keep their input order within each partition (no shuffle). A row without an
id or a text fails the task with a ``ValueError``: filter such rows out first.

How the model travels: the driver reads the bundle folder's files (``manifest.json``,
``model.onnx``, ``userdict.txt``, ~3 MB), loads them once to check them, and broadcasts
their bytes (``SparkContext.addFile`` cannot ship a local folder to a cluster). On each
executor they are written once into the application's Spark scratch folder, in a folder
named by their SHA-256 (removed by Spark at the end), and each executor Python process
keeps one :class:`~tagger.model.inference.Tagger` per bundle digest, loaded on its first batch (one
ONNX thread: Spark's task slots are the parallelism). Batches go through ``mapInPandas``
(Arrow); ``batch_size`` clauses are tagged per call. Rows per Arrow batch are capped by
``spark.sql.execution.arrow.maxRecordsPerBatch`` (default 10,000): lower it when
documents are large.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

try:
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, BinaryType, MapType, StringType, StructField, StructType
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError('tagger.spark needs pyspark, pandas and pyarrow: pip install "policy-clause-tagger[spark]"') from exc

from .model.bundle import MANIFEST_FILE, MODEL_FILE, USERDICT_FILE
from .taxonomy import HEADS, SINGLE_HEADS

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

    from .model.inference import Tagger

__all__ = ["tag_dataframe", "tag_documents", "drift_report", "CLAUSE_SCHEMA"]

#: The columns every output starts with, in ``tagger tag``'s field order.
CLAUSE_SCHEMA = StructType(
    [
        StructField("id", StringType(), False),
        StructField("doc", StringType(), True),
        StructField("section", StringType(), True),
        StructField("text", StringType(), False),
        *(StructField(h, StringType() if h in SINGLE_HEADS else ArrayType(StringType(), False), False) for h in HEADS),
        StructField("scores", StringType(), False),
        StructField("model", StringType(), False),
        StructField("provenance", MapType(StringType(), MapType(StringType(), StringType(), False), False), False),
    ]
)
_EVIDENCE_FIELD = StructField("evidence", StringType(), False)
_OUTPUT_NAMES = frozenset(CLAUSE_SCHEMA.fieldNames())
_SEGMENT_SCHEMA = StructType([StructField(n, StringType(), n in ("doc", "section")) for n in ("id", "doc", "section", "text")])
_BUNDLE_FILES = (MANIFEST_FILE, MODEL_FILE, USERDICT_FILE)  # what Tagger reads, plus the sparse serving file if declared


def _bundle_files(folder: Path) -> tuple[str, ...]:
    import json

    from .model.sparse import SPARSE_FILE

    from .model.drift import DRIFT_FILE

    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        serving = manifest.get("serving") or {}
        drift = manifest.get("drift") or {}
    except (OSError, ValueError, AttributeError):
        return _BUNDLE_FILES  # Tagger reports the broken manifest with its own message
    # Only the known file names, never a path taken from the manifest. The drift reference
    # travels too: drift_report reads it on the driver and the executors.
    files = _BUNDLE_FILES + ((SPARSE_FILE,) if isinstance(serving, dict) and serving else ())
    return files + ((DRIFT_FILE,) if isinstance(drift, dict) and drift.get("file") == DRIFT_FILE and (folder / DRIFT_FILE).is_file() else ())

# Per Python process (driver or executor worker): bundle digest -> loaded Tagger.
_TAGGERS: dict[str, "Tagger"] = {}
_LOCK = threading.Lock()
# Driver only: (application id, bundle digest) -> Broadcast of the bundle's files.
_BROADCASTS: dict[tuple[str, str], object] = {}


def _check_columns(df: "DataFrame", key_col: str, text_col: str) -> list[str]:
    """The extra columns to pass through, after checking the key and text columns."""
    cols = df.columns
    for name in (key_col, text_col):
        if name not in cols:
            raise ValueError(f"column '{name}' not in the DataFrame (columns: {cols})")
    if not isinstance(df.schema[text_col].dataType, StringType):
        raise TypeError(f"column '{text_col}' must be a string column, not {df.schema[text_col].dataType.simpleString()}")
    return [c for c in cols if c not in (key_col, text_col) and c not in _OUTPUT_NAMES]


def tag_dataframe(
    df: "DataFrame",
    bundle_dir: str | Path | None = None,
    text_col: str = "text",
    id_col: str = "id",
    batch_size: int = 1000,
    evidence: bool = False,
    overrides_file: str | Path | None = None,
) -> "DataFrame":
    """Tag a DataFrame of clauses (``id``, ``text``, optional ``doc``/``section``, any extras).

    ``bundle_dir``: a model bundle folder readable by the driver; default: the bundle
    ``tagger tag`` uses without ``--model`` (``TAGGER_MODEL_DIR``/``TAGGER_MODEL_URI``, else
    the bundled model). Returns a lazy DataFrame with :data:`CLAUSE_SCHEMA` + extra columns;
    with ``evidence`` (``tagger tag --evidence``, the default method) an ``evidence`` column after
    ``provenance``. Override rules (``overrides_file``, default ``TAGGER_OVERRIDES_FILE``) are
    read on the driver, once, and travel with the job: executors need no copy of the file.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    cols = df.columns
    extras = [c for c in _check_columns(df, id_col, text_col) if not (evidence and c == "evidence")]
    prepared = df.select(
        _col(id_col).cast("string").alias("id"),
        *((_col(n).cast("string") if n in cols else F.lit("")).alias(n) for n in ("doc", "section")),
        _col(text_col).alias("text"),
        *(_col(c) for c in extras),
    )
    bundle, digest = _ship_bundle(df.sparkSession, bundle_dir)
    from .tagging import resolve_overrides

    ov = resolve_overrides(_TAGGERS[digest], overrides_file)  # a malformed file fails here, on the driver
    schema = StructType([*CLAUSE_SCHEMA.fields, *([_EVIDENCE_FIELD] if evidence else []), *(df.schema[c] for c in extras)])
    fn = functools.partial(_tag_batches, bundle=bundle, digest=digest, batch_size=batch_size, extras=tuple(extras), evidence=evidence, overrides=ov)
    return prepared.mapInPandas(fn, schema)


def tag_documents(
    df: "DataFrame",
    bundle_dir: str | Path | None = None,
    text_col: str = "text",
    doc_col: str = "doc",
    batch_size: int = 1000,
    evidence: bool = False,
    overrides_file: str | Path | None = None,
) -> "DataFrame":
    """Segment a DataFrame of documents (``doc``, ``text``, optional ``title``/``region``/``year``
    and any extras) into clauses and tag them.

    Segmentation is ``tagger segment``'s (:func:`~tagger.ingest.documents.document_from_text`, then
    :func:`~tagger.ingest.segment.segment`): a document read from ``path`` with
    ``doc = doc_id_for(path)`` and ``text = read_text(path)`` gets the clause ids, sections
    and labels that ``tagger tag path`` gives (a compilation gives ``doc``-01, -02, ...).
    The document's other columns are repeated on each of its clauses, after the standard
    columns. ``evidence``, ``overrides_file``: as :func:`tag_dataframe`.
    """
    extras = _check_columns(df, doc_col, text_col)
    prepared = df.select(_col(doc_col).cast("string").alias("doc"), _col(text_col).alias("text"), *(_col(c) for c in extras))
    schema = StructType([*_SEGMENT_SCHEMA.fields, *(df.schema[c] for c in extras)])
    clauses = prepared.mapInPandas(functools.partial(_segment_batches, extras=tuple(extras)), schema)
    return tag_dataframe(clauses, bundle_dir, batch_size=batch_size, evidence=evidence, overrides_file=overrides_file)


def drift_report(tagged: "DataFrame", bundle_dir: str | Path | None = None, top_terms: int = 25, documents: bool = True) -> dict:
    """The drift profile of a tagged DataFrame against the bundle's reference (issue 22):
    what ``tagger tag --drift-report`` writes for the same clauses (verdict, OOV rates, label
    mix and divergence per head, unseen terms, per document).

    An action (runs the job). ``tagged``: the output of :func:`tag_dataframe` or
    :func:`tag_documents` with the same bundle, or that output saved and read back: the
    executors tokenise ``text`` again and read the probabilities from ``scores`` (rounded to 6
    decimals, as the records carry them); per-partition counts are merged on the driver. A
    frame tagged by another model version is refused (``ValueError``): its scores would be
    read against the wrong reference."""
    import pickle

    from .model.drift import DriftProfiler

    missing = [c for c in ("id", "doc", "text", "scores", "model") if c not in tagged.columns]
    if missing:
        raise ValueError(f"drift_report needs the columns of tag_dataframe's output; missing: {', '.join(missing)}")
    bundle, digest = _ship_bundle(tagged.sparkSession, bundle_dir)
    tagger = _TAGGERS[digest]
    versions = [r[0] for r in tagged.select(F.substring_index("model", "+", 1)).distinct().limit(3).collect()]
    other = [v for v in versions if v != tagger.version]
    if other:
        raise ValueError(f"the frame was tagged by model {other[0]}, the bundle is {tagger.version}: profile with the bundle that tagged it")
    fn = functools.partial(_drift_batches, bundle=bundle, digest=digest)
    schema = StructType([StructField("acc", BinaryType(), False)])
    profiler = DriftProfiler.for_tagger(tagger)
    acc = profiler.new_accumulator()
    for row in tagged.select("id", "doc", "text", "scores").mapInPandas(fn, schema).collect():
        acc.merge(pickle.loads(row.acc))
    return profiler.report(acc, top_terms=top_terms, documents=documents)


def _drift_batches(batches: Iterator["pd.DataFrame"], bundle, digest: str) -> Iterator["pd.DataFrame"]:
    import json
    import pickle

    import numpy as np
    import pandas as pd

    from .model.drift import DriftProfiler

    tagger = _load_tagger(digest, bundle)
    profiler, acc = DriftProfiler.pair(tagger)
    labels = {h: tagger.manifest.labels(h) for h in HEADS}
    for pdf in batches:
        if not len(pdf):
            continue
        scores = [json.loads(s) for s in pdf["scores"].tolist()]
        probs = {h: np.array([[sc[h][lab] for lab in labels[h]] for sc in scores], dtype=np.float32) for h in HEADS}
        docs = ["" if d is None else d for d in pdf["doc"].tolist()]
        profiler.add(acc, pdf["id"].tolist(), docs, tagger.tokenizer.batch(pdf["text"].tolist()), probs)
    yield pd.DataFrame({"acc": [pickle.dumps(acc)]})


# --- driver side ---------------------------------------------------------------------


def _col(name: str):
    return F.col("`" + name.replace("`", "``") + "`")


def _digest(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + str(len(files[name])).encode() + b"\0" + files[name])
    return h.hexdigest()[:24]


def _resolve_bundle(bundle_dir: str | Path | None) -> Path:
    from .config import get_settings
    from .model.inference import resolve_bundle_dir

    if bundle_dir is not None:
        return Path(bundle_dir)
    st = get_settings()
    return resolve_bundle_dir(st.model_dir, st.model_uri)  # what `tagger tag` loads without --model


def _ship_bundle(spark, bundle_dir: str | Path | None):
    """Read the bundle on the driver, check it loads, and broadcast its files once per app."""
    from .errors import InvalidBundle

    folder = _resolve_bundle(bundle_dir)
    files = {}
    for name in _bundle_files(folder):
        try:
            files[name] = (folder / name).read_bytes()
        except OSError as exc:
            raise InvalidBundle(str(folder), f"{name}: {exc.strerror or exc}") from None
    digest = _digest(files)
    _load_tagger(digest, files)  # fails here, on the driver, with InvalidBundle's one line
    try:
        sc = spark.sparkContext
    except Exception as exc:  # Spark Connect sessions have no SparkContext
        raise NotImplementedError(f"tagger.spark needs a classic Spark session with a SparkContext ({type(exc).__name__})") from None
    key = (sc.applicationId, digest)
    if key not in _BROADCASTS:
        for old in [k for k in _BROADCASTS if k[0] != sc.applicationId]:
            del _BROADCASTS[old]  # left by a stopped session
        _BROADCASTS[key] = sc.broadcast(files)
    return _BROADCASTS[key], digest


# --- both sides ----------------------------------------------------------------------


def _scratch_dir() -> Path:
    try:
        from pyspark import SparkFiles

        root = SparkFiles.getRootDirectory()  # per application; Spark removes it at the end
        if root and os.path.isdir(root):
            return Path(root)
    except Exception:
        pass
    return Path(tempfile.gettempdir())


def _folder_digest(folder: Path) -> str | None:
    try:
        return _digest({name: (folder / name).read_bytes() for name in _bundle_files(folder)})
    except OSError:
        return None


def _materialize(digest: str, files: dict[str, bytes]) -> Path:
    """The bundle's files in a folder of their own, written once per machine and digest."""
    base = _scratch_dir()
    target = base / f"tagger-bundle-{digest}"
    if _folder_digest(target) == digest:
        return target
    tmp = Path(tempfile.mkdtemp(prefix=f".tagger-bundle-{digest}.", dir=base))
    for name, data in files.items():
        (tmp / name).write_bytes(data)
    try:
        os.rename(tmp, target)  # atomic; fails if another process got there first
        return target
    except OSError:
        if _folder_digest(target) == digest:
            shutil.rmtree(tmp, ignore_errors=True)
            return target
        return tmp  # the name is held by something else: keep this private copy


def _load_tagger(digest: str, files) -> "Tagger":
    """The process's Tagger for this bundle; ``files`` is a dict or a Broadcast of one."""
    tagger = _TAGGERS.get(digest)
    if tagger is None:
        with _LOCK:
            tagger = _TAGGERS.get(digest)
            if tagger is None:
                from .model.inference import Tagger

                data = files if isinstance(files, dict) else files.value
                tagger = _TAGGERS[digest] = Tagger(_materialize(digest, data), threads=1)
    return tagger


# --- executor side (top-level functions: pickled by reference, so the caches persist) --


def _check_rows(pdf: "pd.DataFrame", key: str, what: str) -> None:
    import pandas as pd

    bad = pdf[key].isna() | (pdf[key] == "") | pdf["text"].isna()
    if bad.any():
        first = pdf.loc[bad, key].iloc[0]
        raise ValueError(
            f"{int(bad.sum())} {what}(s) without a non-empty '{key}' or a string 'text' "
            f"(first: {key}={None if pd.isna(first) else first!r}); filter them out before tagging"
        )


def _tag_batches(
    batches: Iterator["pd.DataFrame"], bundle, digest: str, batch_size: int, extras: tuple[str, ...], evidence: bool = False, overrides=None
) -> Iterator["pd.DataFrame"]:
    import pandas as pd

    from .jsonio import dumps
    from .tagging import tag_clauses

    tagger = _load_tagger(digest, bundle)
    for pdf in batches:
        _check_rows(pdf, "id", "clause")
        for start in range(0, len(pdf), batch_size):
            part = pdf.iloc[start : start + batch_size]
            # The code path of `tagger tag`: same batching-independent predictions, same record.
            recs = tag_clauses(
                tagger, [{"id": i, "text": t} for i, t in zip(part["id"].tolist(), part["text"].tolist())], evidence=evidence, overrides=overrides
            )
            part = part.reset_index(drop=True)
            out = {n: part[n] for n in ("id", "doc", "section", "text")}
            for h in HEADS:
                out[h] = pd.Series([r[h] for r in recs], dtype=object)
            out["scores"] = pd.Series([dumps(r["scores"]) for r in recs], dtype=object)
            out["model"] = pd.Series([r["model"] for r in recs], dtype=object)
            out["provenance"] = pd.Series([r["provenance"] for r in recs], dtype=object)
            if evidence:
                out["evidence"] = pd.Series([dumps(r["evidence"]) for r in recs], dtype=object)
            out.update((c, part[c]) for c in extras)
            yield pd.DataFrame(out)


def _segment_batches(batches: Iterator["pd.DataFrame"], extras: tuple[str, ...]) -> Iterator["pd.DataFrame"]:
    import pandas as pd

    from .ingest.documents import document_from_text
    from .ingest.segment import segment

    for pdf in batches:
        _check_rows(pdf, "doc", "document")
        rows: dict[str, list] = {n: [] for n in ("id", "doc", "section", "text")}
        owner: list[int] = []
        for pos, (doc_id, text) in enumerate(zip(pdf["doc"].tolist(), pdf["text"].tolist())):
            for doc in document_from_text(text, doc_id):
                for clause in segment(doc):
                    for k, v in clause.record().items():
                        rows[k].append(v)
                    owner.append(pos)
        out = {k: pd.Series(v, dtype=object) for k, v in rows.items()}
        out.update((c, pdf[c].iloc[owner].reset_index(drop=True)) for c in extras)
        yield pd.DataFrame(out)
