"""Fast prediction: `Classifier` over a torch or ONNX Runtime backend, with length-sorted batches."""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
import threading
import typing
from pathlib import Path

import numpy as np

from headcls.config import Backend, PredictConfig
from headcls.errors import HeadclsError
from headcls.model import MULTI_LABEL

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
# Texts read whole (head-tail, chunks) are tokenized this many characters at a time: about 13 bytes of token ids
# per character as Python lists, so a few hundred MB at once.
WHOLE_TEXT_CHARS = 16_000_000


class TorchRunner:
    """Logits from the transformers model; bf16 autocast where the hardware has it."""

    def __init__(self, folder: str, precision: str = "auto", fast_paths: bool = True):
        import torch

        from headcls.hardware import device, use_bf16
        from headcls.model import load_classifier

        self.torch = torch
        self.device = device()
        self.bf16 = use_bf16(precision)
        # bf16 weights rather than autocast: no per-call casts of the weights, measured faster here.
        self.model = load_classifier(folder, self.device, self.bf16, fast_paths).eval()

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        torch = self.torch
        inputs = {k: torch.from_numpy(v).to(self.device) for k, v in batch.items()}
        with torch.inference_mode():
            logits = self.model(**inputs).logits  # (B, num_labels)
        return logits.float().cpu().numpy()


class OnnxRunner:
    """Logits from an ONNX Runtime session over `model.onnx`; neither torch nor transformers is imported."""

    def __init__(self, folder: str, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise HeadclsError("the onnx backend needs ONNX Runtime: pip install 'headcls[onnx]'") from None

        from headcls.model import first_line

        path = Path(folder) / ONNX_FILE
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # A session option, not process-wide state. Without a count ONNX Runtime pins one thread to each core; a
        # process with other busy threads (a server's event loop) then fights the pinned ones: measured half the
        # texts/s in `headcls serve` here, the same offline. So the count is always given.
        options.intra_op_num_threads = threads or usable_cores()
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001  a file-load boundary: ONNX Runtime raises its own types
            raise HeadclsError(f"{path}: not a loadable ONNX model ({first_line(e)})") from None
        self.input_names = {i.name for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        if "input_ids" not in self.input_names or "logits" not in outputs:
            raise HeadclsError(f"{path}: takes {sorted(self.input_names)} and gives {outputs}; "
                               "a headcls export takes input_ids and gives logits")

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        feed = {k: v.astype(np.int64) for k, v in batch.items() if k in self.input_names}
        return self.session.run(["logits"], feed)[0]


def usable_cores() -> int:
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


class RustTokenizer:
    """A folder's tokenizer.json through the `tokenizers` library alone: the same ids as the transformers
    tokenizer that wraps it, without importing transformers and torch (1.5 s of a cold start here)."""

    def __init__(self, tokenizer, model_max_length: int, pad_id: int, pad_type_id: int = 0):
        self.tokenizer = tokenizer
        self.model_max_length = model_max_length
        self.fill = {"input_ids": pad_id, "token_type_ids": pad_type_id}
        self.truncation: int | None = None
        tokenizer.no_padding()
        tokenizer.no_truncation()

    @classmethod
    def from_folder(cls, folder: str) -> RustTokenizer | None:
        """None where the folder has no tokenizer.json or its settings are not plain: use transformers then."""
        from tokenizers import Tokenizer

        folder = Path(folder)
        settings_file = folder / "tokenizer_config.json"
        if not (folder / "tokenizer.json").is_file() or not settings_file.is_file():
            return None
        from headcls.model import first_line, read_json

        settings = read_json(settings_file)
        if settings.get("padding_side", "right") != "right" or settings.get("truncation_side", "right") != "right":
            return None
        pad = settings.get("pad_token")
        pad = pad.get("content") if isinstance(pad, dict) else pad
        try:
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as e:  # noqa: BLE001  a file-load boundary: tokenizers raises a bare Exception
            raise HeadclsError(f"{folder / 'tokenizer.json'}: not a readable tokenizer ({first_line(e)})") from None
        pad_id = tokenizer.token_to_id(pad) if isinstance(pad, str) else None
        if pad_id is None:
            return None
        max_length = settings.get("model_max_length", 512)
        if isinstance(max_length, bool) or not isinstance(max_length, (int, float)) or not max_length >= 1:
            raise HeadclsError(f"{settings_file}: model_max_length must be a positive number, got {max_length!r}")
        return cls(tokenizer, int(min(max_length, 1 << 30)), pad_id, settings.get("pad_token_type_id", 0))

    def __call__(self, texts: list[str], truncation: bool = True, max_length: int | None = None) -> dict:
        wanted = max_length if truncation and max_length else None
        if wanted != self.truncation:  # a Classifier always asks the same length: set once, not per call
            self.tokenizer.no_truncation() if wanted is None else self.tokenizer.enable_truncation(wanted)
            self.truncation = wanted
        encodings = self.tokenizer.encode_batch(texts)
        return {
            "input_ids": [e.ids for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
        }

    def pad(self, features: list[dict], return_tensors: str = "np") -> dict[str, np.ndarray]:
        width = max(len(f["input_ids"]) for f in features)
        batch = {}
        for key in features[0]:
            fill = self.fill.get(key, 0)
            batch[key] = np.array([f[key] + [fill] * (width - len(f[key])) for f in features], dtype=np.int64)
        return batch


def pick_backend(folder: str, backend: str) -> str:
    """auto: ONNX Runtime when the folder holds an exported model (measured faster here), else torch."""
    if backend not in typing.get_args(Backend):
        raise HeadclsError(f"--backend {backend}: choose one of {', '.join(typing.get_args(Backend))}")
    has_onnx = (Path(folder) / ONNX_FILE).is_file()
    has_torch = any(Path(folder).glob("*.safetensors"))
    if backend == "auto":
        return "onnx" if has_onnx else "torch"
    if backend == "onnx" and not has_onnx:
        raise HeadclsError(f"{folder}: no {ONNX_FILE}; create one with: headcls export --model {folder} --output DIR")
    if backend == "torch" and not has_torch:
        raise HeadclsError(f"{folder}: no model.safetensors for the torch backend; use --backend onnx")
    return backend


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
        from headcls.longtext import LongText, special_layout, window_and_stride

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
        (headcls.longtext), each by default as the model was trained.
        """
        from headcls.model import (
            check_model_folder,
            check_model_path,
            check_tokenizer_files,
            config_labels,
            load_tokenizer,
            max_positions,
        )

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
        max_length = min(tokenizer.model_max_length, max_positions(config))
        special = len(tokenizer([""])["input_ids"][0])
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
        saved = settings(config, folder)
        reading = long_text_reading(folder, saved.get("long_text"), long_text=long_text,
                                    head_fraction=head_fraction, stride=stride, pooling=pooling)
        multi = config.get("problem_type") == MULTI_LABEL
        thresholds = saved.get("thresholds")
        if thresholds is not None:
            thresholds = [thresholds.get(name, 0.5) for name in labels]
        return cls(tokenizer, runner, labels, max_length, batch_size, backend, str(folder), multi, thresholds,
                   reading)

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
        from headcls.longtext import Pieces, encode_whole, pool

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


def long_text_options(cfg) -> dict:
    """The long-text flags of an evaluate/predict/serve config, as `Classifier.from_pretrained` takes them."""
    return {name: getattr(cfg, name) for name in ("long_text", "head_fraction", "stride", "pooling")}


def long_text_reading(folder: Path, saved: dict | None, **given):
    """How a model reads long texts: the options given (checked as the flags are) over its config.json's."""
    from pydantic import ValidationError

    from headcls.config import LongTexts, problems
    from headcls.longtext import LongText

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


def settings(config: dict, folder: Path) -> dict:
    """The `headcls` entry of a model's config.json: thresholds and how long texts are read (absent: none); it
    may also hold the learning rates per part the model was trained with (checked by --resume, unused here)."""
    value = config.get("headcls") or {}
    if not isinstance(value, dict):
        raise HeadclsError(f"{folder}/config.json: 'headcls' must be an object; the file is corrupt")
    thresholds = value.get("thresholds")
    if thresholds is not None and not (
        isinstance(thresholds, dict)
        and all(isinstance(t, (int, float)) and not isinstance(t, bool) and 0 <= t <= 1 for t in thresholds.values())
    ):
        raise HeadclsError(f"{folder}/config.json: headcls.thresholds must map labels to numbers in [0, 1]")
    if not isinstance(value.get("long_text") or {}, dict):
        raise HeadclsError(f"{folder}/config.json: headcls.long_text must be an object; the file is corrupt")
    return value


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def read_texts(path: Path, text_column: str | list[str] = "text", encoding: str = "utf-8", chunk_rows: int = 4096):
    """Yield lists of texts from a .txt (one per line), CSV/TSV, JSONL or Parquet file, chunk by chunk, under the
    same rule as training data: a missing, empty or blank text is refused with its row (or line) number; several
    text columns are joined with a space."""
    from headcls.reading import PREDICT_SUFFIXES, column_texts, iter_frames

    txt = path.suffix.lower() == ".txt"
    columns = ["text"] if txt else [text_column] if isinstance(text_column, str) else list(text_column)
    for first, frame in iter_frames(path, encoding, chunk_rows, PREDICT_SUFFIXES):
        if len(frame):
            yield column_texts(frame, path, columns, first, "line" if txt else "row")
        elif not txt:  # a header with no rows still names its columns
            column_texts(frame, path, columns)


def write_predictions(rows, path: Path, top_k: int, jsonl: bool, multi_label: bool = False) -> int:
    """Write (text, result) pairs to `path` as JSONL or else CSV; return the count. A multi-label result's
    labels and scores go in CSV cells as JSON lists."""
    import csv

    count = 0
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = None if jsonl else csv.writer(f)
        if writer:
            header = ["text", "labels", "scores"] if multi_label else ["text", "label", "score"]
            for k in range(1, top_k + 1 if top_k > 1 else 1):
                header += [f"label_{k}", f"score_{k}"]
            writer.writerow(header)
        for text, result in rows:
            if writer:
                if "labels" in result:
                    row = [text, json.dumps(result["labels"], ensure_ascii=False),
                           json.dumps([round(x, 6) for x in result["scores"]])]
                else:
                    row = [text, result["label"], f"{result['score']:.6f}"]
                for item in result.get("top_k", []):
                    row += [item["label"], f"{item['score']:.6f}"]
                writer.writerow(row)
            else:
                f.write(json.dumps({"text": text, **result}, ensure_ascii=False, allow_nan=False) + "\n")
            count += 1
    return count


def predict_file(
    clf: Classifier | typing.Callable[[], Classifier],
    input_path: str | Path,
    output_path: str | Path,
    top_k: int = 1,
    text_column: str | list[str] = "text",
    encoding: str = "utf-8",
    chunk_rows: int = 4096,
    overwrite: bool = False,
) -> int:
    """Stream `input_path` through the classifier into a CSV or JSONL `output_path`; return the row count.

    The run holds a lock on the output, writes a temporary file beside it and renames it at the end, so a
    failed or interrupted run leaves any earlier output untouched (and an existing one is only replaced with
    `overwrite`). `clf` may be a function that loads the classifier: it is called once the output is known to
    be writable, so that a mistake there costs no model load.
    """
    from headcls.atomic import output_lock, staged_file
    from headcls.config import check_output

    input_path, output_path = Path(input_path), Path(output_path)
    if output_path.suffix.lower() not in (".csv", ".jsonl"):
        raise HeadclsError(f"--output {output_path}: write .csv or .jsonl")
    try:
        check_output(output_path, {"input": str(input_path)}, "--output")
    except ValueError as e:
        raise HeadclsError(str(e)) from None
    with output_lock(output_path), staged_file(output_path, overwrite) as tmp:
        texts = read_texts(input_path, text_column, encoding, chunk_rows)
        first = next(texts, None)  # a file that cannot be read fails here, before the model loads
        if not isinstance(clf, Classifier):
            clf = clf()
        top_k = min(top_k, len(clf.labels))

        def rows():
            for chunk in itertools.chain([first], texts) if first is not None else []:  # streamed, chunk by chunk
                yield from zip(chunk, clf.predict(chunk, top_k=top_k))

        return write_predictions(rows(), tmp, top_k, jsonl=output_path.suffix.lower() == ".jsonl",
                                 multi_label=clf.multi_label)


def predict_command(cfg: PredictConfig, echo=print) -> None:
    """`headcls predict`: sentences from the command line to stdout as JSON lines, --input to --output."""
    if cfg.engine == "ray":  # sharded files into a folder of shards, on Ray Data
        from headcls import batch

        return batch.predict_command(cfg)
    from headcls.reading import column_texts

    texts = []
    if cfg.texts:  # the same rule as for files: a blank sentence is refused, not skipped
        import pandas as pd

        texts = column_texts(pd.DataFrame({"text": cfg.texts}), "the sentences", ["text"], row_word="sentence")
    loaded: list[Classifier] = []

    def load() -> Classifier:
        if not loaded:
            loaded.append(Classifier.from_pretrained(
                cfg.model, backend=cfg.backend, precision=cfg.precision, batch_size=cfg.batch_size,
                threads=cfg.threads, fast_paths=cfg.fast_paths, **long_text_options(cfg),
            ))
        return loaded[0]

    if cfg.input:
        n = predict_file(load, cfg.input, cfg.output, cfg.top_k, cfg.text_column, cfg.encoding, overwrite=cfg.overwrite)
        print(f"Wrote {n} predictions to {cfg.output}", file=sys.stderr)
    if texts:
        if sys.stdout is None or sys.stdout.closed:
            raise HeadclsError("standard output is closed: nowhere to print the predictions (use --output FILE)")
        clf = load()
        lines = [json.dumps({"text": t, **r}, ensure_ascii=False, allow_nan=False)
                 for t, r in zip(texts, clf.predict(texts, top_k=cfg.top_k))]
        try:
            for line in lines:
                echo(line)
            sys.stdout.flush()  # a full disk or a closed pipe shows here, not silently at exit
        except BrokenPipeError:
            raise
        except OSError as e:
            raise HeadclsError(f"cannot write the predictions to standard output ({e.strerror})") from None
