"""``tagger-train``: train (CV + bundle + MLflow), evaluate (CV report only), export."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tagger.config import get_settings
from tagger.errors import TaggerError

__all__ = ["main"]

# The shipped choice, from the variants table in models/policy-tagger/README.md.
DEFAULT_FEATURES = "lexicon+structure"
DEFAULT_CANDIDATES = ("nb_logreg", "lgbm", "avg:nb_logreg+lgbm", "avg:logreg+lgbm")


# `oof --fast`: one candidate. Logistic regression is the quickest of them and what the
# suspects queue was measured with (tests/annotate/test_review.py).
FAST_CANDIDATES = ("logreg",)


def _cfg(args):
    from tagger.taxonomy import load_taxonomy

    from .train import TrainConfig

    st = get_settings()
    if getattr(args, "fast", False):
        args.candidates = ",".join(FAST_CANDIDATES)
    variants = None
    if getattr(args, "variants_report", None):
        variants = json.loads(Path(args.variants_report).read_text(encoding="utf-8"))
        variants = variants.get("evaluation", {}).get("variants", variants)
    return TrainConfig(
        labels_file=Path(args.labels or st.clauses_file),
        taxonomy=load_taxonomy(st.taxonomy_file),
        feature_set=args.features,
        candidates=tuple(args.candidates.split(",")),
        n_splits=args.splits,
        seed=args.seed,
        documents_dir=st.documents_dir,
        variants_report=variants,
        run_variants=bool(getattr(args, "variants", False)),
    )


def cmd_train(args) -> int:
    from .report import cv_table
    from .tracking import log_training
    from .train import train, write_bundle

    st = get_settings()
    t0 = time.time()
    result = train(_cfg(args), log=lambda m: print(m, file=sys.stderr))
    print(cv_table(result.manifest["cv"]))
    bundles = st.var_dir / "bundles"

    def writer(run_id: str) -> Path:
        return write_bundle(result, bundles / run_id)

    with tempfile.TemporaryDirectory() as plots:
        info = log_training(result, st, writer, Path(plots), log=lambda m: print(m, file=sys.stderr))
    result.manifest["mlflow"].update(registered_model="policy-tagger", registered_version=info["version"], champion=info["champion"])
    write_bundle(result, bundles / info["run_id"])
    from .evaluate import oof_document

    _write_oof(oof_document(result.dataset, result.cv), st.var_dir / "oof" / "latest.json")
    if info["diff"]:
        print("\nF1 change per label against the previous champion (v%s):" % info["previous_champion"])
        for h, d in info["diff"].items():
            print(f"  {h}: " + ", ".join(f"{k} {v:+.3f}" for k, v in d.items()))
    out = Path(args.out or st.model_dir)
    if info["champion"] or args.force_export:
        write_bundle(result, out)
        print(f"bundle {result.manifest['version']} exported to {out}", file=sys.stderr)
    else:
        print(f"bundle kept in {bundles / info['run_id']} (not champion; {out} unchanged)", file=sys.stderr)
    print(f"training run {info['run_id']} done in {time.time() - t0:.0f}s", file=sys.stderr)
    return 0


def _write_oof(doc: dict, path: Path) -> None:
    from tagger.jsonio import atomic_writer

    with atomic_writer(path) as fh:
        json.dump(doc, fh, ensure_ascii=False)
    print(f"out-of-fold probabilities written to {path}", file=sys.stderr)


def cmd_oof(args) -> int:
    """Grouped-CV out-of-fold probabilities for the current labels (confident learning input)."""
    from .evaluate import oof_document
    from .train import evaluate

    e = evaluate(_cfg(args), log=lambda m: print(m, file=sys.stderr))
    _write_oof(oof_document(e.dataset, e.cv), Path(args.out or get_settings().var_dir / "oof" / "latest.json"))
    return 0


def cmd_evaluate(args) -> int:
    """The honest figures (grouped CV + time split, nested thresholds), and with
    ``--variants`` the side-by-side table of model variants."""
    from .report import cv_table, evaluation_table
    from .train import _evaluation, evaluate

    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    cfg = _cfg(args)
    e = evaluate(cfg, log)
    report = {"n_splits": cfg.n_splits, "seed": cfg.seed, **e.cv.report(), "evaluation": _evaluation(e.evaluator, cfg, e.chosen, e.per_head)}
    if cfg.variants_report:
        from .experiments import variants_table

        print(variants_table(report["evaluation"]["variants"]))
        print()
    print(evaluation_table(report["evaluation"]))
    print()
    print(cv_table(report))
    if args.json:
        from tagger.jsonio import atomic_writer

        with atomic_writer(Path(args.json)) as fh:
            json.dump(report, fh, ensure_ascii=False, indent=1)
    if args.run_mlflow:
        from .tracking import log_evaluation

        log(log_evaluation(report, e.dataset.hash, get_settings()))
    return 0


def cmd_export(args) -> int:
    from tagger.jsonio import atomic_folder
    from tagger.model.inference import Tagger, resolve_bundle_dir

    st = get_settings()
    src = resolve_bundle_dir(st.model_dir, args.uri)
    Tagger(src)  # refuse to export a bundle the runtime cannot load
    out = Path(args.out or st.model_dir)
    with atomic_folder(out) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
    print(f"exported {args.uri} to {out}", file=sys.stderr)
    return 0


def cmd_compile_sparse(args) -> int:
    """Add the sparse serving files to an existing bundle (no retraining)."""
    import random

    from .sparse import write_sparse

    st = get_settings()
    folder = Path(args.bundle or st.model_dir)
    texts = [json.loads(line)["text"] for line in open(st.clauses_file, encoding="utf-8") if line.strip()]
    random.Random(0).shuffle(texts)
    serving = write_sparse(folder, texts[: args.n])
    worst = max(serving["parity_with_onnx"]["max_abs_diff"].values())
    print(f"{folder}: sparse serving path written; max |diff| vs ONNX {worst:.2e} on {args.n} clauses", file=sys.stderr)
    return 0


def cmd_profile(args) -> int:
    """Add the drift reference profile (drift.json) to an existing bundle (no retraining)."""
    from tagger.taxonomy import load_taxonomy

    from .drift_profile import profile_bundle

    st = get_settings()
    folder = Path(args.bundle or st.model_dir)
    spec, ref = profile_bundle(folder, Path(args.labels or st.clauses_file), load_taxonomy(st.taxonomy_file),
                               Path(args.calibration) if args.calibration else None)
    print(f"{folder}: {spec['file']} written from {ref['clauses']} training clauses (OOV rate {ref['oov_rate']}); "
          f"verdict thresholds watch {spec['thresholds']['watch']}, retrain {spec['thresholds']['retrain']}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tagger-train", description="Train, evaluate and export the policy clause tagger.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, fn, hlp in (
        ("train", cmd_train, "grouped CV, final fit, ONNX bundle, MLflow run + registry"),
        ("evaluate", cmd_evaluate, "grouped-CV report only"),
        ("oof", cmd_oof, "out-of-fold probabilities for 'tagger review suspects'"),
    ):
        s = sub.add_parser(name, help=hlp)
        s.add_argument("--labels", help="labeled clauses (default: labels/clauses.jsonl)")
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--splits", type=int, default=5)
        s.add_argument("--candidates", default=",".join(DEFAULT_CANDIDATES),
                       help="model specs tried per head: logreg, lgbm, nb_logreg, avg:A+B, with @recency for recency weights")
        s.add_argument("--features", default=DEFAULT_FEATURES, choices=["base", "char4", "lexicon", "char4+lexicon", "lexicon+structure"], help="feature set (training/experiments.py)")
        s.set_defaults(func=fn)
        if name == "train":
            s.add_argument("--out", help="bundle folder to export a champion to (default: models/policy-tagger)")
            s.add_argument("--force-export", action="store_true", help="export even if the run does not become champion")
            s.add_argument("--variants-report", help="JSON from 'evaluate --variants --json' to include in the model card")
            s.add_argument("--variants", action="store_true", help="also run the table of model variants (slow) for the model card")
        elif name == "oof":
            s.add_argument("-o", "--out", help="default: var/oof/latest.json")
            s.add_argument("--fast", action="store_true", help=f"one candidate ({', '.join(FAST_CANDIDATES)}) instead of --candidates; see README for the time")
        else:
            s.add_argument("--json", help="also write the report as JSON")
            s.add_argument("--variants", action="store_true", help="also run the table of model variants (slow: about 20 min)")
            s.add_argument("--mlflow", dest="run_mlflow", action="store_true", help="log the figures as an MLflow run")
    e = sub.add_parser("export", help="copy a registered bundle into a folder")
    e.add_argument("--uri", default="models:/policy-tagger@champion")
    e.add_argument("--out", help="default: models/policy-tagger")
    e.set_defaults(func=cmd_export)
    c = sub.add_parser("compile-sparse", help="add the sparse serving path to a bundle (parity-checked against its ONNX graph)")
    c.add_argument("bundle", nargs="?", help="bundle folder (default: models/policy-tagger)")
    c.add_argument("--n", type=int, default=2000, help="labeled clauses the parity check runs on")
    c.set_defaults(func=cmd_compile_sparse)
    d = sub.add_parser("profile", help="add the drift reference profile (drift.json) to a bundle from its training clauses")
    d.add_argument("--bundle", help="bundle folder (default: models/policy-tagger)")
    d.add_argument("--labels", help="labeled clauses (default: labels/clauses.jsonl)")
    d.add_argument("--calibration", help="calibration summary with the thresholds (default: training/drift_calibration.json)")
    d.set_defaults(func=cmd_profile)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (TaggerError, ValueError, FileNotFoundError) as exc:
        print(f"tagger-train: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
