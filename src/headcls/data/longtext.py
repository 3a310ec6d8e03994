"""Texts longer than the encoder: cut them (truncate), keep their first and last tokens (head-tail), or read them
as overlapping windows whose logits are pooled per text (chunks).

One rule for training, evaluation and prediction: a text is tokenized whole once, and its pieces are slices of
that encoding with the tokenizer's own special tokens around them ([CLS] ... [SEP] for BERT, <s> ... </s> for
RoBERTa), so a piece reads exactly as the tokenizer would have written it. Pieces are cut from the encoding when a
batch needs them, never stored padded: a 1 MB text costs its token ids and the windows of one batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from headcls.errors import HeadclsError

HEAD_FRACTION = 0.25  # Sun et al. 2019 (How to Fine-Tune BERT for Text Classification?): head 128 + tail 382 best
POOLING = "mean"


@dataclass(frozen=True)
class LongText:
    """How a text past `max_length` tokens is read; saved in the model's config.json (key `headcls`)."""

    mode: str = "truncate"
    head_fraction: float = HEAD_FRACTION
    stride: int | None = None  # chunks: tokens neighbouring windows share (None: a quarter of the window)
    pooling: str = POOLING

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_options(cls, options, saved: dict | None = None) -> LongText:
        """The settings of `options` (a TrainConfig, or an Infers config overriding a model's), over `saved`
        (a model's), over the defaults."""
        base = cls(**{k: v for k, v in (saved or {}).items() if k in cls.__dataclass_fields__})
        given = {"mode": options.long_text, "head_fraction": options.head_fraction, "stride": options.stride,
                 "pooling": options.pooling}
        return cls(**{**asdict(base), **{k: v for k, v in given.items() if v is not None}})


def special_layout(tokenizer) -> tuple[int, int]:
    """How many special tokens a tokenizer puts before and after one text: (1, 1) for [CLS] text [SEP]."""
    empty = tokenizer([""])["input_ids"][0]
    full = tokenizer(["a"])["input_ids"][0]
    n = len(empty)
    for before in range(n + 1):
        after = n - before
        if full[:before] == empty[:before] and full[len(full) - after :] == empty[before:]:
            return before, after
    raise HeadclsError("the tokenizer's special tokens are not around the text; use --long-text truncate")


class Pieces:
    """The pieces of a batch of texts: per text its slices of the encoding (content coordinates, specials
    excluded), and which text each piece belongs to.

    `encoded` is the tokenizer's output for the whole texts (no truncation); `max_length` bounds every piece,
    special tokens included.
    """

    def __init__(self, encoded: dict, long_text: LongText, max_length: int, layout: tuple[int, int]):
        self.encoded = encoded
        self.before, self.after = layout
        window, stride = window_and_stride(long_text, max_length, layout)
        self.doc: list[int] = []  # the text each piece belongs to
        self.slices: list[tuple[tuple[int, int], ...]] = []
        for i, ids in enumerate(encoded["input_ids"]):
            content = len(ids) - self.before - self.after
            for piece in _cut(content, window, long_text, stride):
                self.doc.append(i)
                self.slices.append(piece)

    def __len__(self) -> int:
        return len(self.doc)

    def length(self, p: int) -> int:
        return self.before + self.after + sum(b - a for a, b in self.slices[p])

    def features(self, p: int) -> dict[str, list[int]]:
        """Piece `p` as the tokenizer would have encoded it: specials, its slices of the text, specials."""
        i = self.doc[p]
        out = {}
        for key, values in self.encoded.items():
            row = values[i]
            end = len(row) - self.after
            body = [x for a, b in self.slices[p] for x in row[self.before + a : self.before + b]]
            out[key] = list(row[: self.before]) + body + list(row[end:])
        return out


def window_and_stride(long_text: LongText, max_length: int, layout: tuple[int, int]) -> tuple[int, int]:
    """The text tokens a piece holds (`max_length` less the special tokens) and the tokens windows share."""
    window = max_length - layout[0] - layout[1]
    if window < 1:
        raise HeadclsError(f"max length {max_length} leaves no room beside the special tokens")
    stride = long_text.stride if long_text.stride is not None else window // 4
    if long_text.mode == "chunks" and stride >= window:
        raise HeadclsError(f"--stride {stride}: must be below the window of {window} tokens (max length "
                           f"{max_length} less {layout[0] + layout[1]} special tokens)")
    return window, stride


def _cut(content: int, window: int, long_text: LongText, stride: int) -> list[tuple[tuple[int, int], ...]]:
    """The slices of a text of `content` tokens: one piece for truncate and head-tail, windows for chunks."""
    if content <= window:
        return [((0, content),)]
    if long_text.mode == "truncate":
        return [((0, window),)]
    if long_text.mode == "head-tail":
        head = max(0, min(window, round(window * long_text.head_fraction)))
        tail = window - head
        return [((0, head), (content - tail, content))]
    step = window - stride
    starts = list(range(0, content - window, step)) + [content - window]  # the last window ends with the text
    return [((s, s + window),) for s in starts]


def encode_whole(tokenizer, texts: list[str]) -> dict:
    """Token ids of whole texts (no truncation), without transformers' warning about lengths past the model's:
    the pieces cut from them fit."""
    try:
        return dict(tokenizer(list(texts), truncation=False, verbose=False))
    except TypeError:  # headcls.inference.backends.RustTokenizer takes no `verbose`
        return dict(tokenizer(list(texts), truncation=False))


def pool(logits, doc: list[int], count: int, pooling: str):
    """Per-text logits (count, L) from per-piece logits (P, L): the mean or the maximum of a text's pieces."""
    import numpy as np

    doc = np.asarray(doc, dtype=np.int64)
    out = np.full((count, logits.shape[1]), -np.inf if pooling == "max" else 0.0, dtype=np.float32)
    if pooling == "max":
        np.maximum.at(out, doc, logits)
    else:
        np.add.at(out, doc, logits)
        out /= np.bincount(doc, minlength=count)[:, None]
    return out
