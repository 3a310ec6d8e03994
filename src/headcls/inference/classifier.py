"""Fast prediction: `Classifier` over a torch or ONNX Runtime backend, with length-sorted batches."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from headcls.errors import HeadclsError
from headcls.inference.backends import OnnxRunner, RustTokenizer, TorchRunner, pick_backend
from headcls.modeling.folder import is_multi_label, settings

logger = logging.getLogger(__name__)


# Texts read whole (head-tail, chunks) are tokenized this many characters at a time: about 13 bytes of token ids
# per character as Python lists, so a few hundred MB at once.
WHOLE_TEXT_CHARS = 16_000_000


class Classifier:
    """A trained text classifier that returns label names and scores.

    Constructing or calling it changes no process-wide state (no thread counts, no patches), so a server or a
    worker can share one: for torch's thread count, call `torch.set_num_threads` once in the program that owns
    the process (the CLI does for --threads).

    Example:
        >>> clf = Classifier.from_pretrained("outputs/ag_news")
        >>> clf.predict(["The stock market is reaching new heights."])
        [{'label': 'Business', 'score': 0.97}]
    """

    def __init__(self, tokenizer, runner, labels: list[str], max_length: int, batch_size: int = 64,
                 backend: str = "torch", name: str = "", multi_label: bool = False,
                 thresholds: list[float] | None = None, long_text=None):
        from headcls.data.longtext import LongText, special_layout, window_and_stride

        self.tokenizer = tokenizer
        self.backend = backend
        self.runner = runner
        self.labels = labels
        self.max_length = max_length
        self.batch_size = batch_size
        self.name = name
        self.multi_label = multi_label  # sigmoid per label; the labels at or above their thresholds are predicted
        self.thresholds = list(thresholds) if thresholds is not None else [0.5] * len(labels)
        self.long_text = long_text or LongText()
        self.layout = special_layout(tokenizer) if self.long_text.mode != "truncate" else None
        if self.layout is not None:
            window_and_stride(self.long_text, max_length, self.layout)  # a --stride too large fails here, at load
        # A fast tokenizer's Rust object is not safe to share: transformers sets its truncation per call ("Already
        # borrowed" when two threads do). Tokenizing is a small part of a call, so threads take turns at it.
        self._tokenizing = threading.Lock()

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        backend: str = "auto",
        precision: str = "auto",
        batch_size: int = 64,
        threads: int | None = None,
        fast_paths: bool = True,
        long_text: str | None = None,
        head_fraction: float | None = None,
        stride: int | None = None,
        pooling: str | None = None,
    ) -> Classifier:
        """Load a folder written by `headcls train` or `headcls export`.

        `threads` sets ONNX Runtime's session threads; it does not touch torch's process-wide count.
        `long_text`, `head_fraction`, `stride`, `pooling`: how texts past the model's length are read
        (headcls.data.longtext), each by default as the model was trained.
        """
        from headcls.modeling.folder import check_model_folder, check_model_path, check_tokenizer_files, config_labels
        from headcls.modeling.loading import load_tokenizer

        check_model_path(str(folder))
        folder = Path(folder)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise HeadclsError(f"batch_size must be a whole number of at least 1, got {batch_size!r}")
        config = check_model_folder(folder)
        labels = config_labels(config, folder)
        check_tokenizer_files(folder)
        backend = pick_backend(str(folder), backend)
        if backend == "onnx":
            tokenizer = RustTokenizer.from_folder(str(folder)) or load_tokenizer(str(folder))
            runner = OnnxRunner(str(folder), threads)
        else:
            tokenizer = load_tokenizer(str(folder))
            runner = TorchRunner(str(folder), precision, fast_paths)
        max_length = _fitting_tokenizer(folder, tokenizer, config)
        saved = settings(config, folder)
        reading = long_text_reading(folder, saved.get("long_text"), long_text=long_text,
                                    head_fraction=head_fraction, stride=stride, pooling=pooling)
        multi = is_multi_label(config)
        thresholds = saved.get("thresholds")
        if thresholds is not None:
            thresholds = [thresholds.get(name, 0.5) for name in labels]
        return cls(tokenizer, runner, labels, max_length, batch_size, backend, str(folder), multi, thresholds,
                   reading)

    @classmethod
    def from_config(cls, cfg, **overrides) -> Classifier:
        """Load the model of a command's options (evaluate, predict, serve: an `Infers` schema) as they say."""
        options = {"backend": cfg.backend, "precision": cfg.precision, "batch_size": cfg.batch_size,
                   "threads": cfg.threads, "fast_paths": cfg.fast_paths, **long_text_options(cfg)}
        return cls.from_pretrained(cfg.model, **{**options, **overrides})

    def logits(self, texts: list[str]) -> np.ndarray:
        """Logits (N, num_labels) in input order, one row per text (with --long-text chunks: its windows'
        logits pooled); batches are formed from length-sorted pieces. Texts read whole (head-tail, chunks) are
        tokenized a group of at most WHOLE_TEXT_CHARS characters at a time, so the token ids held at once stay
        bounded however many long texts one call is given."""
        if self.layout is None or len(texts) < 2:
            return self._logits(texts, 0, len(texts))
        parts, start, size = [], 0, 0
        for i, text in enumerate(texts):
            if size and size + len(text) > WHOLE_TEXT_CHARS:
                parts.append(self._logits(texts[start:i], start, len(texts)))
                start, size = i, 0
            size += len(text)
        parts.append(self._logits(texts[start:], start, len(texts)))
        return np.concatenate(parts)

    def _logits(self, texts: list[str], offset: int, total: int) -> np.ndarray:
        """Logits of texts[offset : offset + len(texts)] of a call given `total` texts (for the error's count)."""
        from headcls.data.longtext import Pieces, encode_whole, pool

        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        with self._tokenizing:
            if self.layout is None:
                encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
            else:
                encoded = encode_whole(self.tokenizer, texts)
        if self.layout is None:
            count, doc = len(texts), None
            lengths = [len(x) for x in encoded["input_ids"]]

            def features(i):
                return {k: encoded[k][i] for k in encoded}
        else:
            pieces = Pieces(encoded, self.long_text, self.max_length, self.layout)
            count, doc, features = len(pieces), pieces.doc, pieces.features
            lengths = [pieces.length(p) for p in range(count)]
        order = np.argsort(lengths, kind="stable")  # similar lengths share a batch: little padding
        out = np.empty((count, len(self.labels)), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            rows = [features(i) for i in chunk]
            batch = self.tokenizer.pad(rows, return_tensors="np")
            logits = self.runner(dict(batch))  # (B, num_labels)
            if logits.shape != (len(chunk), len(self.labels)):
                raise HeadclsError(
                    f"{self.name}: the model gives {logits.shape[-1]} scores per text but config.json names "
                    f"{len(self.labels)} labels; the folder is inconsistent"
                )
            out[chunk] = logits
        bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
        if len(bad):
            text = doc[bad[0]] if doc is not None else bad[0]
            raise HeadclsError(
                f"{self.name}: the model gives non-finite scores (NaN or infinity) for text {offset + text + 1} of "
                f"{total}; its weights are broken: train it again"
            )
        return out if doc is None else pool(out, doc, len(texts), self.long_text.pooling)

    def scores(self, texts: list[str]) -> np.ndarray:
        """Per-label probabilities (N, num_labels): softmax, or a sigmoid per label for a multi-label model."""
        logits = self.logits(texts)
        return sigmoid(logits) if self.multi_label else softmax(logits)

    def predict(self, texts: list[str], top_k: int = 1) -> list[dict]:
        """Label name and score per text; with top_k > 1 also `top_k`: the k best (label, score) pairs."""
        if isinstance(texts, str):
            texts = [texts]
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise HeadclsError(f"top_k must be a whole number of at least 1, got {top_k!r}")
        top_k = min(top_k, len(self.labels))
        probs = self.scores(texts)
        if self.multi_label:
            return [self._labels_above(row, top_k) for row in probs]
        best = probs.argmax(axis=1)
        results = []
        for row, b in zip(probs, best):
            item = {"label": self.labels[b], "score": float(row[b])}
            if top_k > 1:
                top = np.argsort(-row)[:top_k]
                item["top_k"] = [{"label": self.labels[j], "score": float(row[j])} for j in top]
            results.append(item)
        return results


    def _labels_above(self, row: np.ndarray, top_k: int) -> dict:
        """Multi-label: every label at or above its threshold, best first, with its score."""
        chosen = [j for j in np.argsort(-row, kind="stable") if row[j] >= self.thresholds[j]]
        item = {"labels": [self.labels[j] for j in chosen], "scores": [float(row[j]) for j in chosen]}
        if top_k > 1:
            top = np.argsort(-row, kind="stable")[:top_k]
            item["top_k"] = [{"label": self.labels[j], "score": float(row[j])} for j in top]
        return item


def _fitting_tokenizer(folder: Path, tokenizer, config: dict) -> int:
    """The tokens a text may have (the tokenizer's and the model's limit); a tokenizer that leaves no room beside
    its special tokens, or that has ids past the model's embedding table, is refused."""
    from headcls.modeling.loading import max_positions, special_token_count

    max_length = min(tokenizer.model_max_length, max_positions(config))
    special = special_token_count(tokenizer)
    if max_length <= special:
        raise HeadclsError(
            f"{folder}: the tokenizer's model_max_length ({max_length}) leaves no room beside its "
            f"{special} special tokens; fix tokenizer_config.json"
        )
    size = len(tokenizer) if hasattr(tokenizer, "__len__") else tokenizer.tokenizer.get_vocab_size()
    vocab = config.get("vocab_size")
    if isinstance(vocab, int) and size > vocab:  # ids past the embedding table: an index error, or nonsense
        raise HeadclsError(f"{folder}: the tokenizer has {size} tokens but the model only {vocab}; the "
                           "tokenizer files are not this model's")
    return max_length


def long_text_options(cfg) -> dict:
    """The long-text flags of an evaluate/predict/serve config, as `Classifier.from_pretrained` takes them."""
    return {name: getattr(cfg, name) for name in ("long_text", "head_fraction", "stride", "pooling")}


def long_text_reading(folder: Path, saved: dict | None, **given):
    """How a model reads long texts: the options given (checked as the flags are) over its config.json's."""
    from pydantic import ValidationError

    from headcls.data.longtext import LongText
    from headcls.options.fields import LongTexts
    from headcls.options.loading import problems

    try:
        overrides = LongTexts(**given)
    except ValidationError as e:
        raise HeadclsError(problems(e.errors(), set(), None, LongTexts)) from None
    try:
        merged = LongText.from_options(overrides, saved)
        if None in (merged.mode, merged.head_fraction, merged.pooling):  # only the stride has a default of None
            raise ValueError(merged)
        checked = LongTexts(long_text=merged.mode, head_fraction=merged.head_fraction, stride=merged.stride,
                            pooling=merged.pooling)
        reading = LongText(checked.long_text, checked.head_fraction, checked.stride, checked.pooling)
    except (ValueError, TypeError):  # pydantic's ValidationError is a ValueError
        raise HeadclsError(f"{folder}/config.json: headcls.long_text is not valid ({saved!r:.80}); the file is "
                           "corrupt") from None
    if problem := overrides.misplaced(reading.mode):
        raise HeadclsError(f"{problem}; {folder} reads long texts as {reading.mode}")
    return reading


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)
