"""The bad-input corpus: each case gives one clear line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from headcls.cli import main

ROWS = "the team scored a goal,sports\nbank shares rose,business\nnasa space chip,science\n"
GOOD = "text,label\n" + ROWS * 4


def write(folder: Path, name: str, content: str | bytes) -> str:
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return str(path)


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


def fill(text: str, paths: dict[str, str]) -> str:
    for name, path in paths.items():
        text = text.replace("{" + name + "}", path)
    return text


def run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def assert_one_line_error(code: int, err: str, expected: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("headcls: error:")]
    assert len(lines) == 1, err
    assert expected in lines[0], lines[0]


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


def test_model_folder_without_weights(tmp_path, tiny_model_dir, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").unlink()
    code, err = run(["train", "--train-file", write(tmp_path, "t.csv", GOOD), "--model", str(broken)], capsys)
    assert_one_line_error(code, err, "broken: no model weights (model.safetensors) in the folder")


def test_pickle_weights_are_refused(tmp_path, tiny_model_dir, capsys):
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    code, err = run(["predict", "--model", str(pickled), "some text"], capsys)
    assert_one_line_error(code, err, "holds only pickle weights (pytorch_model.bin), which can run code when loaded")


def test_model_folder_without_config(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    code, err = run(["predict", "--model", str(tmp_path / "m"), "text"], capsys)
    assert_one_line_error(code, err, "m: no config.json; not a Hugging Face model folder")


def test_model_config_that_does_not_match_weights(tmp_path, trained_dir, capsys):
    import json

    broken = tmp_path / "mismatch"
    shutil.copytree(trained_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    config["hidden_size"] = 48
    config["num_attention_heads"] = 4
    (broken / "config.json").write_text(json.dumps(config))
    code, err = run(["predict", "--model", str(broken), "text"], capsys)
    assert_one_line_error(code, err, "mismatch: config.json does not match model.safetensors")


def test_existing_output_is_kept_without_overwrite(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    code, err = run(["train", "--train-file", write(tmp_path, "t.csv", GOOD), "--model", str(tiny_model_dir),
                     "--output", str(out)], capsys)
    assert_one_line_error(code, err, "already holds files; pass --overwrite to replace them")
    assert (out / "precious.txt").read_text() == "keep me"


def test_resume_without_checkpoint(tmp_path, tiny_model_dir, capsys):
    code, err = run(["train", "--train-file", write(tmp_path, "t.csv", GOOD), "--model", str(tiny_model_dir),
                     "--output", str(tmp_path / "out"), "--resume"], capsys)
    assert_one_line_error(code, err, "--resume: no checkpoint in")


def test_evaluate_label_unknown_to_model(tmp_path, trained_dir, capsys):
    test = write(tmp_path, "test.csv", "text,label\ngoal,sports\nelection,politics\n")
    code, err = run(["evaluate", "--model", str(trained_dir), "--test-file", test, "--output", str(tmp_path / "e")],
                    capsys)
    assert_one_line_error(code, err, "test.csv: label 'politics' is not one the model knows; its labels are:")
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize(
    "args, expected",
    [
        ([], "predict needs sentences as arguments or --input FILE"),
        (["x", "--top-k", "0"], "--top-k must be at least 1, got 0"),
        (["--input", "{in.csv}", "--output", "{out.csv}"], "in.csv: missing text column 'text'; columns found: 'body'"),
        (["--input", "{in.bin}", "--output", "{out.csv}"], "unsupported file type"),
        (["--input", "{in.txt}", "--output", "{out.xml}"], "--output {out.xml}: write .csv or .jsonl"),
        (["--input", "{in.txt}"], "--input needs --output FILE (.csv or .jsonl)"),
        (["--input", "{nul.txt}", "--output", "{out.csv}"], "nul.txt: contains a NUL character"),
        (["--input", "{latin.csv}", "--output", "{out.csv}"], "is not utf-8 text"),
        (["--backend", "onnx", "x"], "no model.onnx; create one with: headcls export"),
    ],
)
def test_predict_bad_input(args, expected, tmp_path, trained_dir, capsys):
    paths = {
        "in.csv": write(tmp_path, "in.csv", "body\nx\n"),
        "in.bin": write(tmp_path, "in.bin", "x"),
        "in.txt": write(tmp_path, "in.txt", "goal\n"),
        "nul.txt": write(tmp_path, "nul.txt", b"goal\n\x00\x01\n"),
        "latin.csv": write(tmp_path, "latin.csv", "text\ncaf\xe9\n".encode("latin-1")),
        "out.csv": str(tmp_path / "out.csv"),
        "out.xml": str(tmp_path / "out.xml"),
    }
    args = [fill(a, paths) for a in args]
    code, err = run(["predict", "--model", str(trained_dir), *args], capsys)
    assert_one_line_error(code, err, fill(expected, paths))
    assert not (tmp_path / "out.csv").exists(), "no half-written output"


def test_export_refuses_to_overwrite(tmp_path, trained_dir, capsys):
    out = tmp_path / "onnx"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    code, err = run(["export", "--model", str(trained_dir), "--output", str(out)], capsys)
    assert_one_line_error(code, err, "already holds files; pass --overwrite to replace them")


def test_export_bad_input(tmp_path, trained_dir, capsys):
    code, err = run(["export", "--model", str(trained_dir), "--output", str(trained_dir)], capsys)
    expected = f"--output {trained_dir} is the input --model {trained_dir}; choose another output"
    assert_one_line_error(code, err, expected)
    code, err = run(["export", "--model", str(tmp_path / "nowhere"), "--output", str(tmp_path / "x")], capsys)
    assert_one_line_error(code, err, "nowhere: no such folder")
    onnx_only = tmp_path / "onnx-only"
    onnx_only.mkdir()
    shutil.copy(trained_dir / "config.json", onnx_only)
    (onnx_only / "model.onnx").write_bytes(b"not really")
    code, err = run(["export", "--model", str(onnx_only), "--output", str(tmp_path / "x")], capsys)
    assert_one_line_error(code, err, "export needs a model folder with model.safetensors")
    assert not (tmp_path / "x").exists()


def test_evaluate_without_labelled_data(tmp_path, trained_dir, capsys):
    code, err = run(["evaluate", "--model", str(trained_dir)], capsys)
    assert_one_line_error(code, err, "no data to evaluate: pass --test-file FILE, --data FOLDER or --data ag_news")
    test = write(tmp_path, "test.csv", "text\nno labels here\n")
    code, err = run(["evaluate", "--model", str(trained_dir), "--test-file", test], capsys)
    assert_one_line_error(code, err, "test.csv: missing label column 'label'; columns found: 'text'")


def test_latin1_works_with_encoding_flag(tmp_path):
    from headcls.options.fields import DataConfig
    from headcls.data.splits import read_labelled

    path = write(tmp_path, "t.csv", "text,label\ncaf\xe9 news,a\nx,b\n".encode("latin-1"))
    frame = read_labelled(path, DataConfig(encoding="latin-1"))
    assert frame["text"].tolist() == ["café news", "x"]
