"""The files users give and get (headcls.files): reading text files and tables (formats, encodings, byte order
marks), the one rule for texts and labels, and outputs: never an input, locked, staged, replaced only with
--overwrite and only when headcls wrote them, and one line for the OS errors a user can fix.

A test whose docstring starts "Was:" pins down a case a new user hit (the hardening issue), and failed on the code
before its fix; tests/test_fuzz.py checks the rules behind them for every flag and many inputs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import (
    GOOD,
    TINY_TRAIN,
    assert_one_line_error,
    frame,
    headcls,
    run,
    start_child,
    train_argv,
    wait_for_checkpoint,
    write,
)

from headcls.cli import main
from headcls.data.splits import load_splits
from headcls.files.columns import label_order, read_labelled
from headcls.options.commands import TrainConfig
from headcls.options.fields import DataConfig

# --- tables: formats, quoting, columns --------------------------------------------------------------------------

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


def test_predict_reads_parquet(trained_dir, tmp_path):
    """Was: predict --input x.parquet always failed ("contains a NUL byte")."""
    pd.DataFrame({"body": ["the team scored a goal", "bank shares and stock"], "id": [1, 2]}).to_parquet(
        tmp_path / "in.parquet")
    out = tmp_path / "out.csv"
    assert main(["-q", "predict", "--model", str(trained_dir), "--input", str(tmp_path / "in.parquet"),
                 "--text-column", "body", "--output", str(out)]) == 0
    assert pd.read_csv(out)["label"].tolist() == ["sports", "business"]


# --- text files: one decoding path -------------------------------------------------------------------------------

def test_latin1_works_with_encoding_flag(tmp_path):
    from headcls.files.columns import read_labelled
    from headcls.options.fields import DataConfig

    path = write(tmp_path, "t.csv", "text,label\ncaf\xe9 news,a\nx,b\n".encode("latin-1"))
    frame = read_labelled(path, DataConfig(encoding="latin-1"))
    assert frame["text"].tolist() == ["café news", "x"]


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
    from headcls.data.splits import load_splits
    from headcls.options.commands import TrainConfig

    path = tmp_path / "train.csv"
    path.write_bytes((toy_data / "train.csv").read_text().encode("utf-16"))
    splits = load_splits(read_train=True, cfg=TrainConfig(train_file=str(path), encoding="utf-16"))
    assert len(splits.train) + len(splits.validation) == 240
    assert splits.labels == ["business", "science", "sports"]


# --- one reading rule for texts ---------------------------------------------------------------------------------

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


# --- labels: one name each, no silent rewriting ---------------------------------------------------------------------

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


def test_true_and_false_labels_read_the_same_from_json_and_csv(tmp_path):
    from headcls.files.columns import read_labelled
    from headcls.options.fields import DataConfig

    csv = write(tmp_path, "t.csv", "text,label\na,false\nb,true\n")
    jsonl = write(tmp_path, "t.jsonl", '{"text": "a", "label": false}\n{"text": "b", "label": true}\n')
    assert read_labelled(csv, DataConfig())["label"].tolist() == ["false", "true"]
    assert read_labelled(jsonl, DataConfig())["label"].tolist() == ["false", "true"]


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


# --- outputs: never an input, never clobbered ----------------------------------------------------------------------

def test_existing_output_is_kept_without_overwrite(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    code, err = run(["train", "--train-file", write(tmp_path, "t.csv", GOOD), "--model", str(tiny_model_dir),
                     "--output", str(out)], capsys)
    assert_one_line_error(code, err, "already holds files; pass --overwrite to replace them")
    assert (out / "precious.txt").read_text() == "keep me"


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


def test_stale_partial_files_of_dead_runs_are_removed(trained_dir, tmp_path):
    stale = tmp_path / ".out.csv.partial-999999999"
    stale.write_text("half")
    (tmp_path / "in.txt").write_text("goal\n")
    assert main(["-q", "predict", "--model", str(trained_dir), "--input", str(tmp_path / "in.txt"),
                 "--output", str(tmp_path / "out.csv")]) == 0
    assert not stale.exists()


# --- outputs: the OS errors a user can fix are one line -----------------------------------------------------------

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
