"""Scoring a model (headcls.evaluation): metrics (single- and multi-label, against hand-computed values, tuned
thresholds), plots bounded for any label count, the report folder written whole or not at all (and never at the
cost of a trained model), the TF-IDF baseline beside it, and `headcls evaluate`.

A test whose docstring starts "Was:" pins down a case a new user hit (the hardening issue), and failed on the code
before its fix; tests/test_fuzz.py checks the rules behind them for every flag and many inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import TINY_TRAIN, assert_one_line_error, run, snapshot, write

from headcls.cli import main

# --- metrics ------------------------------------------------------------------------------------------------------

def test_multi_label_metrics_against_hand_computed_values():
    from headcls.evaluation.metrics import compute_multilabel_metrics

    truth = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    guess = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 0, 0]])
    m = compute_multilabel_metrics(truth, guess, ["a", "b", "c"])
    # Rows right in every label: rows 2 and 4 of 4. Wrong cells: (1,c), (3,b), (3,c): 3 of 12.
    assert m["subset_accuracy"] == m["accuracy"] == 0.5
    assert m["hamming_loss"] == 3 / 12
    # a: tp 2, fp 0, fn 0 -> P 1, R 1; b: tp 1, fp 0, fn 1 -> P 1, R 1/2, F1 2/3; c: tp 0, fp 1, fn 1 -> 0.
    assert m["per_class"]["a"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert m["per_class"]["b"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    # micro: tp 3, fp 1, fn 2 -> P 3/4, R 3/5, F1 2PR/(P+R) = 2/3; macro F1: (1 + 2/3 + 0) / 3.
    assert m["precision_micro"] == 0.75 and m["recall_micro"] == 0.6
    assert m["f1_micro"] == pytest.approx(2 / 3)
    assert m["f1_macro"] == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_tuned_thresholds_beat_half_where_the_scores_are_low():
    from headcls.evaluation.metrics import compute_multilabel_metrics, tune_thresholds

    rng = np.random.default_rng(0)
    truth = (rng.random((200, 2)) < 0.4).astype(int)
    # Label 0: positives score 0.30-0.45, negatives 0.00-0.20 (ranked perfectly, all under 0.5);
    # label 1: well calibrated around 0.5.
    scores = np.where(truth == 1, rng.uniform(0.30, 0.45, truth.shape), rng.uniform(0.0, 0.20, truth.shape))
    scores[:, 1] = np.where(truth[:, 1] == 1, rng.uniform(0.6, 1.0, 200), rng.uniform(0.0, 0.4, 200))
    tuned = tune_thresholds(scores, truth)
    assert 0.20 < tuned[0] <= 0.30 and 0.4 <= tuned[1] <= 0.6
    at_half = compute_multilabel_metrics(truth, (scores >= 0.5).astype(int), ["a", "b"])
    at_tuned = compute_multilabel_metrics(truth, (scores >= np.array(tuned)).astype(int), ["a", "b"])
    assert at_half["per_class"]["a"]["f1"] == 0.0 and at_tuned["per_class"]["a"]["f1"] == 1.0
    assert at_tuned["f1_macro"] > at_half["f1_macro"] + 0.4
    # A label no validation row carries keeps 0.5.
    assert tune_thresholds(scores, np.zeros_like(truth)) == [0.5, 0.5]


# --- plots: bounded for any label count ------------------------------------------------------------------------

def test_confusion_matrix_for_hundreds_of_labels_is_bounded(tmp_path):
    """Was: the plot for hundreds of labels ran out of memory after training, losing the model."""
    from PIL import Image

    from headcls.evaluation.metrics import compute_metrics
    from headcls.evaluation.plots import plot_confusion_matrix

    labels = [f"label number {i}" for i in range(600)]
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 600, 20_000)
    predicted = np.where(rng.random(20_000) < 0.8, truth, rng.integers(0, 600, 20_000))
    predicted[truth == 7] = 8  # the most confused pair must be drawn
    metrics = compute_metrics(truth.tolist(), predicted.tolist(), labels)
    plot_confusion_matrix(metrics, tmp_path / "cm.png", "test split")
    with Image.open(tmp_path / "cm.png") as image:
        width, height = image.size
    assert width * height < 6000 * 3000, (width, height)  # the same bound as a 30-label picture
    from headcls.evaluation.plots import MAX_PLOTTED_LABELS, plotted_labels

    drawn = plotted_labels(labels, np.array(metrics["confusion_matrix"]["matrix"]))
    assert len(drawn) == MAX_PLOTTED_LABELS and {7, 8} <= set(drawn)


def test_a_per_label_picture_of_thousands_of_labels_draws_the_most_frequent(tmp_path):
    from PIL import Image

    from headcls.evaluation.plots import MAX_BARRED_LABELS, plot_per_label

    per = {f"label {i}": {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": i % 97} for i in range(3000)}
    plot_per_label({"per_class": per, "f1_micro": 0.5, "f1_macro": 0.5}, tmp_path / "per_label.png")
    with Image.open(tmp_path / "per_label.png") as image:
        width, height = image.size
    assert height <= (0.45 * MAX_BARRED_LABELS + 1.5) * 120 + 1, (width, height)  # 60 labels' bars, not 3,000


def test_a_failed_plot_never_costs_the_trained_model(tiny_model_dir, toy_data, tmp_path, capsys, monkeypatch):
    import headcls.evaluation.report

    def out_of_memory(*args, **kwargs):
        raise MemoryError("cannot allocate the picture")

    monkeypatch.setattr(headcls.evaluation.report, "plot_confusion_matrix", out_of_memory)
    out = tmp_path / "model"
    assert main(["-q", "train", "--data", str(toy_data), "--model", str(tiny_model_dir), "--output", str(out),
                 "--no-baseline", *TINY_TRAIN, "--epochs", "2"]) == 0
    assert "confusion_matrix.png not drawn (MemoryError: cannot allocate the picture)" in capsys.readouterr().err
    assert (out / "model.safetensors").is_file() and (out / "metrics.json").is_file()
    assert not (out / "confusion_matrix.png").exists()
    assert json.loads((out / "metrics.json").read_text())["confusion_matrix"]["labels"] == [
        "business", "science", "sports"]


# --- the report: metrics.json, predictions.csv, the baseline ---------------------------------------------------

def test_metrics_json_has_the_report_fields(trained_dir):
    metrics = json.loads((trained_dir / "metrics.json").read_text())
    for key in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted",
                "recall_weighted", "f1_weighted", "num_examples", "train_seconds", "train_samples_per_second"):
        assert isinstance(metrics[key], (int, float)), key
    assert metrics["num_examples"] == 60
    assert set(metrics["per_class"]) == {"business", "science", "sports"}
    assert metrics["per_class"]["sports"]["support"] == 20
    cm = metrics["confusion_matrix"]
    assert cm["labels"] == ["business", "science", "sports"]
    assert sum(map(sum, cm["matrix"])) == 60
    assert metrics["accuracy"] > 0.8, "the keyword task is easy: the tiny model must learn it"
    assert metrics["baseline"]["name"] == "tfidf+logreg" and metrics["baseline"]["num_examples"] == 60
    assert len(metrics["validation"]) == 12, "one validation entry per epoch"
    predictions = pd.read_csv(trained_dir / "predictions.csv")
    assert list(predictions.columns) == ["text", "label", "predicted", "score"]
    assert len(predictions) == 60
    assert (predictions["label"] == predictions["predicted"]).mean() == pytest.approx(metrics["accuracy"])


# --- headcls evaluate -------------------------------------------------------------------------------------------

def test_evaluate_cli_writes_the_report(trained_dir, toy_data, tmp_path):
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(trained_dir), "--test-file", str(toy_data / "test.csv"),
                 "--output", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    trained = json.loads((trained_dir / "metrics.json").read_text())
    assert metrics["num_examples"] == 60
    assert metrics["accuracy"] == pytest.approx(trained["accuracy"])
    assert (out / "confusion_matrix.png").stat().st_size > 1000
    assert (out / "predictions.csv").is_file()


def test_evaluate_writes_its_report_whole_or_not_at_all(trained_dir, toy_data, tmp_path, capsys, monkeypatch):
    """Was: a failed evaluate left predictions.csv new and metrics.json stale in the same folder."""
    import headcls.evaluation.command

    out = tmp_path / "eval"
    argv = ["evaluate", "--model", str(trained_dir), "--test-file", str(toy_data / "test.csv"), "--output", str(out)]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C (or SIGTERM) after the predictions were written, before the metrics

    with monkeypatch.context() as patch:
        patch.setattr(headcls.evaluation.command, "write_metrics", interrupted)
        assert main(argv) == 130
    assert not out.exists(), "a report cut short leaves no folder (no predictions.csv without metrics.json)"
    assert main(argv) == 0
    before = snapshot(out)
    code, err = run(argv, capsys)
    assert_one_line_error(code, err, f"--output {out}: already holds files; pass --overwrite to replace them")
    monkeypatch.setattr(headcls.evaluation.command, "write_metrics", interrupted)
    other = write(tmp_path, "other.csv", "text,label\ngoal goal,sports\nbank bank,business\n")
    argv = ["evaluate", "--model", str(trained_dir), "--test-file", other, "--output", str(out), "--overwrite"]
    assert main(argv) == 130
    assert snapshot(out) == before, "the previous report is untouched"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval", "other.csv"], "no staging or lock left"


def test_evaluate_default_output_never_holds_the_input(trained_dir, tmp_path, capsys):
    """The default report folder (MODEL/eval-test) is checked like a given --output: it must not hold the input."""
    model = tmp_path / "model"
    shutil.copytree(trained_dir, model)
    (model / "eval-test").mkdir()
    mine = write(model / "eval-test", "mine.csv", "text,label\ngoal goal,sports\n")
    code, err = run(["evaluate", "--model", str(model), "--test-file", mine, "--overwrite"], capsys)
    assert_one_line_error(code, err, f"--output {model / 'eval-test'} holds the input --test-file {mine}")
    assert Path(mine).is_file()


def test_evaluate_label_unknown_to_model(tmp_path, trained_dir, capsys):
    test = write(tmp_path, "test.csv", "text,label\ngoal,sports\nelection,politics\n")
    code, err = run(["evaluate", "--model", str(trained_dir), "--test-file", test, "--output", str(tmp_path / "e")],
                    capsys)
    assert_one_line_error(code, err, "test.csv: label 'politics' is not one the model knows; its labels are:")
    assert not (tmp_path / "e").exists()


def test_evaluate_without_labelled_data(tmp_path, trained_dir, capsys):
    code, err = run(["evaluate", "--model", str(trained_dir)], capsys)
    assert_one_line_error(code, err, "no data to evaluate: pass --test-file FILE, --data FOLDER or --data ag_news")
    test = write(tmp_path, "test.csv", "text\nno labels here\n")
    code, err = run(["evaluate", "--model", str(trained_dir), "--test-file", test], capsys)
    assert_one_line_error(code, err, "test.csv: missing label column 'label'; columns found: 'text'")
