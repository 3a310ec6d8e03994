"""Interrupted runs: SIGKILL then --resume ends where an uninterrupted run ends; Ctrl-C saves a checkpoint;
a run killed while writing its final folder leaves the previous folder in place."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import TINY_TRAIN

from headcls.cli import main

SLOW_RUN = Path(__file__).with_name("slow_run.py")


def train_argv(data: Path, model: Path, out: Path, *extra: str) -> list[str]:
    return ["-q", "train", "--data", str(data), "--model", str(model), "--output", str(out), *TINY_TRAIN, *extra]


def start_child(argv: list[str], *flags: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(SLOW_RUN), *flags, "--", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(checkpoints: Path, proc: subprocess.Popen, timeout: float = 120) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = sorted(checkpoints.glob("checkpoint-*/trainer_state.json"))
        if done:
            return done[0].parent
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


def same_results(a: Path, b: Path) -> None:
    metrics_a, metrics_b = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    for key in ("accuracy", "f1_macro", "per_class", "confusion_matrix"):
        assert metrics_a[key] == metrics_b[key], key
    # Losses to float precision: a busy machine can make MKL use fewer threads, and sum in another order.
    assert len(metrics_a["validation"]) == len(metrics_b["validation"])
    for a_epoch, b_epoch in zip(metrics_a["validation"], metrics_b["validation"]):
        assert a_epoch == pytest.approx(b_epoch, rel=1e-5)
    pd.testing.assert_frame_equal(pd.read_csv(a / "predictions.csv"), pd.read_csv(b / "predictions.csv"))


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, tiny_model_dir, toy_data, trained_dir):
    out = tmp_path / "model"
    checkpoints = out.with_name("model.checkpoints")
    proc = start_child(train_argv(toy_data, tiny_model_dir, out, "--no-baseline"))
    first = wait_for_checkpoint(checkpoints, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "a killed run leaves no output folder"
    assert first.is_dir()

    assert main(train_argv(toy_data, tiny_model_dir, out, "--no-baseline", "--resume")) == 0
    same_results(out, trained_dir)  # trained_dir: the same command, never interrupted
    assert not checkpoints.exists()


def test_incomplete_checkpoint_is_skipped_on_resume(tmp_path, tiny_model_dir, toy_data, trained_dir):
    out = tmp_path / "model"
    checkpoints = out.with_name("model.checkpoints")
    proc = start_child(train_argv(toy_data, tiny_model_dir, out, "--no-baseline"))
    wait_for_checkpoint(checkpoints, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    newest = max(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    cut = checkpoints / f"checkpoint-{int(newest.name.split('-')[1]) + 10_000}"
    shutil.copytree(newest, cut)
    (cut / "trainer_state.json").unlink()  # as if killed while the Trainer was saving it

    assert main(train_argv(toy_data, tiny_model_dir, out, "--no-baseline", "--resume")) == 0
    same_results(out, trained_dir)


def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path, tiny_model_dir, toy_data, trained_dir):
    out = tmp_path / "model"
    checkpoints = out.with_name("model.checkpoints")
    proc = start_child(train_argv(toy_data, tiny_model_dir, out))
    first = wait_for_checkpoint(checkpoints, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "add --resume to the same command to continue" in err
    assert not out.exists()
    steps = [json.loads(p.read_text())["global_step"] for p in checkpoints.glob("checkpoint-*/trainer_state.json")]
    assert max(steps) > int(first.name.split("-")[1]), "a checkpoint saved at the interrupt"

    code = main(train_argv(toy_data, tiny_model_dir, out))
    assert code == 2, "an unfinished run is not silently discarded"
    assert main(train_argv(toy_data, tiny_model_dir, out, "--resume")) == 0
    same_results(out, trained_dir)  # resumed mid-epoch: no batch skipped or repeated


def test_kill_while_writing_the_final_folder_keeps_the_previous_one(tmp_path, tiny_model_dir, toy_data, trained_dir):
    from transformers import pipeline

    out = tmp_path / "model"
    shutil.copytree(trained_dir, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    proc = start_child(train_argv(toy_data, tiny_model_dir, out, "--overwrite", "--seed", "3"),
                       "--kill-in-final-write")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert pipeline("text-classification", model=str(out))("goal goal goal")[0]["label"] == "sports"
    assert list(tmp_path.glob(".model.staging-*")), "the killed run's staging folder is what is left"

    assert main(train_argv(toy_data, tiny_model_dir, out, "--overwrite", "--seed", "3")) == 0
    assert not list(tmp_path.glob(".model.staging-*")), "stale staging folders are cleaned up"
    assert (out / "metrics.json").read_bytes() != before["metrics.json"]
