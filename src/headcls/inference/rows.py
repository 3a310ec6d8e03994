"""Results as rows: the one place that turns a prediction into the columns of CSV, JSONL, Ray shards and HTTP.

A `Classifier.predict` result is `{"label", "score"}` (multi-label: `{"labels", "scores"}`, the labels at or above
their thresholds, best first), with `top_k` (the K best labels with their scores) when K > 1.
"""

from __future__ import annotations

import json


def prediction_names(top_k: int, multi_label: bool = False) -> list[str]:
    """The columns predictions add, named as in predict's CSV output (multi-label: `labels` and `scores`, lists)."""
    names = ["labels", "scores"] if multi_label else ["label", "score"]
    for k in range(1, top_k + 1 if top_k > 1 else 1):
        names += [f"label_{k}", f"score_{k}"]
    return names


def as_columns(result: dict, top_k: int) -> dict:
    """A result as the columns of `prediction_names`, values as they are (Ray shards)."""
    row = trimmed(result, 1)
    for k, item in enumerate(result.get("top_k", [])[:top_k] if top_k > 1 else [], start=1):
        row[f"label_{k}"], row[f"score_{k}"] = item["label"], item["score"]
    return row


def as_csv_cells(result: dict, top_k: int) -> list[str]:
    """A result as the cells of predict's CSV after the text: scores with 6 decimals, a multi-label model's labels
    and scores as JSON lists."""
    cells = []
    for name, value in as_columns(result, top_k).items():
        if name == "labels":
            cells.append(json.dumps(value, ensure_ascii=False))
        elif name == "scores":
            cells.append(json.dumps([round(x, 6) for x in value]))
        else:
            cells.append(f"{value:.6f}" if name.startswith("score") else value)
    return cells


def trimmed(result: dict, top_k: int) -> dict:
    """A result with at most `top_k` best labels (the JSON of predict and the server): its label and score (or
    labels and scores) alone when `top_k` is 1."""
    if top_k <= 1:
        keys = ("labels", "scores") if "labels" in result else ("label", "score")
        return {key: result[key] for key in keys}
    return {**result, "top_k": result["top_k"][:top_k]}


def chosen(result: dict) -> str | frozenset[str]:
    """What a result decides: its label, or a multi-label model's set of labels."""
    return frozenset(result["labels"]) if "labels" in result else result["label"]
