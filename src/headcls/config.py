"""Settings as dataclasses: defaults < YAML config file < command-line flags.

The field names are the flag names with dashes turned into underscores, so a YAML config mirrors the CLI
field for field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from headcls.errors import HeadclsError


@dataclass
class DataConfig:
    """Where the labelled text comes from and how it is read."""

    data: str | None = None  # "ag_news" or a folder with train.* / validation.* / test.*
    data_dir: str | None = None  # local folder holding ag_news/train.csv and ag_news/test.csv
    train_file: str | None = None
    validation_file: str | None = None
    test_file: str | None = None
    text_column: list[str] = field(default_factory=lambda: ["text"])
    label_column: str = "label"
    encoding: str = "utf-8"
    train_samples: int | None = None
    stratify: bool = False
    validation_fraction: float = 0.1
    test_samples: int | None = None
    seed: int = 42


@dataclass
class TrainConfig(DataConfig):
    """Everything `headcls train` needs. Defaults follow the AG News tutorial (3 epochs, batch 32, ...)."""

    model: str | None = None  # None: the bundled all-MiniLM-L6-v2 encoder
    output: str = "outputs/model"
    epochs: float = 3.0
    batch_size: int = 32
    eval_batch_size: int = 128
    # The tutorial's BERT used 5e-5; the small MiniLM encoder, tuned for embeddings, needs a larger step.
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 500
    # A short run would spend all its steps warming up: cap the warmup to this fraction of the run.
    max_warmup_fraction: float = 0.1
    max_length: int = 128
    # None keeps the encoder's own dropout. 0 skips the masks (cheap since headcls.fast.cpu_dropout) and cost
    # 0.7 points of test accuracy on the tutorial protocol (BENCHMARKS.md).
    dropout: float | None = None
    precision: str = "auto"  # auto | bf16 | fp32
    logging_steps: int = 10
    early_stopping_patience: int | None = None  # epochs without a better validation macro-F1
    keep_best: bool = False  # load the epoch with the best validation macro-F1 at the end
    baseline: bool = True  # TF-IDF + logistic regression on the same rows
    resume: bool = False
    overwrite: bool = False
    threads: int | None = None


PRECISIONS = ("auto", "bf16", "fp32")


def _allowed_types(annotation: Any) -> tuple[type, ...]:
    """The Python types a YAML value may have for a field annotated `annotation`."""
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return tuple(t for a in args for t in _allowed_types(a))
    if annotation is type(None):
        return (type(None),)
    if typing.get_origin(annotation) is list:
        return (list, str)  # a single string is accepted for a one-element list
    if annotation is float:
        return (float, int)
    return (annotation,)


def _type_name(annotation: Any) -> str:
    return str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")


def check_values(values: dict[str, Any], cls: type, source: str) -> dict[str, Any]:
    """Check that every key is a field of `cls` with a value of the right type; return normalised values."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        raise HeadclsError(
            f"{source}: unknown key {', '.join(repr(k) for k in unknown)}; valid keys are: {', '.join(names)}"
        )
    out = {}
    for key, value in values.items():
        allowed = _allowed_types(hints[key])
        # bool is a subclass of int: `epochs: true` must not pass as a number.
        wrong = not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed)
        if wrong:
            raise HeadclsError(
                f"{source}: key {key!r} must be {_type_name(hints[key])}, got {type(value).__name__} {value!r}"
            )
        if typing.get_origin(hints[key]) is list and isinstance(value, str):
            value = [value]
        out[key] = value
    return out


def load_yaml(path: str | Path, cls: type = TrainConfig) -> dict[str, Any]:
    """Read a YAML config file into checked field values for `cls`."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HeadclsError(f"{path}: config file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise HeadclsError(f"{path}: not a valid YAML file ({str(e).splitlines()[0]})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise HeadclsError(f"{path}: a config file must be a mapping of keys to values, got {type(raw).__name__}")
    return check_values(raw, cls, str(path))


def build_config(cls: type, config_file: str | None, overrides: dict[str, Any]):
    """Defaults, then the YAML file, then the flags that were given (values that are not None)."""
    values = load_yaml(config_file, cls) if config_file else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    cfg = cls(**values)
    validate(cfg)
    return cfg


def validate(cfg: DataConfig) -> None:
    """Range checks that name the setting and what would be valid."""
    problems = []
    if cfg.train_samples is not None and cfg.train_samples < 1:
        problems.append(f"train_samples must be at least 1, got {cfg.train_samples}")
    if not 0 < cfg.validation_fraction < 1:
        problems.append(f"validation_fraction must be between 0 and 1, got {cfg.validation_fraction}")
    if not cfg.text_column:
        problems.append("text_column needs at least one column name")
    if isinstance(cfg, TrainConfig):
        if cfg.precision not in PRECISIONS:
            problems.append(f"precision must be one of {', '.join(PRECISIONS)}, got {cfg.precision!r}")
        for name in ("epochs", "batch_size", "eval_batch_size", "learning_rate", "max_length"):
            if getattr(cfg, name) <= 0:
                problems.append(f"{name} must be positive, got {getattr(cfg, name)}")
        if cfg.dropout is not None and not 0 <= cfg.dropout < 1:
            problems.append(f"dropout must be in [0, 1), got {cfg.dropout}")
        if cfg.max_length > 100_000:
            problems.append(f"max_length is {cfg.max_length}: far beyond any encoder's positions")
    if problems:
        raise HeadclsError("; ".join(problems))


def to_dict(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
