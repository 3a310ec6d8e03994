"""The real default encoder on real AG News rows from ../shared/data (about a minute on 2 CPU cores)."""

from __future__ import annotations

import json

import pytest
from helpers import SHARED_DATA

from headcls.cli import main

pytestmark = pytest.mark.slow

needs_ag_news = pytest.mark.skipif(
    not (SHARED_DATA / "ag_news" / "test.csv").is_file(), reason="AG News is not at ../shared/data/ag_news"
)


@pytest.fixture(scope="module")
def real_model(tmp_path_factory):
    """The default encoder fine-tuned on 800 real AG News rows (stratified), scored on the first 400 test rows."""
    out = tmp_path_factory.mktemp("real") / "model"
    argv = [
        "-q", "train", "--data", "ag_news", "--data-dir", str(SHARED_DATA),
        "--train-samples", "800", "--stratify", "--test-samples", "400",
        "--epochs", "3", "--output", str(out),
    ]
    assert main(argv) == 0
    return out


@needs_ag_news
def test_default_encoder_learns_ag_news_well_above_chance(real_model):
    from transformers import pipeline

    out = real_model
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_examples"] == 400
    print(f"accuracy {metrics['accuracy']:.4f} on 400 held-out test rows")
    assert metrics["accuracy"] > 0.8, metrics["accuracy"]  # chance is 0.25; 0.86 measured
    assert set(metrics["per_class"]) == {"World", "Sports", "Business", "Sci/Tech"}
    classify = pipeline("text-classification", model=str(out))
    assert classify("The stock market is reaching new heights.")[0]["label"] == "Business"
    assert classify("The striker scored twice as the home team won the cup final.")[0]["label"] == "Sports"


# Neutral text about a document itself, none of AG News's four topics.
NEUTRAL = [
    "The following text has been reproduced from the archive without changes.",
    "Please keep this page for your records.",
    "Each section below is numbered for convenience.",
    "Paragraphs are separated by a blank line.",
    "The colour of the paper has faded over the years.",
    "Several pages were scanned twice and later removed.",
    "Readers are reminded that the headings are not part of the text.",
    "This copy was printed on both sides of the sheet.",
    "The index at the back lists every name in alphabetical order.",
    "Some words may have been misspelled during transcription.",
    "Corrections, if any, appear in square brackets.",
    "The margins were left wide for notes.",
    "Footnotes are gathered at the end of each chapter.",
    "Page numbers start again at one in the appendix.",
    "The font was chosen to be easy to read.",
    "No part of this note refers to the story that follows.",
]


@needs_ag_news
def test_long_documents_whose_topic_comes_after_token_512(real_model):
    """Real AG News test rows, each after more than 512 tokens of neutral text: cut at the model's length, the
    topic is never seen; head-tail and chunks read it."""
    import random

    import pandas as pd

    from headcls.inference.classifier import Classifier

    rows = pd.read_csv(SHARED_DATA / "ag_news" / "test.csv").iloc[400:]  # not the rows scored above
    rows = pd.concat([rows[rows["label"] == k].head(40) for k in range(4)])
    names = ["World", "Sports", "Business", "Sci/Tech"]
    clf = Classifier.from_pretrained(real_model)
    rng = random.Random(0)
    docs = []
    for text in rows["text"]:
        filler: list[str] = []
        while len(clf.tokenizer([" ".join(filler)], verbose=False)["input_ids"][0]) <= 520:
            filler += rng.sample(NEUTRAL, len(NEUTRAL))
        docs.append(" ".join(filler) + " " + text)
    truth = [names[k] for k in rows["label"]]
    accuracy = {}
    for mode, flags in (("truncate", {}), ("head-tail", {}), ("chunks mean", {"pooling": "mean"}),
                        ("chunks max", {"pooling": "max"})):
        reader = Classifier.from_pretrained(real_model, long_text=mode.split()[0], **flags)
        predicted = [r["label"] for r in reader.predict(docs)]
        accuracy[mode] = sum(p == t for p, t in zip(predicted, truth)) / len(truth)
    print("accuracy on 160 long documents (4 balanced classes, chance 0.25): "
          + ", ".join(f"{mode} {acc:.3f}" for mode, acc in accuracy.items()))
    # Measured (this model was trained on short texts, cut at 128 tokens): truncate 0.250, head-tail 0.688, chunks
    # mean 0.250 (the neutral windows outvote the one on topic), chunks max 0.475.
    assert accuracy["truncate"] < 0.40, accuracy  # it sees only the neutral text
    assert accuracy["head-tail"] > 0.55, accuracy
    assert accuracy["chunks max"] > 0.35, accuracy
