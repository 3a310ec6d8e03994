"""Plain helpers shared by the test modules: the toy corpus, CLI runs and their one-line errors, child processes
(tests/slow_run.py, tests/slow_serve.py), and a running server. Fixtures live in tests/conftest.py."""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from headcls.cli import main

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SHARED_DATA = REPO.parent / "shared" / "data"
SLOW_RUN = TESTS / "slow_run.py"
SLOW_SERVE = TESTS / "slow_serve.py"

# --- the toy corpus ----------------------------------------------------------------------------------------------

# Each class has its own keywords, so even a tiny random model learns the task in a few epochs.
KEYWORDS = {
    "sports": ["match", "goal", "team", "coach", "season", "league"],
    "business": ["market", "stock", "profit", "bank", "shares", "trade"],
    "science": ["space", "nasa", "software", "internet", "research", "chip"],
}
FILLER = ["the", "a", "of", "in", "today", "new", "report", "says", "after", "week"]
TOPICS = list(KEYWORDS)


def toy_rows(n: int, seed: int) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = list(KEYWORDS)[i % len(KEYWORDS)]
        words = rng.sample(KEYWORDS[label], 3) + rng.sample(FILLER, 4)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return pd.DataFrame(rows)


def frame(n: int, labels: list) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"row number {i}" for i in range(n)], "label": [labels[i % len(labels)] for i in range(n)]})


def multi_rows(n: int, seed: int) -> pd.DataFrame:
    """Rows with one or two topics each (and a few with none): the keywords of each of its topics, and filler."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        kind = i % 7
        topics = [] if kind == 6 else [TOPICS[kind % 3]] if kind < 3 else rng.sample(TOPICS, 2)
        words = [w for t in topics for w in rng.sample(KEYWORDS[t], 2)] + rng.sample(FILLER, 3)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": sorted(topics)})
    return pd.DataFrame(rows)


def write_jsonl(frame: pd.DataFrame, path) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in frame.to_dict("records")), encoding="utf-8")


def long_texts(n: int, seed: int) -> list[str]:
    """Texts of 3 to 40 words: many past the tiny model's 64 positions."""
    rng = random.Random(seed)
    words = [w for ws in KEYWORDS.values() for w in ws] + FILLER
    return [" ".join(rng.choices(words, k=rng.randint(3, 40))) for _ in range(n)]


# fp32: tests compare tiny runs across processes and resumes to float precision, and expect the same model on
# every machine. Under bf16 (auto on AVX-512 BF16) a resumed run's validation loss differed from the
# uninterrupted run's by 6e-4 (relative; same predictions), where fp32 agrees to 1e-5. bf16 training is covered
# by test_real_ag_news, which trains with auto.
TINY_TRAIN = ["--epochs", "20", "--batch-size", "16", "--learning-rate", "3e-3", "--warmup-steps", "0", "--seed", "1",
              "--precision", "fp32"]
# The session's trained model (conftest's trained_dir) and the runs compared with it or interrupted (train_argv):
# TINY_TRAIN for 12 epochs instead of 20, 40% fewer steps. Measured with seed 1: test accuracy 1.0 and a score of at
# least 0.9 for every text the tests predict, one-word texts ("goal", "bank") included (0.98 after 20 epochs; after 8,
# about 0.55: too close to call). The multi-label model still needs TINY_TRAIN's 20 (micro-F1 0.87 after 12).
# One thread: these runs are compared to float precision across processes and resumes, and the thread count changes
# the sums (12 epochs at 2 threads against 1: validation losses 7e-4 apart, relative; 20 epochs: 1.1e-5). Without
# it the count is the process's: the CLI sets it for the process it runs in, so a test that runs `main(...,
# "--threads", "1")` in-process (the Ray engine's) changes it for every later test. One thread is also the fastest
# for the tiny model on a busy machine (8 s against 86 s for 12 epochs at a load of 6 on 2 cores).
TRAINED = ["--epochs", "12", *TINY_TRAIN[2:], "--threads", "1"]

# --- the CLI and its one-line errors -------------------------------------------------------------------------------

ROWS = "the team scored a goal,sports\nbank shares rose,business\nnasa space chip,science\n"
GOOD = "text,label\n" + ROWS * 4


def write(folder: Path, name: str, content: str | bytes) -> str:
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return str(path)


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


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def headcls(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """The CLI in a child process, as a user runs it."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **kwargs.pop("env", {})}
    if "stdout" not in kwargs and "stderr" not in kwargs:
        kwargs["capture_output"] = True
    return subprocess.run([sys.executable, "-m", "headcls", *args], text=True, env=env, timeout=300, check=False,
                          **kwargs)


# --- training runs in a child process (tests/slow_run.py), to interrupt ------------------------------------------

def train_argv(data: Path, model: Path, out: Path, *extra: str) -> list[str]:
    """The command of conftest's trained_dir, to another output: an uninterrupted run of it gives trained_dir."""
    return ["-q", "train", "--data", str(data), "--model", str(model), "--output", str(out), *TRAINED, *extra]


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


# --- `headcls serve` in a child process (tests/slow_serve.py) ---------------------------------------------------

TEXTS = ["the team scored a goal in the match", "bank", "nasa space research chip software internet", "goal",
         "the stock market shares and trade profit today"]


class Server:
    def __init__(self, proc: subprocess.Popen, port: int):
        self.proc, self.port = proc, port

    def call(self, method: str, path: str, body=None, headers: dict | None = None, raw: bytes | None = None,
             timeout: float = 60):
        """(status, headers, JSON or text) of one request on a fresh connection."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        sent = {"Content-Type": "application/json", **(headers or {})} if data is not None else dict(headers or {})
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        text = response.read().decode()
        connection.close()
        try:
            payload = json.loads(text)
        except json.JSONDecodeError:
            payload = text
        return response.status, dict(response.getheaders()), payload

    def classify(self, body, **kwargs):
        return self.call("POST", "/v1/classify", body, **kwargs)


@contextmanager
def serving(model: Path, *flags: str, delay: float = 0.0, env: dict | None = None):
    """Start `headcls serve` on a free port and wait until /readyz says ready; stop it afterwards."""
    argv = [sys.executable, str(SLOW_SERVE), "--delay", str(delay), "--", "serve", "--model", str(model),
            "--port", "0", *flags]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    assert match, line + proc.stderr.read()
    server = Server(proc, int(match.group(1)))
    deadline = time.monotonic() + 60
    while server.call("GET", "/readyz")[0] != 200:
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    try:
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def in_thread(function, *args, **kwargs) -> dict:
    """Run `function` in a thread; the dict gets its result (or error) under 'value'."""
    out: dict = {}

    def target():
        try:
            out["value"] = function(*args, **kwargs)
        except Exception as e:  # noqa: BLE001  reported by the test
            out["value"] = e

    out["thread"] = threading.Thread(target=target)
    out["thread"].start()
    return out


def tiny_classifier(folder, attention: str = "eager", dropout: float = 0.0):
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(3)
    return AutoModelForSequenceClassification.from_pretrained(
        folder, num_labels=3, attn_implementation=attention,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
    )
