"""The options of every command (headcls.options): one schema per command, every number checked before any work,
YAML config files, paths, and the wording of their errors.

A test whose docstring starts "Was:" pins down a case a new user hit (the hardening issue), and failed on the code
before its fix; tests/test_fuzz.py checks the rules behind them for every flag and many inputs."""

from __future__ import annotations

import typing

import pytest
from helpers import assert_one_line_error, run, write

from headcls.cli import main
from headcls.options.commands import COMMAND_CONFIGS, TrainConfig
from headcls.options.fields import base_type as _base_type
from headcls.options.loading import build_config, load_yaml

# --- numbers: every option checked once, in its schema ----------------------------------------------------------

@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_negative_batch_size_is_refused_not_run(command, trained_dir, toy_data, tmp_path, capsys):
    """Was: predict --batch-size -1 returned unfilled memory as predictions; evaluate wrote accuracy 0.5."""
    args = ["x"]
    if command == "evaluate":
        args = ["--test-file", str(toy_data / "test.csv"), "--output", str(tmp_path / "e")]
    code, err = run([command, "--model", str(trained_dir), "--batch-size", "-1", *args], capsys)
    assert_one_line_error(code, err, "--batch-size must be at least 1, got -1")
    assert not (tmp_path / "e").exists()


def numeric_options() -> list[tuple[str, str]]:
    """(command, flag) for every number of every command, read from the schemas."""
    return [
        (command, "--" + name.replace("_", "-"))
        for command, schema in COMMAND_CONFIGS.items()
        for name, field in schema.model_fields.items()
        if _base_type(field.annotation) in (int, float)
    ]


NUMERIC = numeric_options()


@pytest.mark.parametrize("command, flag", NUMERIC, ids=[f"{c}{f}" for c, f in NUMERIC])
@pytest.mark.parametrize("value", ["nan", "inf", "-1", "1e999", "ten"])
def test_every_number_of_every_command_is_checked_before_work(command, flag, value, trained_dir, tmp_path, capsys):
    """Was: zero, negative, NaN or infinite values of most flags ended in a traceback (exit 1) or ran."""
    required = {
        "train": ["--train-file", str(tmp_path / "nowhere.csv"), "--output", str(tmp_path / "out")],
        "evaluate": ["--model", str(trained_dir), "--test-file", str(tmp_path / "nowhere.csv")],
        "predict": ["--model", str(trained_dir), "text"],
        "export": ["--model", str(trained_dir), "--output", str(tmp_path / "out")],
        "serve": ["--model", str(tmp_path / "nowhere")],  # were a number let through, loading fails: no server runs
    }[command]
    code, err = run([command, *required, flag, value], capsys)
    assert code == 2, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith(f"headcls: error: {flag} "), err  # named first: checked before any file is read
    assert not (tmp_path / "out").exists()


def zero_refused() -> list[tuple[str, str]]:
    """(command, flag) for every number whose schema refuses 0 (counts from 1, rates above 0, ...)."""
    from pydantic import TypeAdapter, ValidationError

    out = []
    for command, flag in NUMERIC:
        field = COMMAND_CONFIGS[command].model_fields[flag[2:].replace("-", "_")]
        try:
            annotation = typing.Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
            TypeAdapter(annotation).validate_python(0)
        except ValidationError:
            out.append((command, flag))
    return out


ZERO_REFUSED = zero_refused()


@pytest.mark.parametrize("command, flag", ZERO_REFUSED, ids=[f"{c}{f}" for c, f in ZERO_REFUSED])
def test_zero_is_refused_where_the_schema_needs_more(command, flag, trained_dir, toy_data, tmp_path, capsys):
    """Was: `predict --batch-size 0` and other zeros ended in a traceback. Real inputs here, so that a zero let
    through would run."""
    required = {
        "train": ["--data", str(toy_data), "--model", str(trained_dir.parent / "nowhere"), "--output",
                  str(tmp_path / "out")],
        "evaluate": ["--model", str(trained_dir), "--test-file", str(toy_data / "test.csv"), "--output",
                     str(tmp_path / "out")],
        "predict": ["--model", str(trained_dir), "text"],
        "export": ["--model", str(trained_dir), "--output", str(tmp_path / "out")],
        "serve": ["--model", str(tmp_path / "nowhere")],
    }[command]
    code, err = run([command, *required, flag, "0"], capsys)
    assert code == 2 and err.startswith(f"headcls: error: {flag} ") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_learning_rate_inf_is_refused(tiny_model_dir, toy_data, tmp_path, capsys):
    """Was: --learning-rate inf saved a NaN model with exit 0."""
    out = tmp_path / "out"
    code, err = run(["train", "--data", str(toy_data), "--model", str(tiny_model_dir), "--output", str(out),
                     "--learning-rate", "inf"], capsys)
    assert_one_line_error(code, err, "--learning-rate must be a finite number, got inf")
    assert not out.exists()


@pytest.mark.parametrize("flag", [["--layer-lr-decay", "0"], ["--layer-lr-decay", "1.5"],
                                  ["--label-smoothing", "1"], ["--head-learning-rate", "-1"]])
def test_recipe_options_out_of_range_are_one_line_and_exit_2(flag, toy_data, tmp_path, capsys):
    assert main(["-q", "train", "--data", str(toy_data), "--output", str(tmp_path / "m"), *flag]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag[0] in err


@pytest.mark.parametrize("argv, message", [
    (["--tune-thresholds"], "one per row"),
    (["--stride", "8"], "--stride is an option of --long-text chunks"),
    (["--long-text", "chunks", "--head-fraction", "0.5"], "--head-fraction is an option of --long-text head-tail"),
    (["--long-text", "chunks", "--stride", "200"], "--stride 200 must be below the window"),
    (["--long-text", "sliding"], "--long-text must be one of truncate, head-tail, chunks"),
    (["--class-weights", "missing.yaml"], "missing.yaml"),
])
def test_label_shape_options_are_checked(tiny_model_dir, toy_data, tmp_path, capsys, argv, message):
    code = main(["-q", "train", "--data", str(toy_data), "--model", str(tiny_model_dir), "--output",
                 str(tmp_path / "m"), "--epochs", "1", *argv])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# --- config files and paths -----------------------------------------------------------------------------------------

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


def test_config_files_written_by_headcls_or_by_hand(trained_dir, tmp_path, capsys):
    """training_config.yaml feeds back into --config; 1e-3 is a number; a UTF-16 file with a BOM reads."""
    from headcls.options.commands import TrainConfig
    from headcls.options.loading import build_config

    cfg = build_config(TrainConfig, str(trained_dir / "training_config.yaml"))
    assert cfg.epochs == 12 and cfg.learning_rate == 3e-3
    path = tmp_path / "c.yaml"
    path.write_bytes("learning_rate: 1e-3\nbatch_size: 8\n".encode("utf-16"))
    cfg = build_config(TrainConfig, str(path))
    assert cfg.learning_rate == 1e-3 and cfg.batch_size == 8


def test_paths_mean_the_same_from_a_flag_or_a_config_file(trained_dir, tmp_path, capsys, monkeypatch):
    """`--output=~/x` gets no shell expansion, nor does a YAML value: headcls expands ~ itself, for every path."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "in.txt").write_text("goal\n")
    assert main(["-q", "predict", "--model", str(trained_dir), "--input=~/in.txt", "--output=~/out.csv"]) == 0
    assert (tmp_path / "out.csv").is_file()
    config = write(tmp_path, "c.yaml", f"model: {trained_dir}\ninput: ~/in.txt\noutput: ~/sub/../out2.jsonl\n")
    assert main(["-q", "predict", "--config", config]) == 0
    assert (tmp_path / "out2.jsonl").is_file() and not (tmp_path / "sub").exists()
