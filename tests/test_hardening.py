"""Regression tests for the hardening issue: one per case a new user hit, each failing on the code before it.

The rules behind them (one schema per command, one reading rule for texts, no silent label merging, outputs
locked, staged and never clobbered, user-fixable OS errors and corrupt files as one line) are exercised for every
flag and many inputs by tests/test_fuzz.py; these pin the reported cases down by name.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_TRAIN
from test_bad_input import assert_one_line_error, run, write
from test_reliability import start_child, train_argv, wait_for_checkpoint

from headcls.cli import main


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def headcls(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """The CLI in a child process, as a user runs it."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **kwargs.pop("env", {})}
    if "stdout" not in kwargs and "stderr" not in kwargs:
        kwargs["capture_output"] = True
    return subprocess.run([sys.executable, "-m", "headcls", *args], text=True, env=env, timeout=300, check=False,
                          **kwargs)


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
    from headcls.options.commands import COMMAND_CONFIGS
    from headcls.options.fields import base_type as _base_type

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

    from headcls.options.commands import COMMAND_CONFIGS

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


def test_a_diverging_run_stops_keeps_the_last_good_checkpoint_and_saves_nothing(tmp_path, tiny_model_dir, toy_data):
    """A finite but huge step still diverges: the run stops at the first NaN/inf loss with a clear error, and the
    checkpoint saved before it stays (finite), the output is never written."""
    out = tmp_path / "model"
    proc = start_child(train_argv(toy_data, tiny_model_dir, out, "--epochs", "3"), "--poison-after-first-checkpoint")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    lines = [line for line in err.splitlines() if line.startswith("headcls: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "the training loss became nan at step" in lines[0] and "No model was saved" in lines[0], lines[0]
    assert "the last good checkpoint is" in lines[0], lines[0]
    assert not out.exists()
    [checkpoint] = out.with_name("model.checkpoints").glob("checkpoint-*")
    from safetensors.numpy import load_file

    weights = load_file(checkpoint / "model.safetensors")
    assert all(np.isfinite(w).all() for w in weights.values()), "the kept checkpoint is a good one"


def test_a_model_with_nan_weights_is_refused_by_predict(trained_dir, tmp_path, capsys):
    """Was: predict printed NaN scores (invalid JSON) for a NaN model."""
    from safetensors.numpy import load_file, save_file

    broken = tmp_path / "nan-model"
    shutil.copytree(trained_dir, broken)
    weights = load_file(broken / "model.safetensors")
    weights["classifier.bias"] = np.full_like(weights["classifier.bias"], np.nan)
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    code, err = run(["predict", "--model", str(broken), "goal"], capsys)
    assert_one_line_error(code, err, "nan-model: the model gives non-finite scores (NaN or infinity) for text 1 of 1")
    assert capsys.readouterr().out == ""


# --- the user's files are never harmed --------------------------------------------------------------------------

def test_predict_output_equal_to_input_is_refused(trained_dir, tmp_path, capsys):
    """Was: predict --input same.csv --output same.csv replaced the input with the predictions."""
    same = write(tmp_path, "same.csv", "text\ngoal\nbank\n")
    code, err = run(["predict", "--model", str(trained_dir), "--input", same, "--output", same], capsys)
    assert_one_line_error(code, err, f"--output {same} is the input --input {same}")
    assert Path(same).read_text() == "text\ngoal\nbank\n"
    linked = tmp_path / "link.csv"
    linked.symlink_to(same)
    code, err = run(["predict", "--model", str(trained_dir), "--input", same, "--output", str(linked)], capsys)
    assert_one_line_error(code, err, "is the input --input")


def test_outputs_that_hold_an_input_are_refused(trained_dir, toy_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(toy_data, data)
    code, err = run(["train", "--data", str(data), "--output", str(tmp_path), "--overwrite"], capsys)
    assert_one_line_error(code, err, f"--output {tmp_path} holds the input --data {data}")
    code, err = run(["evaluate", "--model", str(trained_dir), "--test-file", str(data / "test.csv"),
                     "--output", str(trained_dir)], capsys)
    assert_one_line_error(code, err, f"--output {trained_dir} is the input --model {trained_dir}")
    assert (data / "test.csv").read_bytes() == (toy_data / "test.csv").read_bytes()


def test_a_second_run_on_the_same_output_refuses_at_once(tmp_path, tiny_model_dir, toy_data, capsys):
    """Was: two train runs to one --output both 'succeeded'; the second replaced the first's model, and the
    first to finish deleted the shared checkpoints folder."""
    out = tmp_path / "model"
    first = start_child(train_argv(toy_data, tiny_model_dir, out, "--no-baseline"))
    wait_for_checkpoint(out.with_name("model.checkpoints"), first)
    started = time.monotonic()
    for argv in (train_argv(toy_data, tiny_model_dir, out, "--overwrite"),
                 train_argv(toy_data, tiny_model_dir, out, "--resume")):
        code, err = run(argv, capsys)
        assert_one_line_error(code, err, f"--output {out}: another headcls run (pid {first.pid}) is writing it")
    assert time.monotonic() - started < 30, "refused at once, not after training"
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert (out / "model.safetensors").is_file() and (out / "metrics.json").is_file()
    assert not out.with_name("model.checkpoints").exists()
    assert not list(tmp_path.glob(".model.*")), "no lock or staging file left behind"


def test_evaluate_writes_its_report_whole_or_not_at_all(trained_dir, toy_data, tmp_path, capsys, monkeypatch):
    """Was: a failed evaluate left predictions.csv new and metrics.json stale in the same folder."""
    import headcls.evaluation.command

    out = tmp_path / "eval"
    argv = ["evaluate", "--model", str(trained_dir), "--test-file", str(toy_data / "test.csv"), "--output", str(out)]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C (or SIGTERM) after the predictions were written, before the metrics

    with monkeypatch.context() as patch:
        patch.setattr(headcls.evaluation.command, "write_metrics", interrupted)
        assert main(argv) == 130
    assert not out.exists(), "a report cut short leaves no folder (no predictions.csv without metrics.json)"
    assert main(argv) == 0
    before = snapshot(out)
    code, err = run(argv, capsys)
    assert_one_line_error(code, err, f"--output {out}: already holds files; pass --overwrite to replace them")
    monkeypatch.setattr(headcls.evaluation.command, "write_metrics", interrupted)
    other = write(tmp_path, "other.csv", "text,label\ngoal goal,sports\nbank bank,business\n")
    argv = ["evaluate", "--model", str(trained_dir), "--test-file", other, "--output", str(out), "--overwrite"]
    assert main(argv) == 130
    assert snapshot(out) == before, "the previous report is untouched"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval", "other.csv"], "no staging or lock left"


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


def test_overwrite_only_replaces_a_folder_headcls_wrote(toy_data, tiny_model_dir, tmp_path, capsys, monkeypatch):
    """`--output . --overwrite` must not swap the user's folder away."""
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    (mine / "config.json").write_text('{"name": "my app"}')  # a config.json alone is not a model folder
    code, err = run(["train", "--data", str(toy_data), "--model", str(tiny_model_dir), "--output", str(mine),
                     "--overwrite", *TINY_TRAIN], capsys)
    assert_one_line_error(code, err, "holds files headcls did not write (no metrics.json, nor config.json beside")
    assert (mine / "notes.txt").read_text() == "mine"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for output in (".", "..", str(work), "~/.."):
        monkeypatch.setenv("HOME", str(work / "home"))
        code, err = run(["evaluate", "--model", str(tiny_model_dir), "--test-file", str(toy_data / "test.csv"),
                         "--output", output, "--overwrite"], capsys)
        assert_one_line_error(code, err, "is the current folder or holds it; choose another output")


def test_output_under_a_regular_file(trained_dir, toy_data, tmp_path, capsys):
    """Was: a traceback (NotADirectoryError) for an output path under a regular file."""
    blocker = write(tmp_path, "file.txt", "x")
    cases = [
        ["predict", "--model", str(trained_dir), "--input", str(toy_data / "test.csv"), "--output",
         f"{blocker}/out.csv"],
        ["evaluate", "--model", str(trained_dir), "--test-file", str(toy_data / "test.csv"), "--output",
         f"{blocker}/eval"],
        ["export", "--model", str(trained_dir), "--output", f"{blocker}/sub/onnx"],
        ["train", "--data", str(toy_data), "--output", f"{blocker}/model"],
    ]
    for argv in cases:
        code, err = run(argv, capsys)
        assert_one_line_error(code, err, f"{blocker} is a file, not a folder")
    assert Path(blocker).read_text() == "x"


def as_nobody() -> list[str]:
    """Run a child without the right to write where only root may: as root, drop to nobody with setpriv."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: cannot take away a write permission")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_folder_without_write_permission(trained_dir, toy_data):
    """Was: a traceback (PermissionError) for an output folder the user may not write to."""
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="headcls-perm-"))
    try:
        model = shared / "model"
        shutil.copytree(trained_dir, model)
        for folder, _, files in os.walk(shared):  # readable by everyone, as a shared model folder is
            os.chmod(folder, 0o755)
            for name in files:
                os.chmod(os.path.join(folder, name), 0o644)
        (shared / "in.csv").write_text("text\ngoal\n")
        locked = shared / "locked"
        locked.mkdir(mode=0o555)
        home = shared / "home"
        home.mkdir(mode=0o777)
        home.chmod(0o777)
        proc = subprocess.run(
            [*as_nobody(), sys.executable, "-m", "headcls", "predict", "--model", str(model), "--input",
             str(shared / "in.csv"), "--output", str(locked / "out.csv")],
            capture_output=True, text=True, timeout=300, check=False,
            env={**os.environ, "HOME": str(home), "HF_HOME": str(home), "MPLCONFIGDIR": str(home),
                 "HF_HUB_OFFLINE": "1"},
        )
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert f"headcls: error: --output {locked / 'out.csv'}: cannot write in {locked} (Permission denied)" \
            in proc.stderr, proc.stderr
        assert list(locked.iterdir()) == []
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def limited_file_size(limit: int):
    """A child whose files may not grow past `limit` bytes: writes fail as on a full disk (EFBIG)."""

    def apply():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_full_disk_while_writing_keeps_the_previous_output(trained_dir, tmp_path):
    """A write that fails half-way (the file-size limit stands in for a full disk) is one line naming the output,
    and the earlier predictions stay."""
    big = tmp_path / "in.txt"
    big.write_text("the team scored a goal in the match today\n" * 2000, encoding="utf-8")
    out = tmp_path / "out.csv"
    out.write_text("previous\n")
    proc = headcls("predict", "--model", str(trained_dir), "--input", str(big), "--output", str(out), "--overwrite",
                   preexec_fn=limited_file_size(20_000))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"headcls: error: --output {out}: cannot write (File too large)" in proc.stderr, proc.stderr
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.csv"]


def test_a_disk_too_small_for_training_is_refused_before_training(tiny_model_dir, toy_data, tmp_path):
    """The run's checkpoints and model would not fit: refused up front, naming the output, not after training."""
    mount = tmp_path / "small"
    mount.mkdir()
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {mount}"],
                           capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs unshare and mount rights)")
    argv = [sys.executable, "-m", "headcls", "-q", "train", "--data", str(toy_data), "--model", str(tiny_model_dir),
            "--output", str(mount / "model"), *TINY_TRAIN]
    script = f"mount -t tmpfs -o size=64k tmpfs {mount} && exec {' '.join(argv)}"
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 2, proc.stderr
    assert f"--output {mount / 'model'}: training (checkpoints and the model) needs about" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- one reading rule for texts, one decoding path ---------------------------------------------------------------

@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("in.jsonl", '{"text": "goal"}\n{"text": null}\n', "in.jsonl: row 2 has no text in text (empty or only"),
        ("in.csv", "text,id\ngoal,1\n,2\n", "in.csv: row 2 has no text in text (empty or only whitespace)"),
        ("in.csv", "text\ngoal\n   \n", "in.csv: row 2 has no text in text (empty or only whitespace)"),
        ("in.txt", "goal\n\nbank\n", "in.txt: line 2 has no text in text (empty or only whitespace)"),
        ("in.csv", "", "in.csv: the file is empty"),
    ],
)
def test_missing_and_empty_texts_are_refused_in_predict_as_in_train(name, content, expected, trained_dir, tmp_path,
                                                                   capsys):
    """Was: predict classified null and empty texts (as the string "nan") while train refused them; a 0-byte CSV
    ended in a traceback."""
    path = write(tmp_path, name, content)
    code, err = run(["predict", "--model", str(trained_dir), "--input", path, "--output", str(tmp_path / "o.csv")],
                    capsys)
    assert_one_line_error(code, err, expected)
    assert not (tmp_path / "o.csv").exists()
    code, err = run(["predict", "--model", str(trained_dir), "goal", " "], capsys)
    assert_one_line_error(code, err, "the sentences: sentence 2 has no text in text (empty or only whitespace)")


def test_predict_reads_parquet(trained_dir, tmp_path):
    """Was: predict --input x.parquet always failed ("contains a NUL byte")."""
    pd.DataFrame({"body": ["the team scored a goal", "bank shares and stock"], "id": [1, 2]}).to_parquet(
        tmp_path / "in.parquet")
    out = tmp_path / "out.csv"
    assert main(["-q", "predict", "--model", str(trained_dir), "--input", str(tmp_path / "in.parquet"),
                 "--text-column", "body", "--output", str(out)]) == 0
    assert pd.read_csv(out)["label"].tolist() == ["sports", "business"]


@pytest.mark.parametrize("encoding, flag", [("utf-16", "utf-16"), ("utf-16-le", "utf-16"), ("utf-16-be", "utf-16-be"),
                                            ("utf-8-sig", "utf-8"), ("utf-16", "utf-8"), ("cp1252", "cp1252")])
def test_encodings_and_byte_order_marks(encoding, flag, trained_dir, tmp_path):
    """Was: --encoding utf-16 could never work (every NUL byte was refused before decoding). A BOM decides the
    encoding (the UTF-16 file read with the default utf-8 works too); every line ending is read."""
    text = "text\r\nthe team scored a goal — café\r\nbank shares and stock\rnasa space chip\n"
    path = tmp_path / "in.csv"
    path.write_bytes(text.encode(encoding))
    out = tmp_path / "out.csv"
    assert main(["-q", "predict", "--model", str(trained_dir), "--input", str(path), "--output", str(out),
                 "--encoding", flag]) == 0
    got = pd.read_csv(out)
    assert got["text"].tolist() == ["the team scored a goal — café", "bank shares and stock", "nasa space chip"]
    assert got["label"].tolist()[:2] == ["sports", "business"]


def test_training_data_in_utf16(tiny_model_dir, toy_data, tmp_path):
    from headcls.options.commands import TrainConfig
    from headcls.data.splits import load_splits

    path = tmp_path / "train.csv"
    path.write_bytes((toy_data / "train.csv").read_text().encode("utf-16"))
    splits = load_splits(read_train=True, cfg=TrainConfig(train_file=str(path), encoding="utf-16"))
    assert len(splits.train) + len(splits.validation) == 240
    assert splits.labels == ["business", "science", "sports"]


# --- labels: no silent rewriting ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "content, expected",
    [
        ("text,label\nx,01\ny,1\nz,2\n", "label '1' (row 2) and '01' (row 1) both read as '1'"),
        ("text,label\nx,a\ny,a \nz,b\n", "label 'a ' (row 2) and 'a' (row 1) both read as 'a'"),
        ("text,label\nx,3.0\ny,3\nz,2\n", "label '3' (row 2) and '3.0' (row 1) both read as '3'"),
    ],
)
def test_two_spellings_of_one_label_are_refused(content, expected, tiny_model_dir, tmp_path, capsys):
    """Was: labels 01 and 1 were merged into one class without a word."""
    code, err = run(["train", "--train-file", write(tmp_path, "t.csv", content), "--model", str(tiny_model_dir),
                     "--output", str(tmp_path / "out"), "--no-baseline", "--validation-fraction", "0.5"], capsys)
    assert_one_line_error(code, err, expected)


def test_two_spellings_across_files_are_refused(tiny_model_dir, tmp_path, capsys):
    train = write(tmp_path, "train.csv", "text,label\n" + "x,1\ny,2\n" * 5)
    test = write(tmp_path, "test.csv", "text,label\nx,01\n")
    code, err = run(["train", "--train-file", train, "--test-file", test, "--model", str(tiny_model_dir),
                     "--output", str(tmp_path / "out"), "--no-baseline"], capsys)
    assert_one_line_error(code, err, f"label '01' (row 1) and '1' ({train} row 1) both read as '1'")


# --- model folders: corrupt or inconsistent files are one line naming the file --------------------------------------

@pytest.fixture(scope="module")
def onnx_dir(trained_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "model"
    assert main(["-q", "export", "--model", str(trained_dir), "--output", str(out)]) == 0
    return out


@pytest.mark.parametrize(
    "kind, file, damage, expected",
    [
        ("torch", "tokenizer.json", b"{not json", "cannot load its tokenizer"),
        ("torch", "model.safetensors", b"\x00" * 64, "the weights do not load"),
        ("torch", "config.json", b'{"model_type": "bert", "id2label": {"0": "a", "2": "b"}}',
         "config.json: id2label has no label for id 1; ids must run 0..1"),
        ("torch", "config.json", b'{"model_type": "bert", "id2label": {"0": "a", "1": "b", "3": "c"}}',
         "config.json: id2label has no label for id 2; ids must run 0..2"),
        ("torch", "config.json", b"[1, 2]", "config.json: holds a JSON list, not an object"),
        ("onnx", "model.onnx", b"garbage", "model.onnx: not a loadable ONNX model"),
        ("onnx", "tokenizer.json", b"{}", "tokenizer.json: not a readable tokenizer"),
        ("onnx", "tokenizer_config.json", b"\xff\xfe", "tokenizer_config.json: not valid JSON"),
    ],
)
def test_corrupt_model_files(kind, file, damage, expected, trained_dir, onnx_dir, tmp_path, capsys):
    """Was: a traceback for a corrupt tokenizer.json, model.safetensors or model.onnx, or an id2label with a gap."""
    broken = tmp_path / "broken"
    shutil.copytree(trained_dir if kind == "torch" else onnx_dir, broken)
    (broken / file).write_bytes(damage)
    code, err = run(["predict", "--model", str(broken), "goal"], capsys)
    assert_one_line_error(code, err, expected)
    assert str(broken) in err


@pytest.mark.parametrize("reading", [{"mode": "head-tail", "head_fraction": None}, {"mode": None},
                                     {"mode": "chunks", "pooling": None}, {"mode": "chunks", "stride": "four"}])
def test_a_corrupt_long_text_setting_is_one_line(reading, trained_dir, tmp_path, capsys):
    """Was: an unset head_fraction gave a TypeError on the first long text; an unset mode read texts as chunks."""
    broken = tmp_path / "broken"
    shutil.copytree(trained_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    config["headcls"] = {"long_text": reading}
    (broken / "config.json").write_text(json.dumps(config))
    code, err = run(["predict", "--model", str(broken), "goal " * 100], capsys)
    assert_one_line_error(code, err, "config.json: headcls.long_text is not valid")


def test_a_bare_encoder_is_not_a_classifier(tiny_model_dir, capsys):
    """An encoder folder has no trained head: predicting with it would give noise, so it is refused."""
    code, err = run(["predict", "--model", str(tiny_model_dir), "goal"], capsys)
    assert_one_line_error(code, err, "the weights lack classifier.")


@pytest.mark.parametrize("value, expected", [("2", "the tokenizer adds 2 special tokens; use at least 3"),
                                             ("65", "the encoder has 64 positions; use at most 64")])
def test_max_length_out_of_the_encoders_range(value, expected, tiny_model_dir, tmp_path, capsys):
    """Was: --max-length below the special tokens or above the encoder's positions ended in a traceback (texts
    longer than the encoder's 64 positions: a tensor-size error in the middle of training)."""
    from conftest import toy_rows

    long = toy_rows(60, seed=3)
    long["text"] = (long["text"] + " ") * 12  # 84 words: past the 64 positions when not cut to them
    long.to_csv(tmp_path / "train.csv", index=False)
    out = tmp_path / "out"
    code, err = run(["train", "--train-file", str(tmp_path / "train.csv"), "--model", str(tiny_model_dir),
                     "--output", str(out), "--max-length", value, "--no-baseline"], capsys)
    assert_one_line_error(code, err, f"--max-length {value}: {expected}")
    assert not out.with_name("out.checkpoints").exists(), "refused before training"


@pytest.mark.parametrize("renamed, now", [
    ({"science": "tech"}, "business, sports, tech"),  # was: resumed silently with the old label names
    ({"science": "tech", "sports": ["sports", "golf"]}, "business, golf, sports, tech"),  # was: a traceback
])
def test_resume_after_the_labels_changed(renamed, now, tmp_path, tiny_model_dir, toy_data, capsys):
    """Was: --resume after the training data's labels changed ended in a traceback, or went on under the old
    label names."""
    out = tmp_path / "model"
    proc = start_child(train_argv(toy_data, tiny_model_dir, out))
    wait_for_checkpoint(out.with_name("model.checkpoints"), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    changed = tmp_path / "data"
    changed.mkdir()
    rows = pd.read_csv(toy_data / "train.csv")
    for old, new in renamed.items():
        names = [new] if isinstance(new, str) else new
        where = rows.index[rows["label"] == old]
        rows.loc[where, "label"] = [names[i % len(names)] for i in range(len(where))]
    rows.to_csv(changed / "train.csv", index=False)
    code, err = run(train_argv(changed, tiny_model_dir, out, "--resume"), capsys)
    assert_one_line_error(code, err, f"was trained on labels business, science, sports, but the training data now "
                                     f"has {now}; start over with --overwrite")


# --- artefacts that scale with the label count -----------------------------------------------------------------

def test_confusion_matrix_for_hundreds_of_labels_is_bounded(tmp_path):
    """Was: the plot for hundreds of labels ran out of memory after training, losing the model."""
    from PIL import Image

    from headcls.evaluation.metrics import compute_metrics
    from headcls.evaluation.plots import plot_confusion_matrix

    labels = [f"label number {i}" for i in range(600)]
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 600, 20_000)
    predicted = np.where(rng.random(20_000) < 0.8, truth, rng.integers(0, 600, 20_000))
    predicted[truth == 7] = 8  # the most confused pair must be drawn
    metrics = compute_metrics(truth.tolist(), predicted.tolist(), labels)
    plot_confusion_matrix(metrics, tmp_path / "cm.png", "test split")
    with Image.open(tmp_path / "cm.png") as image:
        width, height = image.size
    assert width * height < 6000 * 3000, (width, height)  # the same bound as a 30-label picture
    from headcls.evaluation.plots import MAX_PLOTTED_LABELS, plotted_labels

    drawn = plotted_labels(labels, np.array(metrics["confusion_matrix"]["matrix"]))
    assert len(drawn) == MAX_PLOTTED_LABELS and {7, 8} <= set(drawn)


def test_a_per_label_picture_of_thousands_of_labels_draws_the_most_frequent(tmp_path):
    from PIL import Image

    from headcls.evaluation.plots import MAX_BARRED_LABELS, plot_per_label

    per = {f"label {i}": {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": i % 97} for i in range(3000)}
    plot_per_label({"per_class": per, "f1_micro": 0.5, "f1_macro": 0.5}, tmp_path / "per_label.png")
    with Image.open(tmp_path / "per_label.png") as image:
        width, height = image.size
    assert height <= (0.45 * MAX_BARRED_LABELS + 1.5) * 120 + 1, (width, height)  # 60 labels' bars, not 3,000


def test_a_failed_plot_never_costs_the_trained_model(tiny_model_dir, toy_data, tmp_path, capsys, monkeypatch):
    import headcls.evaluation.report

    def out_of_memory(*args, **kwargs):
        raise MemoryError("cannot allocate the picture")

    monkeypatch.setattr(headcls.evaluation.report, "plot_confusion_matrix", out_of_memory)
    out = tmp_path / "model"
    assert main(["-q", "train", "--data", str(toy_data), "--model", str(tiny_model_dir), "--output", str(out),
                 "--no-baseline", *TINY_TRAIN, "--epochs", "2"]) == 0
    assert "confusion_matrix.png not drawn (MemoryError: cannot allocate the picture)" in capsys.readouterr().err
    assert (out / "model.safetensors").is_file() and (out / "metrics.json").is_file()
    assert not (out / "confusion_matrix.png").exists()
    assert json.loads((out / "metrics.json").read_text())["confusion_matrix"]["labels"] == [
        "business", "science", "sports"]


def test_stale_partial_files_of_dead_runs_are_removed(trained_dir, tmp_path):
    stale = tmp_path / ".out.csv.partial-999999999"
    stale.write_text("half")
    (tmp_path / "in.txt").write_text("goal\n")
    assert main(["-q", "predict", "--model", str(trained_dir), "--input", str(tmp_path / "in.txt"),
                 "--output", str(tmp_path / "out.csv")]) == 0
    assert not stale.exists()


# --- found by trying the change as a new user would -------------------------------------------------------------

def test_evaluate_default_output_never_holds_the_input(trained_dir, tmp_path, capsys):
    """The default report folder (MODEL/eval-test) is checked like a given --output: it must not hold the input."""
    model = tmp_path / "model"
    shutil.copytree(trained_dir, model)
    (model / "eval-test").mkdir()
    mine = write(model / "eval-test", "mine.csv", "text,label\ngoal goal,sports\n")
    code, err = run(["evaluate", "--model", str(model), "--test-file", mine, "--overwrite"], capsys)
    assert_one_line_error(code, err, f"--output {model / 'eval-test'} holds the input --test-file {mine}")
    assert Path(mine).is_file()


def test_a_model_folder_without_its_tokenizer_is_refused(trained_dir, tmp_path, capsys):
    """Without tokenizer files transformers builds an empty default tokenizer: every word [UNK], one label for all."""
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(trained_dir / name, bare / name)
    for argv in (["predict", "--model", str(bare), "goal"], ["export", "--model", str(bare), "--output",
                                                                   str(tmp_path / "x")]):
        code, err = run(argv, capsys)
        assert_one_line_error(code, err, f"{bare}: no tokenizer (tokenizer.json or a vocabulary file)")


def test_paths_mean_the_same_from_a_flag_or_a_config_file(trained_dir, tmp_path, capsys, monkeypatch):
    """`--output=~/x` gets no shell expansion, nor does a YAML value: headcls expands ~ itself, for every path."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "in.txt").write_text("goal\n")
    assert main(["-q", "predict", "--model", str(trained_dir), "--input=~/in.txt", "--output=~/out.csv"]) == 0
    assert (tmp_path / "out.csv").is_file()
    config = write(tmp_path, "c.yaml", f"model: {trained_dir}\ninput: ~/in.txt\noutput: ~/sub/../out2.jsonl\n")
    assert main(["-q", "predict", "--config", config]) == 0
    assert (tmp_path / "out2.jsonl").is_file() and not (tmp_path / "sub").exists()


def test_a_symlinked_output_is_written_through(trained_dir, toy_data, tmp_path):
    real = tmp_path / "reports" / "real"
    real.parent.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    argv = ["-q", "evaluate", "--model", str(trained_dir), "--test-file", str(toy_data / "test.csv"), "--output",
            str(link)]
    assert main(argv) == 0 and main([*argv, "--overwrite"]) == 0
    assert link.is_symlink() and (real / "metrics.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "reports"]


def test_resume_needs_the_same_encoder_and_epochs_left(tmp_path, tiny_model_dir, toy_data, capsys):
    from conftest import FILLER, KEYWORDS

    from headcls.testing import tiny_bert

    out = tmp_path / "model"
    proc = start_child(train_argv(toy_data, tiny_model_dir, out))
    checkpoint = wait_for_checkpoint(out.with_name("model.checkpoints"), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    words = [w for ws in KEYWORDS.values() for w in ws] + FILLER + ["unseen", "words"]  # conftest's vocabulary
    other = tiny_bert(tmp_path / "other", words, max_positions=128)
    code, err = run(train_argv(toy_data, other, out, "--resume"), capsys)
    assert_one_line_error(code, err, "was trained from another encoder (max_position_embeddings 64 against 128)")
    done = json.loads((checkpoint / "trainer_state.json").read_text())["epoch"]
    code, err = run(train_argv(toy_data, tiny_model_dir, out, "--resume", "--epochs", str(done / 2)), capsys)
    assert_one_line_error(code, err, f"is at epoch {done:g}, past --epochs {done / 2:g}; nothing is left to train")


def test_a_diverged_start_leaves_nothing_that_blocks_a_rerun(tmp_path, tiny_model_dir, toy_data):
    """A NaN before the first checkpoint: the error starts its own line (not after a progress bar), and the same
    command with a sane learning rate simply runs again, without --overwrite or --resume."""
    out = tmp_path / "model"
    argv = ["train", "--data", str(toy_data), "--model", str(tiny_model_dir), "--output", str(out),
            "--learning-rate", "1e30", "--epochs", "1", "--no-baseline"]
    proc = headcls(*argv)
    assert proc.returncode == 2, proc.stderr
    assert any(line.startswith("headcls: error: the training loss became") for line in proc.stderr.splitlines())
    assert "no checkpoint had been saved" in proc.stderr
    assert not out.with_name("model.checkpoints").exists()
    proc = headcls(*argv[:-5], "--epochs", "1", "--no-baseline", "-q")
    assert proc.returncode == 0, proc.stderr


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


def test_a_data_folder_is_read_whole_or_refused(tiny_model_dir, toy_data, tmp_path, capsys, caplog):
    from headcls.options.commands import TrainConfig
    from headcls.data.splits import load_splits

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


def test_true_and_false_labels_read_the_same_from_json_and_csv(tmp_path):
    from headcls.options.fields import DataConfig
    from headcls.data.splits import read_labelled

    csv = write(tmp_path, "t.csv", "text,label\na,false\nb,true\n")
    jsonl = write(tmp_path, "t.jsonl", '{"text": "a", "label": false}\n{"text": "b", "label": true}\n')
    assert read_labelled(csv, DataConfig())["label"].tolist() == ["false", "true"]
    assert read_labelled(jsonl, DataConfig())["label"].tolist() == ["false", "true"]


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


def test_standard_output_that_cannot_be_written(trained_dir):
    with open("/dev/full", "w") as full:
        proc = headcls("-q", "predict", "--model", str(trained_dir), "goal", stdout=full, stderr=subprocess.PIPE)
    assert proc.returncode == 2
    assert "headcls: error: cannot write the predictions to standard output (No space left on device)" in proc.stderr


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


def test_config_files_written_by_headcls_or_by_hand(trained_dir, tmp_path, capsys):
    """training_config.yaml feeds back into --config; 1e-3 is a number; a UTF-16 file with a BOM reads."""
    from headcls.options.commands import TrainConfig
    from headcls.options.loading import build_config

    cfg = build_config(TrainConfig, str(trained_dir / "training_config.yaml"))
    assert cfg.epochs == 20 and cfg.learning_rate == 3e-3
    path = tmp_path / "c.yaml"
    path.write_bytes("learning_rate: 1e-3\nbatch_size: 8\n".encode("utf-16"))
    cfg = build_config(TrainConfig, str(path))
    assert cfg.learning_rate == 1e-3 and cfg.batch_size == 8
