"""Human-readable reports: the CV table (printed, in the model card) and plots for MLflow."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tagger.taxonomy import HEADS

__all__ = ["cv_table", "evaluation_table", "model_card", "save_plots"]


def _n(x, key="macro_f1") -> str:
    return "–" if not x else f"{x[key]:.3f}"


def evaluation_table(ev: dict) -> str:
    """Markdown: the shipped model per head on grouped CV and on the time split, the
    old optimistic figure, and the word list on the same splits."""
    tp = ev["protocol"]["time_split"]
    lines = [
        f"Time split: train on {tp['train_documents']} documents up to {tp['cutoff_year']} ({tp['train_clauses']} clauses), "
        f"test on {tp['test_documents']} documents from {tp['cutoff_year'] + 1} on ({tp['test_clauses']} clauses); thresholds {tp['threshold_tuning']}.",
        "",
        "| head | model | metric | grouped CV (cross-fitted thresholds) | time split (nested thresholds) | first-wave protocol (optimistic) | word list, grouped | word list, time split | time split − word list |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for h, hd in ev["heads"].items():
        metrics = [("macro_f1", "macro-F1"), ("micro_f1", "micro-F1")]
        if h == "topic":
            metrics.insert(1, ("macro_f1_required", "macro-F1, 4 required topics"))
        if h == "measure":
            metrics.insert(1, ("macro_f1_headline", "macro-F1, grant/rent/tax"))
        if h == "kind":
            metrics = [("accuracy", "accuracy (argmax)"), ("macro_f1", "macro-F1")]
        for key, name in metrics:
            t, kt = hd["time"], hd["keyword_time"]
            gap = f"{t[key] - kt[key]:+.3f}" if t and kt else "–"
            lines.append(
                f"| {h} | {hd['model']} | {name} | {_n(hd['grouped'], key)} | {_n(t, key)} | {_n(hd['optimistic_grouped'], key)} "
                f"| {_n(hd['keyword_grouped'], key)} | {_n(kt, key)} | {gap} |"
            )
    lines += ["", "Per label, the shipped model (P / R / F1, time split):", ""]
    for h, hd in ev["heads"].items():
        if not hd["time"]:
            continue
        lines += [f"**{h}** ({hd['model']})", "", "| label | support (time test) | precision | recall | F1 | F1 grouped CV | word list F1 (time) |", "|---|---:|---:|---:|---:|---:|---:|"]
        for lab, m in hd["time"]["labels"].items():
            kw = hd["keyword_time"]["labels"][lab]["f1"] if hd["keyword_time"] else None
            g = hd["grouped"]["labels"][lab]["f1"]
            lines.append(f"| {lab} | {m['support']} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {g:.3f} | {'–' if kw is None else f'{kw:.3f}'} |")
        lines.append("")
    for h, hd in ev["heads"].items():
        for split, res in (("time split", hd["time"]), ("grouped CV", hd["grouped"])):
            if res and res.get("confusion"):
                lines += [f"**{h}: confusion, {split}** (rows: labeled, columns: predicted)", "", confusion_table(res["confusion"]), ""]
    if ev.get("gates"):
        lines += ["**Kind gates** (`tagger.model.gates`: a clause read as a principle, title or condition carries no topic; a "
                  "procedure only `governance`; conditions and principles no measure). Each mode with its own best model and "
                  "thresholds; the run keeps the best grouped-CV macro-F1 (the time split chooses nothing; inner = grouped "
                  "CV over the documents up to 2022 only):", "",
                  "| head | gate | chosen | model | inner macro-F1 | grouped macro-F1 | time macro-F1 | time micro-F1 | grouped 4 required | time 4 required |",
                  "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for h, g in ev["gates"].items():
            for mode, m in g["modes"].items():
                f = lambda k: "–" if m.get(k) is None else f"{m[k]:.3f}"  # noqa: E731
                lines.append(f"| {h} | {mode} | {'**yes**' if mode == g['chosen'] else ''} | {m['model']} | {f('inner_macro_f1')} "
                             f"| {f('grouped_macro_f1')} "
                             f"| {f('time_macro_f1')} | {f('time_micro_f1')} | {f('grouped_required')} | {f('time_required')} |")
        lines.append("")
    nt = ev.get("named_tax_relief")
    if nt:
        f = lambda d: "–" if not d or d.get("recall") is None else f"{d['recall']:.3f} (n={d['n']})"  # noqa: E731
        lines += [f"**Relief on a named tax** ({nt['definition']}): `tax_relief` recall, grouped CV {f(nt.get('grouped'))}, "
                  f"time split {f(nt.get('time'))}.", ""]
    return "\n".join(lines)


def confusion_table(conf: dict) -> str:
    labels = list(conf)
    rows = ["| labeled \\ predicted | " + " | ".join(labels) + " |", "|---" + "|---:" * len(labels) + "|"]
    rows += [f"| {a} | " + " | ".join(str(conf[a][b]) for b in labels) + " |" for a in labels]
    return "\n".join(rows)


def cv_table(cv: dict) -> str:
    """Markdown: per head, micro/macro-F1 of every candidate and the keyword baseline, then
    per-label P/R/F1 of the chosen model next to the baseline's F1."""
    lines = ["| head | chosen | " + " | ".join(f"{k} micro / macro" for k in _kinds(cv)) + " | keyword rules micro / macro |", "|---" * (3 + len(_kinds(cv))) + "|"]
    for h in HEADS:
        hd = cv["heads"][h]
        cells = [f"{hd[k]['micro_f1']:.3f} / {hd[k]['macro_f1']:.3f}" for k in _kinds(cv)]
        b = hd["keyword_baseline"]
        lines.append(f"| {h} | {hd['model']} | " + " | ".join(cells) + (f" | {b['micro_f1']:.3f} / {b['macro_f1']:.3f} |" if b else " | – |"))
    lines.append("")
    lines.append(f"Run score (mean macro-F1 of the chosen models over heads): **{cv['score']:.4f}**")
    for h in HEADS:
        hd = cv["heads"][h]
        chosen = hd[hd["model"]]["labels"]
        base = (hd["keyword_baseline"] or {}).get("labels", {})
        lines += ["", f"**{h}** ({hd['model']})", "", "| label | support | precision | recall | F1 | keyword F1 |", "|---|---:|---:|---:|---:|---:|"]
        for lab, m in chosen.items():
            kw = f"{base[lab]['f1']:.3f}" if lab in base else "–"
            lines.append(f"| {lab} | {m['support']} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {kw} |")
    return "\n".join(lines)


def _kinds(cv: dict) -> list[str]:
    hd = cv["heads"][HEADS[0]]
    return [k for k in hd if k not in ("model", "keyword_baseline")]


def _p99(parity: dict) -> str:
    """The 99th percentile when recorded (bundles since 2026-12-07): a float32 tree split can
    move one clause's probability by a leaf's share while the rest agree to 1e-6."""
    p99 = parity.get("p99_abs_diff")
    return f" (99th percentile of clauses {max(p99.values()):.1e})" if p99 else ""


def model_card(manifest: dict) -> str:
    cv = manifest["cv"]
    td = manifest["training_data"]
    ev = manifest.get("evaluation")
    models = ", ".join(f"{h}: `{hd['model']}`" for h, hd in manifest["heads"].items())
    markers = (", preceded by structure markers (length class, last character; a start marker after a leading "
               "enumerator: `structure_markers`)") if manifest.get("tokenizer", {}).get("structure_markers") else ""
    honest = ""
    if ev:
        honest = "## Accuracy on documents the model has not seen\n\n" + evaluation_table(ev) + "\n"
        honest += ("\nThe first-wave figures tuned thresholds on the very out-of-fold predictions they "
                   "scored; the column *first-wave protocol* shows that figure for the same model, and the "
                   "difference to the grouped-CV column is how much it flattered.\n")
        if ev.get("variants"):
            from .experiments import variants_table

            honest += "\n## Variants tried (same splits, same thresholds protocol)\n\n" + variants_table(ev["variants"]) + "\n"
            honest += "\nChoice: " + ev["protocol"]["choice"] + ".\n"
    return f"""# policy-tagger {manifest['version']}

Tags clauses of Chinese industrial-policy documents with `topic`, `measure` and
`industry` (multi-label) and `kind` (single label: the most probable; provision, target,
principle, condition, procedure or title); ids in `manifest.json`, contract in
`labels/guidelines.md` (rules v1.1). Topic and measure are gated by the predicted kind where
the gate table below says so.

- **Input**: clause text, normalised and cut by jieba with `userdict.txt`, tokens joined by
  spaces (`tagger.model.features.Tokenizer`){markers}; ONNX input `{manifest['input']['name']}` (string [N, 1]).
- **Model**: word {tuple(manifest['features']['word_ngram'])} + char {tuple(manifest['features']['char_ngram'])} n-gram TF-IDF
  ({manifest['features']['n_features']} features), one-vs-rest per head ({models}); `avg:a+b` averages the
  two models' probabilities inside the ONNX graph; per-label thresholds tuned on grouped-CV
  out-of-fold probabilities of the final configuration.
- **Training data**: {td['n_clauses']} clauses from {td['n_documents']} documents (`{td['file']}`,
  sha256 `{td['sha256'][:16]}…`).
- **Evaluation**: by document only. Grouped {cv['n_splits']}-fold CV with thresholds cross-fitted
  (each fold's thresholds tuned on the other folds), and a time split (train up to 2022,
  test 2023 on) with thresholds tuned by an inner grouped CV inside the training part. Models
  and kind gates are chosen on grouped CV: the time split chooses nothing. The keyword
  baseline (the guide's typical words) is scored on the same rows.
- **ONNX parity**: {manifest['onnx_parity']['n']} real clauses, max |ONNX − scikit-learn| =
  {max(manifest['onnx_parity']['max_abs_diff'].values()):.1e}{_p99(manifest['onnx_parity'])}; label sets identical.
- **Created**: {manifest['created_at']}; libraries: {', '.join(f'{k} {v}' for k, v in manifest['library_versions'].items())}.

{honest}
## Grouped-CV metrics per candidate (cross-fitted thresholds)

{cv_table(cv)}

## Limits

Trained on {td['n_documents']} documents: national plans, 33 pilot-zone city policies, 105 web
excerpts, 41 Zhejiang county policies (mostly 2016-2020, many outside AI) and 129 openings of
2023-2026 AI, computing-power, embodied-AI, low-altitude, chip and data policies. Labels were
made by LLM annotators under `labels/guidelines.md` (the shared guide, rules v1.1; every record
re-read for v1.1 and given a kind, see `labels/AGREEMENT.md`). Rare labels have wide error
bars; document-level wording shifts are the main risk. The kind gate removes topics from
clauses the kind head reads as principles, titles or conditions: where the kind head errs
(condition vs procedure vs provision are its hardest confusions), topics are lost with it.
"""


def save_plots(cv_result, ds, out_dir: Path) -> list[Path]:
    """Out-of-fold precision-recall curves and per-label confusion counts, one PNG per head."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for h in HEADS:
        kind = cv_result.chosen[h]
        p = cv_result.oof[kind][h]
        y = ds.Y[h]
        labels = ds.taxonomy.labels[h]
        fig, ax = plt.subplots(figsize=(7, 6))
        for j, lab in enumerate(labels):
            if y[:, j].sum() == 0:
                continue
            pr, rc, _ = precision_recall_curve(y[:, j], p[:, j])
            ax.plot(rc, pr, label=f"{lab} ({int(y[:, j].sum())})", lw=1)
        ax.set(xlabel="recall", ylabel="precision", title=f"{h}: out-of-fold PR curves ({kind})", xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(fontsize=6, loc="lower left", ncol=2)
        path = out_dir / f"pr_curves_{h}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)

        th = cv_result.thresholds[kind][h]
        pred = p >= th
        n = len(labels)
        cols = 6
        rows = int(np.ceil(n / cols))
        fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows))
        for j, ax in enumerate(np.ravel(axes)):
            if j >= n:
                ax.axis("off")
                continue
            t = y[:, j] == 1
            m = np.array([[int((~t & ~pred[:, j]).sum()), int((~t & pred[:, j]).sum())], [int((t & ~pred[:, j]).sum()), int((t & pred[:, j]).sum())]])
            ax.imshow(m, cmap="Blues")
            for (a, b), v in np.ndenumerate(m):
                ax.text(b, a, str(v), ha="center", va="center", fontsize=8)
            ax.set_title(labels[j], fontsize=8)
            ax.set_xticks([0, 1], ["pred 0", "pred 1"], fontsize=6)
            ax.set_yticks([0, 1], ["true 0", "true 1"], fontsize=6)
        fig.suptitle(f"{h}: out-of-fold confusion per label at tuned thresholds")
        path = out_dir / f"confusion_{h}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths
