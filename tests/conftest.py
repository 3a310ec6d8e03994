"""Shared fixtures: a tiny random BERT built here, a toy labelled corpus, and one model trained on it."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest

from headcls.cli import main

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Each class has its own keywords, so even a tiny random model learns the task in a few epochs.
KEYWORDS = {
    "sports": ["match", "goal", "team", "coach", "season", "league"],
    "business": ["market", "stock", "profit", "bank", "shares", "trade"],
    "science": ["space", "nasa", "software", "internet", "research", "chip"],
}
FILLER = ["the", "a", "of", "in", "today", "new", "report", "says", "after", "week"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


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
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = SPECIAL + sorted({w for ws in KEYWORDS.values() for w in ws} | set(FILLER) | {"unseen", "words"})
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)  # the same tiny model in every session: tests that train on it are repeatable
    BertModel(config).save_pretrained(folder)
    # On transformers 5, BertTokenizerFast(vocab_file=...) ignores the vocabulary; from_pretrained(dir) reads it.
    tokenizer = BertTokenizerFast.from_pretrained(folder)
    tokenizer.save_pretrained(folder)
    ids = tokenizer("market goal space")["input_ids"]
    assert tokenizer.unk_token_id not in ids, "the tiny tokenizer must know the toy words"
    return folder


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("toy-data")
    toy_rows(240, seed=1).to_csv(folder / "train.csv", index=False)
    toy_rows(60, seed=2).to_csv(folder / "test.csv", index=False)
    return folder


TINY_TRAIN = ["--epochs", "15", "--batch-size", "16", "--learning-rate", "3e-3", "--warmup-steps", "0"]


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory, tiny_model_dir, toy_data) -> Path:
    """The tiny model fine-tuned once on the toy corpus through the CLI, shared by the tests that use it."""
    out = tmp_path_factory.mktemp("trained") / "model"
    argv = ["-q", "train", "--data", str(toy_data), "--model", str(tiny_model_dir), "--output", str(out), *TINY_TRAIN]
    assert main(argv) == 0
    return out
