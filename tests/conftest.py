"""Shared fixtures: a tiny random BERT built here, a toy labelled corpus, one model trained on it (and its ONNX
exports), and a multi-label model. Plain helpers and constants are in tests/helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import FILLER, KEYWORDS, TINY_TRAIN, TRAINED, multi_rows, toy_rows, write_jsonl
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


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory, tiny_model_dir, toy_data) -> Path:
    """The tiny model fine-tuned once on the toy corpus through the CLI (helpers.TRAINED: 12 epochs, one thread),
    shared by the tests that use it."""
    out = tmp_path_factory.mktemp("trained") / "model"
    argv = ["-q", "train", "--data", str(toy_data), "--model", str(tiny_model_dir), "--output", str(out), *TRAINED]
    assert main(argv) == 0
    return out


@pytest.fixture(scope="session")
def exported_dirs(trained_dir, tmp_path_factory) -> dict[str, Path]:
    """`headcls export` of the trained model, fp32 and int8, shared by the tests that only read them."""
    folders = {}
    for name, flags in (("fp32", []), ("int8", ["--int8"])):
        out = tmp_path_factory.mktemp("onnx") / name
        assert main(["-q", "export", "--model", str(trained_dir), "--output", str(out), *flags]) == 0
        folders[name] = out
    return folders


@pytest.fixture(scope="session")
def multi_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multi-data")
    write_jsonl(multi_rows(280, seed=1), folder / "train.jsonl")
    write_jsonl(multi_rows(70, seed=2), folder / "test.jsonl")
    return folder


@pytest.fixture(scope="session")
def multi_model(tmp_path_factory, tiny_model_dir, multi_data):
    """The tiny model trained on the multi-label toy corpus, with tuned thresholds."""
    out = tmp_path_factory.mktemp("multi") / "model"
    argv = ["-q", "train", "--data", str(multi_data), "--model", str(tiny_model_dir), "--output", str(out),
            "--tune-thresholds", *TINY_TRAIN]
    assert main(argv) == 0
    return out
