"""A tiny random BERT for tests and benchmarks: real code paths at a fraction of the cost."""

from __future__ import annotations

from pathlib import Path

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_bert(folder: str | Path, words: list[str], seed: int = 0, max_positions: int = 64) -> Path:
    """Write a 2-layer, 32-wide random BERT whose WordPiece vocab is `words`, with its tokenizer, to `folder`."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = SPECIAL_TOKENS + sorted(set(words) - set(SPECIAL_TOKENS))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=max_positions,
    )
    torch.manual_seed(seed)  # the same tiny model every time: runs that train on it are repeatable
    BertModel(config).save_pretrained(folder)
    # On transformers 5, BertTokenizerFast(vocab_file=...) ignores the vocabulary; from_pretrained(dir) reads it.
    tokenizer = BertTokenizerFast.from_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
