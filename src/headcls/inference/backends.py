"""The engines under a `Classifier`: torch or ONNX Runtime for logits, and the torch-free tokenizer."""

from __future__ import annotations

import os
import typing
from pathlib import Path

import numpy as np

from headcls.errors import HeadclsError, first_line
from headcls.modeling.folder import ONNX_FILE, read_json
from headcls.options.fields import Backend


class TorchRunner:
    """Logits from the transformers model; bf16 autocast where the hardware has it."""

    def __init__(self, folder: str, precision: str = "auto", fast_paths: bool = True):
        import torch

        from headcls.modeling.loading import load_classifier
        from headcls.runtime.hardware import device, use_bf16

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
