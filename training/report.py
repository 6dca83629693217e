"""Human-readable reports: the CV table (printed, in the model card) and plots for MLflow."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tagger.taxonomy import HEADS

__all__ = ["cv_table", "model_card", "save_plots"]


def cv_table(cv: dict) -> str:
    """Markdown: per head, micro/macro-F1 of every candidate and the keyword baseline, then
    per-label P/R/F1 of the chosen model next to the baseline's F1."""
    lines = ["| head | chosen | " + " | ".join(f"{k} micro / macro" for k in _kinds(cv)) + " | keyword rules micro / macro |", "|---" * (3 + len(_kinds(cv))) + "|"]
    for h in HEADS:
        hd = cv["heads"][h]
        cells = [f"{hd[k]['micro_f1']:.3f} / {hd[k]['macro_f1']:.3f}" for k in _kinds(cv)]
        b = hd["keyword_baseline"]
        lines.append(f"| {h} | {hd['model']} | " + " | ".join(cells) + f" | {b['micro_f1']:.3f} / {b['macro_f1']:.3f} |")
    lines.append("")
    lines.append(f"Run score (mean macro-F1 of the chosen models over heads): **{cv['score']:.4f}**")
    for h in HEADS:
        hd = cv["heads"][h]
        chosen = hd[hd["model"]]["labels"]
        base = hd["keyword_baseline"]["labels"]
        lines += ["", f"**{h}** ({hd['model']})", "", "| label | support | precision | recall | F1 | keyword F1 |", "|---|---:|---:|---:|---:|---:|"]
        for lab, m in chosen.items():
            lines.append(f"| {lab} | {m['support']} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {base[lab]['f1']:.3f} |")
    return "\n".join(lines)


def _kinds(cv: dict) -> list[str]:
    hd = cv["heads"][HEADS[0]]
    return [k for k in hd if k not in ("model", "keyword_baseline")]


def model_card(manifest: dict) -> str:
    cv = manifest["cv"]
    td = manifest["training_data"]
    return f"""# policy-tagger {manifest['version']}

Tags clauses of Chinese industrial-policy documents with `topic`, `measure` and
`industry` (multi-label; ids in `manifest.json`, contract in `labels/guidelines.md`).

- **Input**: clause text, normalised and cut by jieba with `userdict.txt`, tokens joined by
  spaces (`tagger.features.Tokenizer`); ONNX input `{manifest['input']['name']}` (string [N, 1]).
- **Model**: word 1-2-gram + char 1-3-gram TF-IDF ({manifest['features']['n_features']} features),
  one-vs-rest classifier per head, chosen per head by grouped-CV macro-F1; per-label
  thresholds tuned on out-of-fold probabilities.
- **Training data**: {td['n_clauses']} clauses from {td['n_documents']} documents (`{td['file']}`,
  sha256 `{td['sha256'][:16]}…`).
- **Evaluation**: {cv['n_splits']}-fold cross-validation grouped by document (no document on both
  sides of a split). Thresholds are tuned on the same out-of-fold predictions, so the
  figures are slightly optimistic; the keyword baseline (the guide's typical words) is
  scored on the same folds.
- **ONNX parity**: {manifest['onnx_parity']['n']} real clauses, max |ONNX − scikit-learn| =
  {max(manifest['onnx_parity']['max_abs_diff'].values()):.1e}.
- **Created**: {manifest['created_at']}; libraries: {', '.join(f'{k} {v}' for k, v in manifest['library_versions'].items())}.

## Grouped-CV metrics

{cv_table(cv)}

## Limits

Trained on {td['n_documents']} documents (national plans, 33 pilot-zone city policies, 105 web
excerpts, 5 Zhejiang county policies). Rare labels (see supports above) have wide error
bars; document-level wording shifts (a new city's drafting style) are the main risk.
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
