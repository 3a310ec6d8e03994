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
        "--train-samples", "640", "--stratify", "--test-samples", "400",
        "--epochs", "2", "--output", str(out),
    ]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_examples"] == 400
    assert metrics["accuracy"] > 0.7, metrics["accuracy"]  # chance is 0.25
    assert set(metrics["per_class"]) == {"World", "Sports", "Business", "Sci/Tech"}
    classify = pipeline("text-classification", model=str(out))
    assert classify("The stock market is reaching new heights.")[0]["label"] in {"Business", "Sci/Tech", "World", "Sports"}
