"""MLflow: log a training run, register the bundle, move the ``champion`` alias.

The store defaults to ``sqlite:///var/mlflow.db`` with artifacts in ``var/mlruns``
(pinned to the project, not the working directory); MLFLOW_TRACKING_URI overrides.
"""

from __future__ import annotations

from pathlib import Path

from tagger.config import Settings
from tagger.taxonomy import HEADS

__all__ = ["EXPERIMENT", "MODEL_NAME", "configure", "log_training", "champion_report", "per_label_diff"]

EXPERIMENT = "policy-tagger"
MODEL_NAME = "policy-tagger"


def configure(st: Settings):
    import mlflow

    st.var_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(st.tracking_uri)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        mlflow.create_experiment(EXPERIMENT, artifact_location=st.artifact_root.resolve().as_uri())
    mlflow.set_experiment(EXPERIMENT)
    return mlflow


def champion_report(mlflow) -> tuple[str | None, dict | None]:
    """(version, cv report) of the current champion, or (None, None)."""
    client = mlflow.MlflowClient()
    try:
        mv = client.get_model_version_by_alias(MODEL_NAME, "champion")
    except Exception:
        return None, None
    try:
        report = mlflow.artifacts.load_dict(f"runs:/{mv.run_id}/cv_report.json")
    except Exception:
        report = None
    return mv.version, report


def per_label_diff(new: dict, old: dict | None) -> dict:
    """Per head and label: F1 of the new run's chosen model minus the champion's."""
    if not old:
        return {}
    out = {}
    for h in HEADS:
        if h not in old.get("heads", {}):
            continue  # a head the champion did not have
        nh, oh = new["heads"][h], old["heads"][h]
        nl, ol = nh[nh["model"]]["labels"], oh[oh["model"]]["labels"]
        out[h] = {l: round(nl[l]["f1"] - ol.get(l, {}).get("f1", 0.0), 4) for l in nl}
        out[h]["_macro_f1"] = round(nh[nh["model"]]["macro_f1"] - oh[oh["model"]]["macro_f1"], 4)
    return out


def metric_names(metrics: dict) -> dict:
    """MLflow metric names allow letters, digits, _ - . space : / only: a model spec such as
    ``avg:nb_logreg+lgbm`` becomes ``avg:nb_logreg_lgbm``."""
    import re

    return {re.sub(r"[^\w\-. :/]", "_", k): v for k, v in metrics.items()}


def evaluation_metrics(ev: dict | None) -> dict:
    """Flat MLflow metrics from the honest evaluation: grouped CV, time split, word list."""
    out = {}
    if not ev:
        return out
    for h, hd in ev["heads"].items():
        for split, key in (("grouped", "grouped"), ("time", "time"), ("optimistic", "optimistic_grouped"),
                           ("keyword_grouped", "keyword_grouped"), ("keyword_time", "keyword_time")):
            m = hd.get(key)
            if not m:
                continue
            for k in ("micro_f1", "macro_f1", "macro_f1_required", "macro_f1_headline", "accuracy"):
                if k in m:
                    out[f"{split}.{h}.{k}"] = m[k]
            if split in ("grouped", "time"):
                for lab, lm in m["labels"].items():
                    out[f"{split}.{h}.{lab}.f1"] = lm["f1"]
    return out


def log_evaluation(report: dict, data_hash: str, st: Settings) -> str:
    """One MLflow run for ``tagger-train evaluate --mlflow``: the figures and the report."""
    mlflow = configure(st)
    with mlflow.start_run(run_name="evaluate") as run:
        mlflow.set_tags({"kind": "evaluate", "data_hash": data_hash})
        mlflow.log_params({"data_hash": data_hash, "n_splits": report["n_splits"], "seed": report["seed"],
                           **{f"model.{h}": hd["model"] for h, hd in report["evaluation"]["heads"].items()}})
        mlflow.log_metrics(metric_names(evaluation_metrics(report["evaluation"])))
        mlflow.log_dict(report, "evaluation.json")
    return f"evaluation logged as MLflow run {run.info.run_id}"


def log_training(result, st: Settings, bundle_writer, plots_dir: Path, log=print) -> dict:
    """Log params/metrics/artifacts, write the bundle (via ``bundle_writer(run_id) -> folder``),
    log it as the run's model, register it, and make it champion if CV is not worse."""
    import pandas as pd
    from mlflow.models import infer_signature

    import tagger
    from tagger.model.mlflow_model import BundleModel

    from .report import cv_table, save_plots

    mlflow = configure(st)
    report = result.manifest["cv"]
    old_version, old_report = champion_report(mlflow)
    with mlflow.start_run() as run:
        run_id = run.info.run_id
        feats = result.manifest["features"]
        mlflow.log_params({f"features.{k}": v for k, v in feats.items()})
        mlflow.log_params(
            {
                "candidates": ",".join(report["heads"][HEADS[0]].keys() - {"model", "keyword_baseline"}),
                "n_splits": report["n_splits"],
                "seed": report["seed"],
                "data_hash": result.dataset.hash,
                "n_clauses": len(result.dataset),
                **{f"model.{h}": report["heads"][h]["model"] for h in HEADS},
            }
        )
        mlflow.set_tags({"data_hash": result.dataset.hash, "bundle_version": result.manifest["version"]})
        metrics = {"cv_score": report["score"], "train_seconds": round(result.seconds, 1)}
        for h in HEADS:
            hd = report["heads"][h]
            for kind, m in hd.items():
                if kind == "model" or not m:
                    continue
                metrics[f"{h}.{kind}.micro_f1"] = m["micro_f1"]
                metrics[f"{h}.{kind}.macro_f1"] = m["macro_f1"]
            for lab, m in hd[hd["model"]]["labels"].items():
                for k in ("precision", "recall", "f1"):
                    metrics[f"{h}.{lab}.{k}"] = m[k]
        for h, d in result.parity["max_abs_diff"].items():
            metrics[f"onnx_parity.{h}.max_abs_diff"] = d
        metrics.update(evaluation_metrics(result.manifest.get("evaluation")))
        mlflow.log_metrics(metric_names(metrics))
        mlflow.log_dict(report, "cv_report.json")
        mlflow.log_text(cv_table(report), "cv_report.md")
        diff = per_label_diff(report, old_report)
        if diff:
            mlflow.log_dict({"champion_version": old_version, "f1_minus_champion": diff}, "diff_vs_champion.json")
        for p in save_plots(result.cv, result.dataset, plots_dir):
            mlflow.log_artifact(str(p), artifact_path="plots")

        # No tracking URI: it is a path on the training machine, meaningless (and revealing) elsewhere.
        result.manifest["mlflow"] = {"run_id": run_id, "experiment": EXPERIMENT}
        bundle = bundle_writer(run_id)
        example = pd.DataFrame({"text": ["对新引进的人工智能企业，按实际租金的50%给予最高100万元补贴。", "支持建设人工智能算力中心。"]})
        model = BundleModel()
        model.load_context(type("Ctx", (), {"artifacts": {"bundle": str(bundle)}})())
        signature = infer_signature(example, model.predict(None, example))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=BundleModel(),
            artifacts={"bundle": str(bundle)},
            code_paths=[str(Path(tagger.__file__).parent)],
            signature=signature,
            input_example=example,
            pip_requirements=["onnxruntime>=1.17", "jieba>=0.42.1", "numpy>=1.26", "pyyaml>=6.0", "pandas", "pypdf>=4.0", "fastapi>=0.110"],
        )
    mv = mlflow.register_model(info.model_uri, MODEL_NAME)
    # Scores over different heads (a champion from before the kind head) do not compare:
    # the new label contract wins.
    same_heads = bool(old_report) and set(old_report.get("chosen", {})) == set(report.get("chosen", {}))
    old_score = old_report["score"] if same_heads else None
    promote = old_score is None or report["score"] >= old_score
    client = mlflow.MlflowClient()
    if promote:
        client.set_registered_model_alias(MODEL_NAME, "champion", mv.version)
    verdict = (
        f"registered {MODEL_NAME} v{mv.version}; "
        + (f"champion (score {report['score']:.4f} vs {old_score:.4f} of v{old_version})" if promote and old_score is not None else "")
        + (("champion (first model)" if not old_report else "champion (the champion has other heads)") if old_score is None else "")
        + ("" if promote else f"not champion: score {report['score']:.4f} < {old_score:.4f} of v{old_version}")
    )
    log(verdict)
    return {"run_id": run_id, "version": mv.version, "champion": promote, "previous_champion": old_version, "diff": diff, "verdict": verdict}

