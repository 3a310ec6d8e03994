"""Labelled data for training and evaluation (headcls.data): splits and hold-outs, data folders, AG News from a
local folder, tokenizing, long texts, and `--streaming` (a JSONL file read as a stream reaches the label space and a
model as good as the same file read whole; the stream's rules are the in-memory ones)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers import FILLER, TINY_TRAIN, assert_one_line_error, frame, run, toy_rows, write_jsonl

from headcls.cli import main
from headcls.data.splits import load_splits
from headcls.data.tokenize import tokenize
from headcls.errors import HeadclsError
from headcls.files.columns import read_labelled
from headcls.options.commands import TrainConfig
from headcls.options.fields import DataConfig

# --- splits -------------------------------------------------------------------------------------------------------

def test_validation_is_a_seeded_stratified_hold_out(tmp_path):
    path = tmp_path / "t.csv"
    # Sorted by class: the hold-out must still see every class.
    frame(100, ["a"] * 1).pipe(lambda f: pd.concat([f, frame(100, ["b"])])).to_csv(path, index=False)
    cfg = TrainConfig(train_file=str(path), validation_fraction=0.2, seed=3)
    first, again = load_splits(cfg, read_train=True), load_splits(cfg, read_train=True)
    assert len(first.train) == 160 and len(first.validation) == 40
    assert first.validation["label"].value_counts().to_dict() == {"a": 20, "b": 20}
    assert first.validation["text"].tolist() == again.validation["text"].tolist()
    other = load_splits(read_train=True, cfg=TrainConfig(train_file=str(path), validation_fraction=0.2, seed=4))
    assert other.validation["text"].tolist() != first.validation["text"].tolist()


def test_train_samples_first_n_or_stratified(tmp_path):
    path = tmp_path / "t.csv"
    pd.concat([frame(50, ["a"]), frame(50, ["b"])]).to_csv(path, index=False)
    with pytest.raises(HeadclsError, match="only one class"):
        load_splits(read_train=True, cfg=TrainConfig(train_file=str(path), train_samples=20))
    splits = load_splits(read_train=True, cfg=TrainConfig(train_file=str(path), train_samples=20, stratify=True))
    both = pd.concat([splits.train, splits.validation])
    assert len(both) == 20 and both["label"].value_counts().to_dict() == {"a": 10, "b": 10}


def test_duplicates_are_kept_and_logged(tmp_path, caplog):
    path = tmp_path / "t.csv"
    pd.concat([frame(10, ["a", "b"])] * 2).to_csv(path, index=False)
    with caplog.at_level("INFO"):
        splits = load_splits(read_train=True, cfg=TrainConfig(train_file=str(path)))
    assert len(splits.train) + len(splits.validation) == 20
    assert "10 duplicate rows" in caplog.text


def test_a_held_out_row_with_a_label_seen_nowhere_else_goes_back_to_training():
    from headcls.data.splits import _hold_out

    rows = [("a",), ("b",)] * 20 + [("a", "rare")]
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(len(rows))], "label": rows})
    for seed in range(10):
        train, validation = _hold_out(frame, 0.3, seed)
        assert ("a", "rare") in set(train["label"]) and len(train) + len(validation) == len(frame)


@pytest.mark.parametrize("train_labels, other, message", [
    ([[]] * 12, None, "no training row carries a label"),
    (["sports", "business"] * 6, [["sports"]] * 4, "holds several labels per row"),
])
def test_label_shapes_that_cannot_train_are_one_line(tiny_model_dir, tmp_path, capsys, train_labels, other, message):
    write_jsonl(pd.DataFrame({"text": ["goal team"] * len(train_labels), "label": train_labels}),
                tmp_path / "train.jsonl")
    argv = ["-q", "train", "--train-file", str(tmp_path / "train.jsonl"), "--model", str(tiny_model_dir),
            "--output", str(tmp_path / "m"), "--epochs", "1"]
    if other is not None:
        write_jsonl(pd.DataFrame({"text": ["goal"] * len(other), "label": other}), tmp_path / "val.jsonl")
        argv += ["--validation-file", str(tmp_path / "val.jsonl")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


# --- data folders and AG News -------------------------------------------------------------------------------------

def test_a_data_folder_is_read_whole_or_refused(tiny_model_dir, toy_data, tmp_path, capsys, caplog):
    from headcls.data.splits import load_splits
    from headcls.options.commands import TrainConfig

    folder = tmp_path / "data"
    folder.mkdir()
    rows = pd.read_csv(toy_data / "train.csv")
    rows.to_csv(folder / "train.csv", index=False)
    rows.head(30).to_csv(folder / "val.csv", index=False)
    (folder / "test.txt").write_text("not read\n")
    with caplog.at_level("WARNING"):
        splits = load_splits(read_train=True, cfg=TrainConfig(data=str(folder)))
    assert len(splits.validation) == 30, "val.csv is the validation split"
    assert "test.txt: not read" in caplog.text
    rows.to_json(folder / "train.jsonl", orient="records", lines=True)
    code, err = run(["train", "--data", str(folder), "--model", str(tiny_model_dir), "--output",
                     str(tmp_path / "out")], capsys)
    assert_one_line_error(code, err, "holds train.csv and train.jsonl for the train split; keep one")


def test_ag_news_from_a_local_folder_has_label_names(tmp_path):
    folder = tmp_path / "ag_news"
    folder.mkdir()
    frame(8, [0, 1, 2, 3]).to_csv(folder / "train.csv", index=False)
    frame(4, [3, 2, 1, 0]).to_csv(folder / "test.csv", index=False)
    splits = load_splits(read_train=True, cfg=TrainConfig(data="ag_news", data_dir=str(tmp_path), validation_fraction=0.5))
    assert splits.labels == ["World", "Sports", "Business", "Sci/Tech"]
    assert splits.test["label"].tolist() == ["Sci/Tech", "Business", "Sports", "World"]


# --- tokenizing ---------------------------------------------------------------------------------------------------

def test_very_long_texts_are_truncated(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    path = tmp_path / "t.csv"
    pd.DataFrame({"text": ["goal " * 20_000, "market"], "label": ["a", "b"]}).to_csv(path, index=False)
    rows = read_labelled(path, DataConfig())
    assert len(rows["text"][0]) == 100_000
    dataset = tokenize(rows, AutoTokenizer.from_pretrained(tiny_model_dir), {"a": 0, "b": 1}, max_length=32)
    assert [len(x) for x in dataset["input_ids"]] == [32, 3]
    assert dataset["label"] == [0, 1]


# --- long texts ---------------------------------------------------------------------------------------------------

def test_head_tail_keeps_the_first_and_last_tokens(trained_dir):
    from headcls.data.longtext import LongText, Pieces, encode_whole, special_layout
    from headcls.inference.classifier import Classifier

    clf = Classifier.from_pretrained(trained_dir, backend="torch", precision="fp32")
    tokenizer = clf.tokenizer
    text = " ".join(["match"] * 5 + FILLER * 3 + ["market"] * 5)
    whole = tokenizer([text])["input_ids"][0]
    pieces = Pieces(encode_whole(tokenizer, [text]), LongText(mode="head-tail", head_fraction=0.25), 18,
                    special_layout(tokenizer))
    ids = pieces.features(0)["input_ids"]
    # 16 tokens beside [CLS] and [SEP]: the first 4 of the text and its last 12.
    assert ids == whole[:1] + whole[1:5] + whole[-13:-1] + whole[-1:]
    assert pieces.features(0)["attention_mask"] == [1] * 18


# --- streaming ----------------------------------------------------------------------------------------------------

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
