"""`headcls export` (headcls.export): an ONNX folder (fp32 or int8) that predicts as the torch model does and
needs no weights file, for single- and multi-label models; its self-check on a --check-file read with its own
columns; and its refusals, one line each."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from helpers import assert_one_line_error, multi_rows, run, toy_rows, write

from headcls import Classifier
from headcls.cli import main


def test_export_matches_torch_and_needs_no_weights_file(trained_dir, exported_dirs):
    texts = toy_rows(30, seed=9)["text"].tolist() + ["goal", "the market of stock in bank today shares trade"]
    torch_clf = Classifier.from_pretrained(trained_dir, backend="torch", precision="fp32")
    onnx_clf = Classifier.from_pretrained(exported_dirs["fp32"])
    assert onnx_clf.backend == "onnx" and not list(exported_dirs["fp32"].glob("*.safetensors"))
    expected, got = torch_clf.predict(texts), onnx_clf.predict(texts)
    assert [r["label"] for r in got] == [r["label"] for r in expected]
    assert [r["score"] for r in got] == pytest.approx([r["score"] for r in expected], abs=1e-4)
    size = {name: (folder / "model.onnx").stat().st_size for name, folder in exported_dirs.items()}
    assert size["int8"] < size["fp32"]  # the real encoder: 23.0 MB against 91.0 MB (BENCHMARKS.md)


def test_a_multi_label_model_exports_to_onnx_with_the_same_labels(multi_model, tmp_path, capsys):
    from headcls.inference.classifier import Classifier

    out = tmp_path / "onnx"
    assert main(["export", "--model", str(multi_model), "--output", str(out)]) == 0
    assert "agreement" in capsys.readouterr().out.lower()
    texts = ["goal team market", "space nasa chip", "the a of"]
    torch_results = Classifier.from_pretrained(multi_model, backend="torch", precision="fp32").predict(texts)
    onnx = Classifier.from_pretrained(out)
    assert onnx.backend == "onnx" and onnx.multi_label
    assert [r["labels"] for r in onnx.predict(texts)] == [r["labels"] for r in torch_results]


def test_export_reads_a_check_file_with_its_own_columns_and_label_separator(multi_model, tmp_path, capsys):
    held_out = multi_rows(70, seed=2)  # the rows train scored the model on
    check = pd.DataFrame({"body": held_out["text"], "topics": ["|".join(t) for t in held_out["label"]]})
    check.to_csv(tmp_path / "check.csv", index=False)
    assert main(["export", "--model", str(multi_model), "--output", str(tmp_path / "onnx"), "--check-file",
                 str(tmp_path / "check.csv"), "--text-column", "body", "--label-column", "topics",
                 "--label-separator", "|"]) == 0
    out = capsys.readouterr().out
    subset_accuracy = json.loads((multi_model / "metrics.json").read_text())["subset_accuracy"]
    assert f"Self-check on 70 held-out rows of {tmp_path / 'check.csv'}" in out
    assert f"accuracy torch {subset_accuracy:.4f}" in out


# --- refusals ------------------------------------------------------------------------------------------------------

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


def test_export_check_file_with_labels_the_model_does_not_know(trained_dir, tmp_path, capsys):
    check = write(tmp_path, "check.csv", "text,label\ngoal,football\n")
    code, err = run(["export", "--model", str(trained_dir), "--output", str(tmp_path / "x"), "--check-file", check],
                    capsys)
    assert_one_line_error(code, err, "check.csv: label 'football' is not one the model knows")


def test_export_check_file_with_several_labels_per_row_for_a_single_label_model(trained_dir, tmp_path, capsys):
    check = write(tmp_path, "check.jsonl", '{"text": "goal", "label": ["sports", "business"]}\n')
    code, err = run(["export", "--model", str(trained_dir), "--output", str(tmp_path / "x"), "--check-file", check],
                    capsys)
    assert_one_line_error(code, err, "check.jsonl: its labels are lists (several per row) but the model gives one "
                          "label per text")
    assert not (tmp_path / "x").exists()
