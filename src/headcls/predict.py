"""Fast prediction: `Classifier` over a torch or ONNX Runtime backend, with length-sorted batches."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from headcls.errors import HeadclsError

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx")
ONNX_FILE = "model.onnx"


class TorchRunner:
    """Logits from the transformers model; bf16 autocast where the hardware has it."""

    def __init__(self, folder: str, precision: str = "auto"):
        import torch

        from headcls.hardware import device, use_bf16
        from headcls.model import load_classifier

        self.torch = torch
        self.device = device()
        self.bf16 = use_bf16(precision)
        # bf16 weights rather than autocast: no per-call casts of the weights, measured faster here.
        self.model = load_classifier(folder, self.device, self.bf16).eval()
        self.config = self.model.config

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        torch = self.torch
        inputs = {k: torch.from_numpy(v).to(self.device) for k, v in batch.items()}
        with torch.inference_mode():
            logits = self.model(**inputs).logits  # (B, num_labels)
        return logits.float().cpu().numpy()


class FolderConfig:
    """The parts of config.json that prediction needs, read without importing transformers."""

    def __init__(self, folder: str):
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
        id2label = config.get("id2label") or {str(i): f"LABEL_{i}" for i in range(config.get("num_labels", 2))}
        self.id2label = {int(k): v for k, v in id2label.items()}
        self.max_position_embeddings = config.get("max_position_embeddings", 512)


class OnnxRunner:
    """Logits from an ONNX Runtime session over `model.onnx`; neither torch nor transformers is imported."""

    def __init__(self, folder: str, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise HeadclsError("the onnx backend needs ONNX Runtime: pip install 'headcls[onnx]'") from None

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            str(Path(folder) / ONNX_FILE), options, providers=["CPUExecutionProvider"]
        )
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.config = FolderConfig(folder)

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        feed = {k: v.astype(np.int64) for k, v in batch.items() if k in self.input_names}
        return self.session.run(["logits"], feed)[0]


class RustTokenizer:
    """A folder's tokenizer.json through the `tokenizers` library alone: the same ids as the transformers
    tokenizer that wraps it, without importing transformers and torch (1.5 s of a cold start here)."""

    def __init__(self, tokenizer, model_max_length: int, pad_id: int, pad_type_id: int = 0):
        self.tokenizer = tokenizer
        self.model_max_length = model_max_length
        self.fill = {"input_ids": pad_id, "token_type_ids": pad_type_id}
        tokenizer.no_padding()

    @classmethod
    def from_folder(cls, folder: str) -> RustTokenizer | None:
        """None where the folder has no tokenizer.json or its settings are not plain: use transformers then."""
        from tokenizers import Tokenizer

        folder = Path(folder)
        settings_file = folder / "tokenizer_config.json"
        if not (folder / "tokenizer.json").is_file() or not settings_file.is_file():
            return None
        settings = json.loads(settings_file.read_text(encoding="utf-8"))
        if settings.get("padding_side", "right") != "right" or settings.get("truncation_side", "right") != "right":
            return None
        pad = settings.get("pad_token")
        pad = pad.get("content") if isinstance(pad, dict) else pad
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        pad_id = tokenizer.token_to_id(pad) if isinstance(pad, str) else None
        if pad_id is None:
            return None
        max_length = int(min(settings.get("model_max_length", 512), 1 << 30))
        return cls(tokenizer, max_length, pad_id, settings.get("pad_token_type_id", 0))

    def __call__(self, texts: list[str], truncation: bool = True, max_length: int | None = None) -> dict:
        if truncation and max_length:
            self.tokenizer.enable_truncation(max_length)
        else:
            self.tokenizer.no_truncation()
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
    if backend not in BACKENDS:
        raise HeadclsError(f"--backend {backend}: choose one of {', '.join(BACKENDS)}")
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

    Example:
        >>> clf = Classifier.from_pretrained("outputs/ag_news")
        >>> clf.predict(["The stock market is reaching new heights."])
        [{'label': 'Business', 'score': 0.97}]
    """

    def __init__(self, tokenizer, runner, max_length: int, batch_size: int = 64, backend: str = "torch"):
        self.tokenizer = tokenizer
        self.backend = backend
        self.runner = runner
        self.max_length = max_length
        self.batch_size = batch_size
        id2label = runner.config.id2label
        self.labels = [id2label[i] for i in range(len(id2label))]

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        backend: str = "auto",
        precision: str = "auto",
        batch_size: int = 64,
        threads: int | None = None,
    ) -> Classifier:
        from headcls.model import check_model_folder, load_tokenizer

        folder = Path(folder)
        if not folder.is_dir():
            raise HeadclsError(f"--model {folder}: no such folder")
        check_model_folder(folder)
        backend = pick_backend(str(folder), backend)
        if backend == "onnx":
            tokenizer = RustTokenizer.from_folder(str(folder)) or load_tokenizer(str(folder))
            runner = OnnxRunner(str(folder), threads)
        else:
            tokenizer = load_tokenizer(str(folder))
            if threads:
                import torch

                torch.set_num_threads(threads)
            runner = TorchRunner(str(folder), precision)
        positions = getattr(runner.config, "max_position_embeddings", 512)
        max_length = min(tokenizer.model_max_length, positions)
        return cls(tokenizer, runner, max_length, batch_size, backend)

    def logits(self, texts: list[str]) -> np.ndarray:
        """Logits (N, num_labels) in input order; batches are formed from length-sorted texts."""
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
        ids = encoded["input_ids"]
        order = np.argsort([len(x) for x in ids], kind="stable")  # similar lengths share a batch: little padding
        out = np.empty((len(texts), len(self.labels)), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            features = [{k: encoded[k][i] for k in encoded} for i in chunk]
            batch = self.tokenizer.pad(features, return_tensors="np")
            out[chunk] = self.runner(dict(batch))
        return out

    def predict(self, texts: list[str], top_k: int = 1) -> list[dict]:
        """Label name and score per text; with top_k > 1 also `top_k`: the k best (label, score) pairs."""
        if isinstance(texts, str):
            texts = [texts]
        logits = self.logits(texts)
        probs = softmax(logits)
        best = probs.argmax(axis=1)
        results = []
        for row, b in zip(probs, best):
            item = {"label": self.labels[b], "score": float(row[b])}
            if top_k > 1:
                top = np.argsort(-row)[:top_k]
                item["top_k"] = [{"label": self.labels[j], "score": float(row[j])} for j in top]
            results.append(item)
        return results


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def read_texts(path: Path, text_column: str, encoding: str, chunk_rows: int):
    """Yield lists of texts from a .txt (one per line), CSV/TSV, JSONL or Parquet file, chunk by chunk."""
    import pandas as pd

    from headcls.data import decode_text, file_format

    if not path.is_file():
        raise HeadclsError(f"{path}: file not found")
    if path.suffix.lower() == ".txt":
        with path.open("rb") as f:
            chunk = []
            for number, raw in enumerate(f, start=1):
                line = decode_text(raw, f"{path} line {number}", encoding).rstrip("\r\n")
                if line.strip():
                    chunk.append(line)
                if len(chunk) >= chunk_rows:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk
        return
    fmt = file_format(path)
    with path.open("rb") as f:
        head = f.read(1 << 16)
    decode_text(head, path, encoding, final=False)  # a binary or wrongly encoded file fails here, at once
    if fmt == "parquet":
        frames = [pd.read_parquet(path)]
    elif fmt == "jsonl":
        frames = pd.read_json(path, lines=True, chunksize=chunk_rows, dtype=False, encoding=encoding)
    else:
        frames = pd.read_csv(
            path,
            sep="\t" if fmt == "tsv" else ",",
            dtype=str,
            keep_default_na=False,
            chunksize=chunk_rows,
            encoding=encoding,
        )
    try:
        for frame in frames:
            if text_column not in frame.columns:
                found = ", ".join(repr(str(c)) for c in frame.columns)
                raise HeadclsError(f"{path}: missing text column {text_column!r}; columns found: {found}")
            yield [str(t) for t in frame[text_column].tolist()]
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as e:
        raise HeadclsError(f"{path}: cannot be read ({str(e).splitlines()[0]})") from None


def predict_file(
    clf: Classifier,
    input_path: str | Path,
    output_path: str | Path,
    top_k: int = 1,
    text_column: str = "text",
    encoding: str = "utf-8",
    chunk_rows: int = 4096,
) -> int:
    """Stream `input_path` through the classifier into a CSV or JSONL `output_path`; return the row count.

    The output is written to a temporary file beside it and renamed at the end, so a failed run leaves
    any earlier output untouched.
    """
    import csv

    input_path, output_path = Path(input_path), Path(output_path)
    fmt = output_path.suffix.lower()
    if fmt not in (".csv", ".jsonl"):
        raise HeadclsError(f"--output {output_path}: write .csv or .jsonl")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_path.with_name(f".{output_path.name}.partial")
    count = 0
    try:
        with tmp.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f) if fmt == ".csv" else None
            if writer:
                header = ["text", "label", "score"]
                for k in range(1, top_k + 1 if top_k > 1 else 1):
                    header += [f"label_{k}", f"score_{k}"]
                writer.writerow(header)
            for texts in read_texts(input_path, text_column, encoding, chunk_rows):
                for text, result in zip(texts, clf.predict(texts, top_k=top_k)):
                    if writer:
                        row = [text, result["label"], f"{result['score']:.6f}"]
                        for item in result.get("top_k", []):
                            row += [item["label"], f"{item['score']:.6f}"]
                        writer.writerow(row)
                    else:
                        f.write(json.dumps({"text": text, **result}, ensure_ascii=False) + "\n")
                count += len(texts)
        tmp.replace(output_path)
    finally:
        tmp.unlink(missing_ok=True)
    return count
