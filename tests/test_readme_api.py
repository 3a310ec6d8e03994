"""The README's "Python API" section, run for real, so that it cannot drift from the API.

Its ```python blocks run in order, in one namespace, in a temporary folder holding the files they name (news.csv
and news-test.csv: the toy corpus). Two things differ from a reader's run, to keep it to seconds: the line
`ENCODER = None ...` names the tiny test encoder instead, and `headcls.train` checks the options as the README
gives them, then trains with conftest's TINY_TRAIN settings (epochs, batch size, learning rate, ...) over them.
torch runs on one thread meanwhile.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from conftest import TINY_TRAIN, toy_rows

import headcls
from headcls.options.commands import TrainConfig
from headcls.options.loading import options_for

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Python API"
ENCODER_LINE = re.compile(r"^ENCODER = None\b.*$", re.MULTILINE)
# TINY_TRAIN as keyword options: ["--epochs", "20", ...] -> {"epochs": "20", ...} (checked as flags are)
TINY = {flag.removeprefix("--").replace("-", "_"): value for flag, value in zip(TINY_TRAIN[::2], TINY_TRAIN[1::2])}


def python_blocks(text: str) -> list[tuple[int, str]]:
    """The ```python blocks of the section, as (line number of their first line in the README, code)."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == SECTION]
    assert len(starts) == 1, f"README.md has {len(starts)} '{SECTION}' headings; the test reads exactly one"
    end = next((i for i in range(starts[0] + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    blocks, code, first = [], None, 0
    for i in range(starts[0] + 1, end):
        line = lines[i]
        if code is None and line.strip() == "```python":
            code, first = [], i + 2  # README line numbers count from 1
        elif code is not None and line.strip() == "```":
            blocks.append((first, "\n".join(code)))
            code = None
        elif code is not None:
            code.append(line)
    assert code is None, "a ```python block of the section is not closed"
    return blocks


def quick_train(train):
    """`headcls.train` that checks the options as given (so the README's own mistakes, and its error example,
    raise as they would), then trains with the tiny settings over them."""

    def run(cfg=None, /, **options):
        given = {k: v for k, v in options.items() if k not in ("callbacks", "stop", "echo")}
        options_for(TrainConfig, cfg, given)
        return train(cfg, **{**options, **TINY})

    return run


@pytest.fixture
def one_torch_thread():
    """torch's threads are the caller's (the README says so): one is the fastest for the tiny model, and many
    times faster than two spinning against each other on a busy machine. Restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_readme_python_api(tmp_path, monkeypatch, capsys, tiny_model_dir, one_torch_thread):
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 3, "the section shows training, prediction and errors"
    whole = "\n".join(code for _, code in blocks)
    assert len(ENCODER_LINE.findall(whole)) == 1, "one line `ENCODER = None  # ...` names the encoder"
    toy_rows(240, seed=1).to_csv(tmp_path / "news.csv", index=False)
    toy_rows(60, seed=2).to_csv(tmp_path / "news-test.csv", index=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(headcls, "train", quick_train(headcls.train))
    namespace: dict = {"__name__": "readme"}
    for line, code in blocks:
        code = ENCODER_LINE.sub(f"ENCODER = {str(tiny_model_dir)!r}", code)
        # padded so that a traceback points at the README's own line
        exec(compile("\n" * (line - 1) + code, str(README), "exec"), namespace)  # noqa: S102 (running the README is the point)
    out = capsys.readouterr().out
    check_training(namespace)
    check_using(namespace)
    assert "--batch-size must be at least 1, got 0" in out, "the error example prints the CLI's line"
    assert "interrupted; the last checkpoint is in outputs/news-2.checkpoints" in out
    assert namespace["resumed"]["accuracy"] > 0.8, "the resumed run finished and learned the task"
    assert not (tmp_path / "outputs" / "news-2.checkpoints").exists(), "a finished run removes its checkpoints"


def check_training(namespace: dict) -> None:
    """The first block: the metrics returned and written, and the losses the callback recorded."""
    import json

    metrics = namespace["metrics"]
    assert 0.8 < metrics["accuracy"] <= 1, "the keyword task is easy: the tiny model learns it"
    assert json.loads(json.dumps(metrics)) == json.loads(Path("outputs/news/metrics.json").read_text())
    losses = namespace["log"].losses
    steps = [step for step, _ in losses]
    assert len(losses) == metrics["schedule"]["steps"] // 10, "one loss per logging step (10 steps)"
    assert steps == sorted(set(steps)) and all(step % 10 == 0 for step in steps)
    assert all(isinstance(loss, float) and math.isfinite(loss) for _, loss in losses)
    assert losses[-1][1] < losses[0][1], "the loss fell while the model learned"


def check_using(namespace: dict) -> None:
    """The second block: predictions with the model's labels, the evaluation, the export and its classifier."""
    clf, fast = namespace["clf"], namespace["fast"]
    labels = sorted(set(toy_rows(240, seed=1)["label"]))
    assert clf.labels == labels
    texts = ["The team won the league match", "Bank shares rose on the stock market"]
    predictions = clf.predict(texts)
    assert [p["label"] for p in predictions] == ["sports", "business"]
    assert all(0 < p["score"] <= 1 for p in predictions)
    assert namespace["report"]["accuracy"] == pytest.approx(namespace["metrics"]["accuracy"]), \
        "evaluating the saved folder on the test file gives the training run's figure"
    assert Path("outputs/news-eval/metrics.json").is_file()
    assert 0.9 <= namespace["check"]["agreement"] <= 1
    assert fast.backend == "onnx" and fast.labels == labels
    assert {p["label"] for p in fast.predict(texts)} <= set(labels)
