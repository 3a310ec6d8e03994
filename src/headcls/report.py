"""Evaluation numbers and the files that show them: metrics.json, confusion_matrix.png, predictions.csv."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


def compute_metrics(y_true: list[int], y_pred: list[int], labels: list[str]) -> dict:
    """Accuracy, macro and weighted precision / recall / F1, per-class numbers and the confusion matrix."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    ids = list(range(len(labels)))
    out: dict = {"accuracy": float(accuracy_score(y_true, y_pred))}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=ids, average=average, zero_division=0)
        out.update({f"precision_{average}": float(p), f"recall_{average}": float(r), f"f1_{average}": float(f)})
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=ids, average=None, zero_division=0)
    out["per_class"] = {
        name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, name in enumerate(labels)
    }
    matrix = confusion_matrix(y_true, y_pred, labels=ids)
    out["confusion_matrix"] = {"labels": list(labels), "matrix": matrix.tolist()}
    out["num_examples"] = len(y_true)
    return out


def compute_multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict:
    """Multi-label scores of 0/1 matrices (rows x labels): subset accuracy (every label of a row right), Hamming
    loss (the share of wrong row-label cells), micro / macro / weighted P/R/F1 and per-label P/R/F1/support."""
    from sklearn.metrics import accuracy_score, hamming_loss, precision_recall_fscore_support

    y_true, y_pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    subset = float(accuracy_score(y_true, y_pred))  # on 0/1 matrices: the rows right in every label
    out: dict = {"multi_label": True, "accuracy": subset, "subset_accuracy": subset,
                 "hamming_loss": float(hamming_loss(y_true, y_pred))}
    for average in ("micro", "macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)
        out.update({f"precision_{average}": float(p), f"recall_{average}": float(r), f"f1_{average}": float(f)})
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    out["per_class"] = {
        name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, name in enumerate(labels)
    }
    out["num_examples"] = len(y_true)
    return out


def multi_hot(rows, labels: list[str]) -> np.ndarray:
    """A 0/1 matrix (rows x labels) of label-name tuples."""
    index = {name: i for i, name in enumerate(labels)}
    out = np.zeros((len(rows), len(labels)), dtype=int)
    for r, names in enumerate(rows):
        out[r, [index[n] for n in names]] = 1
    return out


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


def classification_report_text(metrics: dict) -> str:
    lines = [f"{'':>14} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>9}"]
    for name, m in metrics["per_class"].items():
        lines.append(f"{name[:14]:>14} {m['precision']:9.4f} {m['recall']:9.4f} {m['f1']:9.4f} {m['support']:9d}")
    n = metrics["num_examples"]
    multi = metrics.get("multi_label", False)
    lines.append(f"{'subset acc' if multi else 'accuracy':>14} {'':>9} {'':>9} {metrics['accuracy']:9.4f} {n:9d}")
    if multi:
        lines.append(f"{'hamming loss':>14} {'':>9} {'':>9} {metrics['hamming_loss']:9.4f} {n:9d}")
    for avg in ("micro", "macro", "weighted") if multi else ("macro", "weighted"):
        lines.append(
            f"{avg + ' avg':>14} {metrics[f'precision_{avg}']:9.4f} {metrics[f'recall_{avg}']:9.4f} "
            f"{metrics[f'f1_{avg}']:9.4f} {n:9d}"
        )
    return "\n".join(lines)


def confident_mistakes(predictions: pd.DataFrame, k: int = 5) -> pd.DataFrame:
    wrong = predictions[predictions["label"] != predictions["predicted"]]
    return wrong.sort_values("score", ascending=False).head(k)


def baseline_scores(train: pd.DataFrame, test: pd.DataFrame, labels: list[str], seed: int) -> dict:
    """TF-IDF (word 1-2 grams) + logistic regression on the same training rows, scored on the same test rows."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    index = {name: i for i, name in enumerate(labels)}
    multi = bool(len(train)) and isinstance(train["label"].iloc[0], tuple)
    logistic = LogisticRegression(max_iter=1000, C=10.0, random_state=seed)
    if multi:  # one binary model per label; a label no training row carries is never predicted
        from sklearn.multiclass import OneVsRestClassifier

        logistic = OneVsRestClassifier(logistic)
    pipe = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True), logistic)
    if multi:
        import warnings

        with warnings.catch_warnings():  # "Label not N is present in all training examples": said above
            warnings.simplefilter("ignore", UserWarning)
            pipe.fit(train["text"], multi_hot(train["label"], labels))
        full = compute_multilabel_metrics(multi_hot(test["label"], labels), pipe.predict(test["text"]), labels)
        keys = ("accuracy", "f1_micro", "precision_macro", "recall_macro", "f1_macro", "hamming_loss",
                "num_examples")
    else:
        pipe.fit(train["text"], train["label"].map(index))
        predicted = pipe.predict(test["text"])
        full = compute_metrics(test["label"].map(index).tolist(), predicted.tolist(), labels)
        keys = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_weighted", "num_examples")
    return {"name": "tfidf+logreg", **{k: full[k] for k in keys}}


def evaluate_frame(clf, frame: pd.DataFrame, out_dir: Path, title: str = "Confusion matrix",
                   results: list[dict] | None = None) -> dict:
    """Predict `frame` (text, label) with `clf` (or take its `results`, in row order), write
    confusion_matrix.png and predictions.csv to `out_dir`, and return the metrics."""
    if results is None:
        results = clf.predict(frame["text"].tolist())
    if getattr(clf, "multi_label", False):
        return _evaluate_multilabel(clf, frame, out_dir, title, results)
    index = {name: i for i, name in enumerate(clf.labels)}
    predictions = pd.DataFrame(
        {
            "text": frame["text"].to_numpy(),
            "label": frame["label"].to_numpy(),
            "predicted": [r["label"] for r in results],
            "score": [round(r["score"], 6) for r in results],
        }
    )
    metrics = compute_metrics(
        [index[n] for n in predictions["label"]], [index[n] for n in predictions["predicted"]], clf.labels
    )
    return _write_files(metrics, predictions, out_dir, plot_confusion_matrix, "confusion_matrix.png", title)


def _write_files(metrics: dict, predictions: pd.DataFrame, out_dir: Path, plot, picture: str, title: str) -> dict:
    """predictions.csv and the picture into `out_dir`; the metrics, with the predictions for the summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    predictions.to_csv(out_dir / "predictions.csv", index=False)
    try:
        plot(metrics, out_dir / picture, title)
    except Exception as e:  # noqa: BLE001  a picture is never worth the model or the metrics
        (out_dir / picture).unlink(missing_ok=True)
        logger.warning("%s not drawn (%s: %s); metrics.json holds the numbers", picture, type(e).__name__, e)
    metrics["_predictions"] = predictions
    return metrics


def _evaluate_multilabel(clf, frame: pd.DataFrame, out_dir: Path, title: str, results: list[dict]) -> dict:
    """evaluate_frame for a multi-label model: per_label.png instead of a confusion matrix; predictions.csv holds
    the true and the predicted labels as JSON lists, with the predicted labels' scores."""
    predicted = [r["labels"] for r in results]
    metrics = compute_multilabel_metrics(multi_hot(frame["label"], clf.labels), multi_hot(predicted, clf.labels),
                                         clf.labels)
    metrics["thresholds"] = dict(zip(clf.labels, map(float, clf.thresholds)))
    predictions = pd.DataFrame({
        "text": frame["text"].to_numpy(),
        "label": [json.dumps(list(n), ensure_ascii=False) for n in frame["label"]],
        "predicted": [json.dumps(p, ensure_ascii=False) for p in predicted],
        "scores": [json.dumps([round(x, 6) for x in r["scores"]]) for r in results],
    })
    return _write_files(metrics, predictions, out_dir, plot_per_label, "per_label.png", title)


def write_metrics(metrics: dict, path: Path) -> None:
    clean = {k: v for k, v in metrics.items() if not k.startswith("_")}
    path.write_text(json.dumps(clean, indent=2) + "\n", encoding="utf-8")


def print_summary(metrics: dict, echo=print) -> None:
    """The classification report, the baseline beside the model, and the most confident mistakes."""
    echo(classification_report_text(metrics))
    base = metrics.get("baseline")
    if base and metrics.get("multi_label"):
        echo(
            f"\nmodel    micro-F1 {metrics['f1_micro']:.4f}  macro-F1 {metrics['f1_macro']:.4f}  subset accuracy "
            f"{metrics['accuracy']:.4f}\nbaseline micro-F1 {base['f1_micro']:.4f}  macro-F1 {base['f1_macro']:.4f}  "
            f"subset accuracy {base['accuracy']:.4f}  ({base['name']}, same rows)"
        )
    elif base:
        echo(
            f"\nmodel    accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['f1_macro']:.4f}\n"
            f"baseline accuracy {base['accuracy']:.4f}  macro-F1 {base['f1_macro']:.4f}  ({base['name']}, same rows)"
        )
    if metrics.get("multi_label"):
        return
    mistakes = confident_mistakes(metrics["_predictions"])
    if len(mistakes):
        echo("\nMost confident mistakes:")
        for _, row in mistakes.iterrows():
            text = row["text"] if len(row["text"]) <= 100 else row["text"][:97] + "..."
            echo(f"  {row['score']:.3f} predicted {row['predicted']!r}, true {row['label']!r}: {text}")
