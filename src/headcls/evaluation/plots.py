"""The pictures of a report: the confusion matrix (single-label) and per-label bars (multi-label)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_BARRED_LABELS = 60  # a bar picture's height grows with its labels: beyond this, the most frequent are drawn


def plot_per_label(metrics: dict, path: Path, title: str = "Per-label results") -> None:
    """Precision, recall and F1 of every label as bars, its support in the label's name (multi-label). With more
    than MAX_BARRED_LABELS labels only the most frequent are drawn (the title says so); metrics.json has all."""
    from matplotlib.figure import Figure

    every = metrics["per_class"]
    drawn = sorted(sorted(every, key=lambda name: -every[name]["support"])[:MAX_BARRED_LABELS], key=list(every).index)
    per = {name: every[name] for name in drawn}
    if len(per) < len(every):
        title += f" (the {len(per)} most frequent of {len(every)} labels)"
    names = [f"{name[:30]} ({m['support']})" for name, m in per.items()]
    fig = Figure(figsize=(8, max(2.5, 0.45 * len(names) + 1.5)), constrained_layout=True)
    ax = fig.subplots()
    y = np.arange(len(names))
    for k, (key, offset) in enumerate((("precision", -0.27), ("recall", 0.0), ("f1", 0.27))):
        ax.barh(y + offset, [m[key] for m in per.values()], height=0.26, label=key, color=f"C{k}")
    ax.set(yticks=y, yticklabels=names, xlim=(0, 1), xlabel="score",
           title=f"{title}: micro-F1 {metrics['f1_micro']:.3f}, macro-F1 {metrics['f1_macro']:.3f}")
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path, dpi=120)


MAX_PLOTTED_LABELS = 30  # beyond this a matrix picture is unreadable, and its memory grows with the square


def plotted_labels(labels: list[str], counts: np.ndarray, limit: int = MAX_PLOTTED_LABELS) -> list[int]:
    """Indices of the labels to draw: all of them up to `limit`, else the `limit` most confused (most mistakes
    as the true or the predicted label; then most rows), in label order."""
    if len(labels) <= limit:
        return list(range(len(labels)))
    mistakes = counts.sum(axis=0) + counts.sum(axis=1) - 2 * np.diag(counts)
    support = counts.sum(axis=1)
    ranked = sorted(range(len(labels)), key=lambda i: (-mistakes[i], -support[i], i))
    return sorted(ranked[:limit])


def plot_confusion_matrix(metrics: dict, path: Path, title: str = "Confusion matrix") -> None:
    """Counts beside the row-normalised view (recall per true class), label names on both axes. With more than
    MAX_PLOTTED_LABELS labels only the most confused are drawn (the title says so): the picture stays readable
    and its size bounded; metrics.json keeps the whole matrix."""
    from matplotlib.artist import setp
    from matplotlib.figure import Figure  # no pyplot: no global backend switch or figure registry

    all_labels = metrics["confusion_matrix"]["labels"]
    all_counts = np.array(metrics["confusion_matrix"]["matrix"])
    keep = plotted_labels(all_labels, all_counts)
    labels = [all_labels[i] for i in keep]
    counts = all_counts[np.ix_(keep, keep)]
    note = f", the {len(keep)} most confused of {len(all_labels)} labels" if len(keep) < len(all_labels) else ""
    rows = all_counts[keep].sum(axis=1, keepdims=True)  # recall over all predictions, drawn or not
    normalised = np.divide(counts, rows, out=np.zeros_like(counts, dtype=float), where=rows > 0)
    size = max(4.0, 0.6 * len(labels) + 2.5)
    fig = Figure(figsize=(2 * size + 1, size), constrained_layout=True)
    axes = fig.subplots(1, 2)
    for ax, values, name, fmt in ((axes[0], counts, "counts", "d"), (axes[1], normalised, "row-normalised", ".2f")):
        image = ax.imshow(values, cmap="Blues")
        fig.colorbar(image, ax=ax, shrink=0.8)
        ax.set(
            xticks=range(len(labels)),
            yticks=range(len(labels)),
            xticklabels=[name[:30] for name in labels],
            yticklabels=[name[:30] for name in labels],
            xlabel="Predicted label",
            ylabel="True label",
            title=f"{title} ({name}{note})",
        )
        setp(ax.get_xticklabels(), rotation=45, ha="right")
        threshold = values.max() / 2 if values.size else 0
        for i in range(len(labels)):
            for j in range(len(labels)):
                color = "white" if values[i, j] > threshold else "black"
                ax.text(j, i, format(values[i, j], fmt), ha="center", va="center", color=color, fontsize=8)
    fig.savefig(path, dpi=120)
