"""Reading data: formats, columns, labels, splits, and the inputs that must simply work."""

from __future__ import annotations

import pandas as pd
import pytest

from headcls.options.commands import TrainConfig
from headcls.options.fields import DataConfig
from headcls.options.loading import build_config, load_yaml
from headcls.data.splits import load_splits, read_labelled
from headcls.data.tokenize import tokenize
from headcls.files.columns import label_order
from headcls.errors import HeadclsError


def frame(n: int, labels: list) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"row number {i}" for i in range(n)], "label": [labels[i % len(labels)] for i in range(n)]})


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_every_format_reads_the_same_rows(tmp_path, suffix):
    data = frame(6, ["a", "b", "c"])
    path = tmp_path / f"train{suffix}"
    if suffix == ".csv":
        data.to_csv(path, index=False)
    elif suffix == ".tsv":
        data.to_csv(path, index=False, sep="\t")
    elif suffix == ".jsonl":
        data.to_json(path, orient="records", lines=True)
    else:
        data.to_parquet(path)
    got = read_labelled(path, DataConfig())
    assert got["text"].tolist() == data["text"].tolist()
    assert got["label"].tolist() == data["label"].tolist()


def test_quoted_fields_with_newlines_and_commas(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('text,label\n"first line,\nsecond line, ""quoted""",a\nplain,b\n', encoding="utf-8")
    got = read_labelled(path, DataConfig())
    assert got["text"].tolist() == ['first line,\nsecond line, "quoted"', "plain"]


def test_several_text_columns_are_joined(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"title": ["Title"], "body": ["Body text"], "y": [3]}).to_csv(path, index=False)
    got = read_labelled(path, DataConfig(text_column=["title", "body"], label_column="y"))
    assert got["text"].tolist() == ["Title Body text"]
    assert got["label"].tolist() == ["3"]


def test_integer_labels_with_gaps_keep_numeric_order(tmp_path):
    path = tmp_path / "train.jsonl"
    pd.DataFrame({"text": [f"t{i}" for i in range(40)], "label": [[2, 10, 7, 100][i % 4] for i in range(40)]}).to_json(
        path, orient="records", lines=True
    )
    splits = load_splits(read_train=True, cfg=TrainConfig(train_file=str(path)))
    assert splits.labels == ["2", "7", "10", "100"]
    assert label_order(["1.0", "b", "a"]) == ["1.0", "a", "b"]


def test_float_labels_read_as_integers(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text,label\nx,0.0\ny,3.0\n", encoding="utf-8")
    assert read_labelled(path, DataConfig())["label"].tolist() == ["0", "3"]


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


def test_very_long_texts_are_truncated(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    path = tmp_path / "t.csv"
    pd.DataFrame({"text": ["goal " * 20_000, "market"], "label": ["a", "b"]}).to_csv(path, index=False)
    rows = read_labelled(path, DataConfig())
    assert len(rows["text"][0]) == 100_000
    dataset = tokenize(rows, AutoTokenizer.from_pretrained(tiny_model_dir), {"a": 0, "b": 1}, max_length=32)
    assert [len(x) for x in dataset["input_ids"]] == [32, 3]
    assert dataset["label"] == [0, 1]


def test_ag_news_from_a_local_folder_has_label_names(tmp_path):
    folder = tmp_path / "ag_news"
    folder.mkdir()
    frame(8, [0, 1, 2, 3]).to_csv(folder / "train.csv", index=False)
    frame(4, [3, 2, 1, 0]).to_csv(folder / "test.csv", index=False)
    splits = load_splits(read_train=True, cfg=TrainConfig(data="ag_news", data_dir=str(tmp_path), validation_fraction=0.5))
    assert splits.labels == ["World", "Sports", "Business", "Sci/Tech"]
    assert splits.test["label"].tolist() == ["Sci/Tech", "Business", "Sports", "World"]


def test_flags_override_the_config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 5\nlearning_rate: 2.0e-5\ntext_column: title\n", encoding="utf-8")
    cfg = build_config(TrainConfig, str(path), {"epochs": 1.0})
    assert cfg.epochs == 1.0 and cfg.learning_rate == 2e-5 and cfg.text_column == ["title"]


def test_shipped_configs_parse():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        cfg = build_config(TrainConfig, str(path), {})
        assert load_yaml(path)
        assert cfg.data == "ag_news"


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "export"])
def test_help_works(command, capsys):
    from headcls.cli import main

    assert main([command, "--help"]) == 0
    assert "--model" in capsys.readouterr().out
