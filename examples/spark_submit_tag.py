"""Tag clauses or documents with Spark: a spark-submit job around :mod:`tagger.spark`.

Input (first argument), by what it is:
  * a ``.jsonl``/``.json`` file or folder of clause records ``{"id", "text", ...}``
    (optional ``doc``, ``section``; any other field passes through);
  * a ``.parquet`` file or folder of clauses with the same columns;
  * with ``--documents``, or a folder that holds ``.txt`` files: one document per file
    (``doc`` = the file name as ``tagger tag`` makes it, text decoded as ``tagger tag``
    does), segmented into clauses as ``tagger segment`` does.
Output (second argument): a Parquet folder, or with ``--format jsonl`` (default for an
output name ending in ``.jsonl``) a folder of JSONL part files whose lines are written
as ``tagger tag`` writes them (``scores`` as an object; ``cat out/part-* > tagged.jsonl``).

The executors need the package (``pip install "policy-clause-tagger[spark]"``) in the
Python that Spark runs there, and Java 17+ for Spark 4.

Local run, 2 cores, the bundled model (read by the driver, broadcast to the executors)::

    spark-submit --master "local[2]" examples/spark_submit_tag.py labels/clauses.jsonl /tmp/tagged.jsonl

A cluster, the package installed in /opt/tagger/venv on every node, input and output on
HDFS, the model bundle shipped with ``--files`` (for when the driver has no bundle of its
own, e.g. in cluster deploy mode) and found there by ``--model-from-files``::

    spark-submit --master spark://spark-master:7077 \\
        --conf spark.pyspark.python=/opt/tagger/venv/bin/python \\
        --files models/policy-tagger/manifest.json,models/policy-tagger/model.onnx,models/policy-tagger/userdict.txt \\
        examples/spark_submit_tag.py --model-from-files \\
        hdfs:///policy/clauses.parquet hdfs:///policy/tagged.parquet

Without a Python installed on the nodes, ship one: ``venv-pack -o tagger-env.tar.gz`` from
a virtualenv holding the package, then ``--archives tagger-env.tar.gz#env --conf
spark.pyspark.python=./env/bin/python``. Documents instead of clauses::

    spark-submit --master "local[2]" examples/spark_submit_tag.py --documents labels/documents/extra /tmp/extra-tagged.parquet
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import sys


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Tag clauses or .txt documents with Spark (tagger.spark).")
    p.add_argument("input", help="JSONL or Parquet clauses (file or folder), or a folder of .txt documents")
    p.add_argument("output", help="output folder (Parquet, or JSONL part files)")
    p.add_argument("--documents", action="store_true", help="the input is a folder of .txt documents (default when it holds .txt files)")
    p.add_argument("--format", choices=("parquet", "jsonl"), help="output format (default: jsonl for an output name ending in .jsonl, else parquet)")
    model = p.add_mutually_exclusive_group()
    model.add_argument("--model", help="bundle folder on the driver (default: the one `tagger tag` uses)")
    model.add_argument("--model-from-files", action="store_true", help="the bundle files were shipped with spark-submit --files")
    p.add_argument("--batch-size", type=int, default=1000, help="clauses per ONNX call on an executor")
    p.add_argument("--partitions", type=int, default=0, help="repartition the input to this many partitions first")
    p.add_argument("--mode", default="errorifexists", choices=("errorifexists", "overwrite"), help="when the output exists")
    return p.parse_args(argv)


def _shipped_bundle() -> str:
    """The folder holding the bundle files given to spark-submit --files."""
    from pyspark import SparkFiles

    for folder in (SparkFiles.getRootDirectory(), os.getcwd()):  # YARN cluster mode: the working folder
        if os.path.isfile(os.path.join(folder, "manifest.json")):
            return folder
    sys.exit("--model-from-files: no manifest.json among the spark-submit --files (pass manifest.json, model.onnx, userdict.txt)")


def _is_documents(path: str) -> bool:
    """A local folder that holds .txt files (for other file systems, say --documents)."""
    return os.path.isdir(path) and any(name.endswith(".txt") for _, _, names in os.walk(path) for name in names)


def _read_documents(spark, path: str):
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    @F.udf(StringType())
    def doc_id(file_path: str) -> str:
        from pathlib import PurePosixPath

        from tagger.ingest.documents import doc_id_for

        return doc_id_for(PurePosixPath(posixpath.basename(file_path)))

    @F.udf(StringType())
    def decode(content: bytes, file_path: str) -> str:
        from tagger.ingest.readers import decode_bytes

        return decode_bytes(bytes(content), file_path)

    files = spark.read.format("binaryFile").option("pathGlobFilter", "*.txt").option("recursiveFileLookup", "true").load(path)
    return files.orderBy("path").select(doc_id("path").alias("doc"), decode("content", "path").alias("text"), F.col("path").alias("source"))


def _read_clauses(spark, path: str):
    if path.rstrip("/").endswith(".parquet") or (os.path.isdir(path) and any(n.endswith(".parquet") for n in os.listdir(path))):
        return spark.read.parquet(path)
    # spark.read.json infers the schema (extra fields come in alphabetical order); pass a
    # schema (spark.read.schema(...).json) to keep yours.
    return spark.read.json(path)


def _jsonl_line(row) -> str:
    rec = row.asDict(recursive=True)
    rec["scores"] = json.loads(rec["scores"])
    return json.dumps(rec, ensure_ascii=False, separators=(",", ":"), default=str)  # tagger tag's layout


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    from pyspark.sql import SparkSession

    from tagger.spark import tag_dataframe, tag_documents

    spark = SparkSession.builder.appName("policy-clause-tagger").getOrCreate()
    try:
        bundle = _shipped_bundle() if args.model_from_files else args.model
        if args.documents or _is_documents(args.input):
            df = _read_documents(spark, args.input)
            if args.partitions:
                df = df.repartition(args.partitions)
            tagged = tag_documents(df, bundle_dir=bundle, batch_size=args.batch_size)
        else:
            df = _read_clauses(spark, args.input)
            if args.partitions:
                df = df.repartition(args.partitions)
            tagged = tag_dataframe(df, bundle_dir=bundle, batch_size=args.batch_size)
        fmt = args.format or ("jsonl" if args.output.rstrip("/").endswith(".jsonl") else "parquet")
        if fmt == "parquet":
            tagged.write.mode(args.mode).parquet(args.output)
        else:
            lines = spark.createDataFrame(tagged.rdd.map(lambda row: (_jsonl_line(row),)), "value string")
            lines.write.mode(args.mode).text(args.output)
        n = (spark.read.parquet if fmt == "parquet" else spark.read.text)(args.output).count()
        print(f"tagged {n} clauses into {args.output} ({fmt})", file=sys.stderr)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
