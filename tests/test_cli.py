"""The command line (headcls.cli): argparse from the schemas, `--help`, exit codes, one clear line on stderr for
every mistake (the bad-input corpus), and signals.

A test whose docstring starts "Was:" pins down a case a new user hit (the hardening issue), and failed on the code
before its fix; tests/test_fuzz.py checks the rules behind them for every flag and many inputs."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from helpers import GOOD, ROWS, assert_one_line_error, fill, run, write

from headcls.cli import main

# --- the bad-input corpus: each case gives one clear line on stderr and exit status 2, never a traceback ----------

# (case id, files to write, argv after "train" with {name} placeholders, expected message part)
TRAIN_CASES = [
    ("missing-text-column", {"t.csv": "body,label\nx,a\ny,b\n"}, ["--train-file", "{t.csv}"],
     "t.csv: missing text column 'text'; columns found: 'body', 'label'"),
    ("missing-label-column", {"t.csv": "text,topic\nx,a\ny,b\n"}, ["--train-file", "{t.csv}"],
     "t.csv: missing label column 'label'; columns found: 'text', 'topic'"),
    ("wrong-delimiter", {"t.csv": "text;label\nx;a\ny;b\n"}, ["--train-file", "{t.csv}"],
     "only one column: is the delimiter right?"),
    ("empty-text-row", {"t.csv": "text,label\nx,a\n ,b\nz,a\n"}, ["--train-file", "{t.csv}"],
     "t.csv: row 2 has no text in text (empty or only whitespace)"),
    ("blank-label", {"t.csv": "text,label\nx,a\ny,\nz,b\n"}, ["--train-file", "{t.csv}"],
     "t.csv: row 2 has an empty label in column 'label'"),
    ("nan-label-jsonl", {"t.jsonl": '{"text": "x", "label": 1}\n{"text": "y", "label": null}\n'},
     ["--train-file", "{t.jsonl}"], "t.jsonl: row 2 has an empty label"),
    ("one-class", {"t.csv": "text,label\nx,a\ny,a\nz,a\n"}, ["--train-file", "{t.csv}"],
     "only one class ('a') in the training rows"),
    ("sorted-by-class-first-n", {"t.csv": "text,label\nx,a\ny,a\nz,a\nw,b\nv,b\n"},
     ["--train-file", "{t.csv}", "--train-samples", "3"], "(the rows may be sorted by class: add --stratify)"),
    ("unseen-test-label", {"t.csv": GOOD, "test.csv": "text,label\nx,sports\ny,politics\n"},
     ["--train-file", "{t.csv}", "--test-file", "{test.csv}"],
     "test.csv: label 'politics' (row 2) never occurs in the training data"),
    ("latin-1", {"t.csv": "text,label\ncaf\xe9 news,a\nx,b\n".encode("latin-1")}, ["--train-file", "{t.csv}"],
     "t.csv: is not utf-8 text (byte 0xe9 at offset 14); if the file is in another encoding, pass it with --encoding"),
    ("nul-byte", {"t.csv": b"text,label\nx\x00y,a\n"}, ["--train-file", "{t.csv}"],
     "t.csv: contains a NUL character (character 12 of the utf-8 text); this is not a text file"),
    ("empty-file", {"t.csv": ""}, ["--train-file", "{t.csv}"], "t.csv: the file is empty"),
    ("header-only", {"t.csv": "text,label\n"}, ["--train-file", "{t.csv}"], "t.csv: has a header but no rows"),
    ("unsupported-type", {"t.xlsx": "x"}, ["--train-file", "{t.xlsx}"],
     "t.xlsx: unsupported file type; use one of .csv, .json, .jsonl, .parquet, .tsv"),
    ("file-not-found", {}, ["--train-file", "nowhere.csv"], "nowhere.csv: file not found"),
    ("train-samples-too-many", {"t.csv": GOOD}, ["--train-file", "{t.csv}", "--train-samples", "50"],
     "asked for 50 rows but it has only 12"),
    ("too-few-rows", {"t.csv": "text,label\n" + ROWS}, ["--train-file", "{t.csv}"],
     "only 3 training rows over 3 classes: too few to hold out a validation split"),
    ("bad-json", {"t.jsonl": '{"text": "x", "label": 1}\n{oops\n'}, ["--train-file", "{t.jsonl}"],
     "t.jsonl: line 2 is not valid JSON"),
    ("no-data", {}, [], "no training data: pass --data ag_news, --data FOLDER or --train-file FILE"),
    ("data-not-a-folder", {}, ["--data", "imdb"], "--data imdb: not 'ag_news' and not a folder"),
    ("ag-news-dir-missing", {}, ["--data", "ag_news", "--data-dir", "{dir}"], "ag_news/train.csv: file not found"),
    ("config-unknown-key", {"c.yaml": "epochs: 2\nlearnin_rate: 0.1\n"}, ["--config", "{c.yaml}"],
     "c.yaml: unknown key 'learnin_rate' (did you mean 'learning_rate'?); valid keys are: baseline, batch_size,"),
    ("config-wrong-type", {"c.yaml": "epochs: three\n"}, ["--config", "{c.yaml}"],
     "c.yaml: key 'epochs' must be a number, got 'three'"),
    ("config-bool-as-number", {"c.yaml": "batch_size: true\n"}, ["--config", "{c.yaml}"],
     "key 'batch_size' must be a whole number, got True"),
    ("config-not-mapping", {"c.yaml": "- a\n- b\n"}, ["--config", "{c.yaml}"],
     "c.yaml: a config file must be a mapping of keys to values, got list"),
    ("config-bad-precision", {"c.yaml": "precision: fp8\n"}, ["--config", "{c.yaml}"],
     "key 'precision' must be one of auto, bf16, fp32, got 'fp8'"),
    ("config-bad-fraction", {"c.yaml": "validation_fraction: 1.5\n"}, ["--config", "{c.yaml}"],
     "key 'validation_fraction' must be less than 1, got 1.5"),
    ("config-missing", {}, ["--config", "nowhere.yaml"], "nowhere.yaml: config file not found"),
]


@pytest.mark.parametrize("case", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_train_bad_input(case, tmp_path, tiny_model_dir, capsys):
    _, files, args, expected = case
    paths = {name: write(tmp_path, name, content) for name, content in files.items()}
    paths["dir"] = str(tmp_path)
    args = [fill(a, paths) for a in args]
    out = tmp_path / "out"
    code, err = run(["train", *args, "--model", str(tiny_model_dir), "--output", str(out)], capsys)
    assert_one_line_error(code, err, expected)
    assert not out.exists(), "a failed run leaves no output folder"


# --- argparse from the schemas ------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "export"])
def test_help_works(command, capsys):
    from headcls.cli import main

    assert main([command, "--help"]) == 0
    assert "--model" in capsys.readouterr().out


@pytest.mark.parametrize("argv, expected", [
    (["--epochs", "1_0"], "--epochs must be a plain number (no underscores), got 1_0"),
    (["--learning-rate", "-1e-3"], "--learning-rate must be greater than 0, got -1e-3"),
    (["--epoch", "3"], "unrecognized arguments: --epoch 3; did you mean --epochs?"),
    (["--top-k", "2"], "--top-k is an option of predict, not of train"),
    (["--text-column", "text", "label"], "--text-column includes the label column 'label'"),
])
def test_flag_mistakes_say_what_was_meant(argv, expected, toy_data, capsys):
    code, err = run(["train", "--data", str(toy_data), *argv], capsys)
    assert_one_line_error(code, err, expected)


def test_sentences_and_an_input_file_are_not_mixed(trained_dir, tmp_path, capsys):
    """Was: sentences given beside --input were dropped; `--text-column title body` read 'body' as a sentence."""
    path = write(tmp_path, "in.csv", "title,body\nthe team,scored a goal\nbank,shares rose\n")
    code, err = run(["predict", "--model", str(trained_dir), "--input", path, "--output", str(tmp_path / "o.csv"),
                     "extra sentence"], capsys)
    assert_one_line_error(code, err, "predict takes sentences or --input FILE, not both (got 1 sentences")
    assert main(["-q", "predict", "--model", str(trained_dir), "--input", path, "--output", str(tmp_path / "o.csv"),
                 "--text-column", "title", "body"]) == 0
    assert pd.read_csv(tmp_path / "o.csv")["text"].tolist() == ["the team scored a goal", "bank shares rose"]
    code, err = run(["predict", "--model", str(trained_dir), "a", "b", ""], capsys)
    assert_one_line_error(code, err, "the sentences: sentence 3 has no text")


# --- signals ------------------------------------------------------------------------------------------------------

def test_sigterm_cleans_up_like_ctrl_c(trained_dir, tmp_path):
    """SIGTERM in the middle of a prediction unwinds as Ctrl-C does: exit 130, no partial output, no lock, the
    previous output untouched."""
    big = tmp_path / "big.txt"
    big.write_text("the team scored a goal in the match today\n" * 200_000, encoding="utf-8")
    out = tmp_path / "out.csv"
    out.write_text("previous\n")
    proc = subprocess.Popen([sys.executable, "-m", "headcls", "predict", "--model", str(trained_dir), "--input",
                             str(big), "--output", str(out), "--overwrite"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.csv.partial-*")):  # writing has started
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt", "out.csv"]
