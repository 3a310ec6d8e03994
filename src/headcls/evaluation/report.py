"""A report folder: predictions.csv, the picture, metrics.json, and the summary printed."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from headcls.evaluation.metrics import compute_metrics, compute_multilabel_metrics, multi_hot
from headcls.evaluation.plots import plot_confusion_matrix, plot_per_label

logger = logging.getLogger(__name__)


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


def evaluate_frame(clf, frame: pd.DataFrame, out_dir: Path, title: str = "Confusion matrix",
                   results: list[dict] | None = None) -> tuple[dict, pd.DataFrame]:
    """Predict `frame` (text, label) with `clf` (or take its `results`, in row order), write
    confusion_matrix.png and predictions.csv to `out_dir`, and return the metrics and the predictions."""
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


def _write_files(metrics: dict, predictions: pd.DataFrame, out_dir: Path, plot, picture: str,
                 title: str) -> tuple[dict, pd.DataFrame]:
    """predictions.csv and the picture into `out_dir`; the metrics and the predictions (for the summary)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    predictions.to_csv(out_dir / "predictions.csv", index=False)
    try:
        plot(metrics, out_dir / picture, title)
    except Exception as e:  # noqa: BLE001  a picture is never worth the model or the metrics
        (out_dir / picture).unlink(missing_ok=True)
        logger.warning("%s not drawn (%s: %s); metrics.json holds the numbers", picture, type(e).__name__, e)
    return metrics, predictions


def _evaluate_multilabel(clf, frame: pd.DataFrame, out_dir: Path, title: str,
                         results: list[dict]) -> tuple[dict, pd.DataFrame]:
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
    path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")


def print_summary(metrics: dict, predictions: pd.DataFrame, echo=print) -> None:
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
    mistakes = confident_mistakes(predictions)
    if len(mistakes):
        echo("\nMost confident mistakes:")
        for _, row in mistakes.iterrows():
            text = row["text"] if len(row["text"]) <= 100 else row["text"][:97] + "..."
            echo(f"  {row['score']:.3f} predicted {row['predicted']!r}, true {row['label']!r}: {text}")
