"""Shared fixtures: a tiny random BERT built here, a toy labelled corpus, and one model trained on it."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, settings

from headcls.cli import main

# Nothing in the tests may reach the hub: a hub id fails at once instead of waiting on the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("HEADCLS_DATA_DIR", None)

# Fuzzing (tests/test_fuzz.py): CI runs a fixed sample ("ci"); `--hypothesis-profile long` explores at random.
SLOW_EXAMPLES = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large,
                 HealthCheck.filter_too_much]
settings.register_profile("ci", max_examples=40, derandomize=True, database=None, deadline=None,
                          suppress_health_check=SLOW_EXAMPLES, print_blob=True)
settings.register_profile("long", max_examples=1000, deadline=None, suppress_health_check=SLOW_EXAMPLES,
                          print_blob=True)
settings.load_profile("ci")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Each class has its own keywords, so even a tiny random model learns the task in a few epochs.
KEYWORDS = {
    "sports": ["match", "goal", "team", "coach", "season", "league"],
    "business": ["market", "stock", "profit", "bank", "shares", "trade"],
    "science": ["space", "nasa", "software", "internet", "research", "chip"],
}
FILLER = ["the", "a", "of", "in", "today", "new", "report", "says", "after", "week"]


def toy_rows(n: int, seed: int) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = list(KEYWORDS)[i % len(KEYWORDS)]
        words = rng.sample(KEYWORDS[label], 3) + rng.sample(FILLER, 4)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random BERT with a WordPiece vocab covering the toy corpus."""
    from transformers import AutoTokenizer

    from headcls.testing import tiny_bert

    words = [w for ws in KEYWORDS.values() for w in ws] + FILLER + ["unseen", "words"]
    folder = tiny_bert(tmp_path_factory.mktemp("tiny-bert"), words)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.unk_token_id not in tokenizer("market goal space")["input_ids"], "the toy words are known"
    return folder


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("toy-data")
    toy_rows(240, seed=1).to_csv(folder / "train.csv", index=False)
    toy_rows(60, seed=2).to_csv(folder / "test.csv", index=False)
    return folder


# fp32: tests compare tiny runs across processes and resumes to float precision, and expect the same model on
# every machine. Under bf16 (auto on AVX-512 BF16) a resumed run's validation loss differed from the
# uninterrupted run's by 6e-4 (relative; same predictions), where fp32 agrees to 1e-5. bf16 training is covered
# by test_real_ag_news, which trains with auto.
TINY_TRAIN = ["--epochs", "20", "--batch-size", "16", "--learning-rate", "3e-3", "--warmup-steps", "0", "--seed", "1",
              "--precision", "fp32"]


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory, tiny_model_dir, toy_data) -> Path:
    """The tiny model fine-tuned once on the toy corpus through the CLI, shared by the tests that use it."""
    out = tmp_path_factory.mktemp("trained") / "model"
    argv = ["-q", "train", "--data", str(toy_data), "--model", str(tiny_model_dir), "--output", str(out), *TINY_TRAIN]
    assert main(argv) == 0
    return out
