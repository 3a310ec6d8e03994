"""The machine and the job (headcls.runtime): `torchrun --nproc_per_node 2` on CPU (gloo) with the tiny model: one
output, the metrics a single-process evaluation gives, a disjoint shard of every epoch per process, and SIGKILL +
--resume ending where an uninterrupted 2-process run ends."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import SLOW_RUN, same_results, toy_rows, wait_for_checkpoint

from headcls.cli import main

ROWS, BATCH, PROCESSES = 192, 16, 2  # 192 rows = 6 steps of 2 x 16 per epoch: no batch is padded with repeats
STEPS_PER_EPOCH = ROWS // (BATCH * PROCESSES)
TRAIN = ["--epochs", "3", "--batch-size", str(BATCH), "--learning-rate", "3e-3", "--warmup-steps", "0", "--seed",
         "1", "--no-baseline"]


def torchrun(*args: str, record: Path | None = None, step_seconds: float = 0.05, **popen) -> subprocess.Popen:
    """`torchrun --standalone --nproc_per_node 2 tests/slow_run.py ... -- headcls ARGS` (rendezvous on localhost)."""
    flags = ["--step-seconds", str(step_seconds), *(["--record-batches", str(record)] if record else [])]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(PROCESSES),
               str(SLOW_RUN), *flags, "--", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-4000:]
    return out + err


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Unique training texts (so a row's token ids name it), 192 of them; validation and test files beside."""
    folder = tmp_path_factory.mktemp("ddp-data")
    train = toy_rows(400, seed=11).drop_duplicates("text").head(ROWS)
    assert len(train) == ROWS
    train.to_csv(folder / "train.csv", index=False)
    toy_rows(30, seed=12).to_csv(folder / "validation.csv", index=False)
    toy_rows(60, seed=13).to_csv(folder / "test.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def two_process_run(corpus, tiny_model_dir, tmp_path_factory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("ddp")
    (root / "batches").mkdir()
    out = root / "model"
    log = finish(torchrun("train", "--data", str(corpus), "--model", str(tiny_model_dir), "--output", str(out),
                          *TRAIN, record=root / "batches"))
    return out, root / "batches", log


def test_one_output_that_loads_anywhere(two_process_run):
    from transformers import pipeline

    out, _, log = two_process_run
    assert sorted(p.name for p in out.parent.iterdir()) == ["batches", "model"], "no staging, lock or checkpoints left"
    assert "Effective batch size 32 (16 per device x 2 processes x 1 accumulation)" in log
    config = (out / "training_config.yaml").read_text()
    assert "#   effective_batch_size: 32" in config and "#   processes: 2" in config
    assert json.loads((out / "metrics.json").read_text())["schedule"]["steps"] == 3 * STEPS_PER_EPOCH
    result = pipeline("text-classification", model=str(out))("the team scored a goal in the match")
    assert result[0]["label"] in {"sports", "business", "science"}


def test_metrics_equal_a_single_process_evaluation(two_process_run, corpus, tmp_path):
    out, _, _ = two_process_run
    assert main(["-q", "evaluate", "--model", str(out), "--test-file", str(corpus / "test.csv"),
                 "--output", str(tmp_path / "eval")]) == 0
    gathered, single = (json.loads((d / "metrics.json").read_text()) for d in (out, tmp_path / "eval"))
    for key in ("accuracy", "f1_macro", "per_class", "confusion_matrix", "num_examples"):
        assert gathered[key] == single[key], key


def test_each_process_trains_on_its_own_shard_of_every_epoch(two_process_run, corpus, tiny_model_dir):
    from transformers import AutoTokenizer

    _, batches, _ = two_process_run
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    import pandas as pd

    every_row = {tuple(ids) for ids in tokenizer(pd.read_csv(corpus / "train.csv")["text"].tolist())["input_ids"]}
    seen: dict[int, dict[int, list]] = {}  # epoch -> rank -> rows
    for rank in range(PROCESSES):
        for line in (batches / f"rank{rank}.jsonl").read_text().splitlines():
            entry = json.loads(line)
            rows = seen.setdefault(entry["step"] // STEPS_PER_EPOCH, {}).setdefault(rank, [])
            rows += [tuple(r) for r in entry["rows"]]
    assert sorted(seen) == [0, 1, 2]
    for epoch, by_rank in seen.items():
        first, second = (set(by_rank[r]) for r in range(PROCESSES))
        assert not first & second, f"epoch {epoch}: a row was trained on by both processes"
        assert first | second == every_row and len(by_rank[0]) + len(by_rank[1]) == ROWS, epoch
    assert seen[0][0] != seen[1][0], "each epoch has its own order"


def test_sigkill_of_the_job_then_resume_ends_where_an_uninterrupted_run_ends(two_process_run, corpus, tiny_model_dir,
                                                                            tmp_path):
    out = tmp_path / "model"
    argv = ["train", "--data", str(corpus), "--model", str(tiny_model_dir), "--output", str(out), *TRAIN]
    job = torchrun(*argv, step_seconds=0.5)
    try:
        wait_for_checkpoint(out.with_name("model.checkpoints"), job, timeout=300)
    finally:  # the launcher and every worker at once (torchrun starts its workers in sessions of their own)
        import psutil

        for process in [*psutil.Process(job.pid).children(recursive=True), psutil.Process(job.pid)]:
            process.send_signal(signal.SIGKILL)
        job.communicate()
    assert not out.exists(), "a killed job leaves no output folder"
    finish(torchrun(*argv, "--resume"))
    same_results(out, two_process_run[0])
