"""Evaluation numbers: single- and multi-label metrics, and per-label thresholds tuned on them."""

from __future__ import annotations

import numpy as np


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


def tune_thresholds(scores: np.ndarray, truth: np.ndarray) -> list[float]:
    """Per label, the threshold on its score with the best F1 over the rows given (validation), among 0.05,
    0.10, ..., 0.95; ties go to the one nearest 0.5, and a label no row carries keeps 0.5."""
    from sklearn.metrics import f1_score

    grid = np.round(np.arange(0.05, 0.951, 0.05), 2)
    out = []
    for j in range(truth.shape[1]):
        if truth[:, j].sum() == 0:
            out.append(0.5)
            continue
        f1 = [f1_score(truth[:, j], scores[:, j] >= t, zero_division=0) for t in grid]
        best = max(range(len(grid)), key=lambda i: (round(f1[i], 12), -abs(grid[i] - 0.5)))
        out.append(float(grid[best]))
    return out
