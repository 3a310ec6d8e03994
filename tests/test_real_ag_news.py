"""The real default encoder on real AG News rows from ../shared/data (about a minute on 2 CPU cores)."""

from __future__ import annotations

import json

import pytest
from conftest import SHARED_DATA

from headcls.cli import main

pytestmark = pytest.mark.slow

needs_ag_news = pytest.mark.skipif(
    not (SHARED_DATA / "ag_news" / "test.csv").is_file(), reason="AG News is not at ../shared/data/ag_news"
)


@needs_ag_news
def test_default_encoder_learns_ag_news_well_above_chance(tmp_path):
    from transformers import pipeline

    out = tmp_path / "model"
    argv = [
        "-q", "train", "--data", "ag_news", "--data-dir", str(SHARED_DATA),
        "--train-samples", "800", "--stratify", "--test-samples", "400",
        "--epochs", "3", "--output", str(out),
    ]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_examples"] == 400
    print(f"accuracy {metrics['accuracy']:.4f} on 400 held-out test rows")
    assert metrics["accuracy"] > 0.8, metrics["accuracy"]  # chance is 0.25; 0.86 measured
    assert set(metrics["per_class"]) == {"World", "Sports", "Business", "Sci/Tech"}
    classify = pipeline("text-classification", model=str(out))
    assert classify("The stock market is reaching new heights.")[0]["label"] == "Business"
    assert classify("The striker scored twice as the home team won the cup final.")[0]["label"] == "Sports"
