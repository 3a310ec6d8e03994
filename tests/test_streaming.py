"""`headcls train --streaming`: a JSONL training file read as a stream reaches the label space and a model as good as
the same file read whole; the stream's rules are the in-memory ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_TRAIN, toy_rows

from headcls.cli import main


@pytest.fixture(scope="module")
def jsonl_corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("stream-data")
    toy_rows(240, seed=1).to_json(folder / "train.jsonl", orient="records", lines=True)
    toy_rows(30, seed=3).to_csv(folder / "validation.csv", index=False)
    toy_rows(60, seed=2).to_csv(folder / "test.csv", index=False)
    return folder


def train(folder: Path, model: Path, out: Path, *extra: str) -> int:
    return main(["-q", "train", "--data", str(folder), "--model", str(model), "--output", str(out), *TINY_TRAIN,
                 "--no-baseline", *extra])


def test_a_streamed_jsonl_file_trains_a_working_model(jsonl_corpus, tiny_model_dir, tmp_path):
    assert train(jsonl_corpus, tiny_model_dir, tmp_path / "whole") == 0
    assert train(jsonl_corpus, tiny_model_dir, tmp_path / "stream", "--streaming") == 0
    whole, stream = (json.loads((tmp_path / name / "config.json").read_text()) for name in ("whole", "stream"))
    assert stream["id2label"] == whole["id2label"] == {"0": "business", "1": "science", "2": "sports"}
    metrics = json.loads((tmp_path / "stream" / "metrics.json").read_text())
    assert metrics["train_rows"] == 240 and metrics["schedule"]["steps"] == 20 * 15  # 240 rows / 16 = 15 steps a pass
    assert metrics["accuracy"] >= 0.9, metrics["accuracy"]  # the keywords are learnt, as from the file read whole


def test_a_url_is_streamed_through_datasets_and_fsspec(jsonl_corpus, tiny_model_dir, tmp_path):
    """A file:// URL takes the path an s3:// or https:// one takes (datasets streaming over fsspec)."""
    out = tmp_path / "model"
    assert main(["-q", "train", "--train-file", (jsonl_corpus / "train.jsonl").as_uri(), "--validation-file",
                 str(jsonl_corpus / "validation.csv"), "--test-file", str(jsonl_corpus / "test.csv"), "--model",
                 str(tiny_model_dir), "--output", str(out), *TINY_TRAIN, "--streaming"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_rows"] == 240 and metrics["accuracy"] >= 0.9, metrics["accuracy"]


def test_declared_labels_and_max_steps_skip_the_counting_pass(jsonl_corpus, tiny_model_dir, tmp_path):
    out = tmp_path / "model"
    assert train(jsonl_corpus, tiny_model_dir, out, "--streaming", "--labels", "sports", "business", "science",
                 "--max-steps", "150") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["schedule"]["steps"] == 150 and metrics["train_rows"] is None
    assert json.loads((out / "config.json").read_text())["label2id"] == {"sports": 0, "business": 1, "science": 2}
    assert metrics["accuracy"] >= 0.9, metrics["accuracy"]


@pytest.mark.parametrize("extra, expected", [
    (["--labels", "a", "b"], "--labels declares the label space of --streaming"),
    (["--streaming", "--labels", "sports", "business", "science"], "--streaming with --labels needs --max-steps N"),
    (["--streaming", "--train-samples", "10"], "--train-samples takes rows of a table read whole"),
    (["--streaming", "--labels", "sports", "business", "--max-steps", "5"],
     "label 'science' is not among the labels of --labels"),
])
def test_stream_mistakes_are_one_line(extra, expected, jsonl_corpus, tiny_model_dir, tmp_path, capsys):
    assert train(jsonl_corpus, tiny_model_dir, tmp_path / "out", *extra) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_a_stream_needs_a_validation_file(jsonl_corpus, tiny_model_dir, tmp_path, capsys):
    code = main(["-q", "train", "--train-file", str(jsonl_corpus / "train.jsonl"), "--model", str(tiny_model_dir),
                 "--output", str(tmp_path / "out"), "--streaming"])
    assert code == 2 and "--streaming needs a validation file" in capsys.readouterr().err


def test_a_row_whose_label_was_not_declared_is_refused_with_its_number(jsonl_corpus, tiny_model_dir, tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    rows = toy_rows(60, seed=4)
    rows.loc[40, "label"] = "weather"
    rows.to_json(folder / "train.jsonl", orient="records", lines=True)
    for name in ("validation.csv", "test.csv"):
        (folder / name).write_text((jsonl_corpus / name).read_text())
    assert train(folder, tiny_model_dir, tmp_path / "out", "--streaming", "--labels", "sports", "business",
                 "science", "--max-steps", "50") == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the encoder's loading bar: found while training
    assert last.startswith("headcls: error: ") and "train.jsonl: row 41 has label 'weather', which is not in " \
        "--labels" in last, last
