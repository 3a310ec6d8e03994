"""The recipe of a run: its schedule, class weights, per-layer learning rates and loss."""

from __future__ import annotations

import math
import re
from pathlib import Path

import yaml

from headcls.errors import HeadclsError
from headcls.options.commands import TrainConfig


def effective_batch_size(cfg: TrainConfig, world_size: int) -> int:
    """Rows per optimizer step: per device x processes x accumulation."""
    return cfg.batch_size * world_size * cfg.gradient_accumulation_steps


def schedule(cfg: TrainConfig, train_rows: int | None, world_size: int = 1) -> dict:
    """Optimizer steps and warmup of the run, from the effective batch size (or --max-steps). The warmup is the
    configured one, capped to a fraction of the run so that short runs still train at full rate."""
    effective = effective_batch_size(cfg, world_size)
    steps = cfg.max_steps or math.ceil(math.ceil(train_rows / effective) * cfg.epochs)
    warmup = int(min(cfg.warmup_steps, math.ceil(steps * cfg.max_warmup_fraction)))
    return {"train_rows": train_rows, "effective_batch_size": effective, "per_device_batch_size": cfg.batch_size, "processes": world_size,
            "gradient_accumulation_steps": cfg.gradient_accumulation_steps, "steps": steps, "warmup_steps": warmup}


def space_needed(cfg: TrainConfig, classifier) -> int:
    """Bytes a run writes at its peak: checkpoints (weights + AdamW's two moments, fp32; up to three at once
    while the oldest is rotated out, or one per epoch when the best is kept) and the final model."""
    weights = 4 * sum(p.numel() for p in classifier.parameters())
    epochs = math.ceil(cfg.epochs)
    kept = epochs if cfg.keep_best or cfg.early_stopping_patience else min(epochs, 3)
    return kept * 3 * weights + weights + (16 << 20)


def class_weights(cfg: TrainConfig, splits) -> list[float] | None:
    """--class-weights as one number per label (None for none). balanced: rows / (labels x rows of the label),
    scikit-learn's compute_class_weight; multi-label: pos_weight = rows without the label / rows with it."""
    labels = splits.labels
    if cfg.class_weights == "none":
        return None
    if cfg.class_weights == "balanced":
        if splits.train is None:
            raise HeadclsError("--class-weights balanced counts the training rows; with --streaming give a FILE")
        rows = splits.train["label"].tolist()
        n = len(rows)
        if splits.multi_label:
            counts = {name: sum(name in row for row in rows) for name in labels}
            return [(n - counts[name]) / counts[name] if counts[name] < n else 1.0 for name in labels]
        return balanced_weights(labels, rows)
    from headcls.files.columns import normalise_label
    from headcls.files.text import TextReader

    path = cfg.class_weights
    if not Path(path).is_file():
        raise HeadclsError(f"--class-weights {path}: no such file (give none, balanced, or a JSON/YAML file "
                           "mapping each label to its weight)")
    try:  # JSON is YAML: one reader for both; keys are label names, read as the data's labels are (1 = "1")
        with TextReader(Path(path), "utf-8") as reader:
            given = yaml.safe_load(reader.read())
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
        raise HeadclsError(f"--class-weights {path}: not a readable YAML/JSON file ({str(e).splitlines()[0]})") from None
    if not isinstance(given, dict):
        raise HeadclsError(f"--class-weights {path}: must map each label to its weight, got {type(given).__name__}")
    names: dict = {}
    for key, value in given.items():  # 1 and "1" are one label: named twice is a mistake, not a merge
        name = normalise_label(key)
        if name in names:
            raise HeadclsError(f"--class-weights {path}: label {name!r} is named twice")
        names[name] = value
    missing, extra = [x for x in labels if x not in names], sorted(str(n) for n in set(names) - set(labels))
    if missing or extra:
        what = f"has no weight for label {missing[0]!r}" if missing else f"names {extra[0]!r}, not a training label"
        raise HeadclsError(f"--class-weights {path}: {what}; the labels are: {', '.join(labels)}")
    weights = []
    for name in labels:
        w = names[name]
        if not positive_number(w):
            raise HeadclsError(f"--class-weights {path}: the weight of {name!r} must be a positive number, got "
                               f"{repr(w)[:40]}")
        weights.append(float(w))
    return weights


def balanced_weights(labels: list[str], rows: list[str]) -> list[float]:
    """scikit-learn's "balanced" weight of each label. A label without a training row has none (AG News names its
    four labels whatever the rows hold: a small --train-samples may miss one)."""
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    seen = set(rows)
    missing = [name for name in labels if name not in seen]
    if missing:
        raise HeadclsError(f"--class-weights balanced: no training row has the label {missing[0]!r}, so it has no "
                           "weight; train on more rows (--train-samples) or give the weights in a file")
    return compute_class_weight("balanced", classes=np.array(labels), y=rows).tolist()


def positive_number(value) -> bool:
    """A finite number above 0 as YAML reads one (not a bool; an integer too large for a float is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value)) and value > 0
    except OverflowError:
        return False


def learning_rates(cfg: TrainConfig, model):
    """--head-learning-rate and --layer-lr-decay as each parameter's peak learning rate, by its name: the head
    (what is outside the encoder: the classifier) at --head-learning-rate; the encoder's top layer, and what sits
    above the layers (the pooler), at --learning-rate; each layer below at --layer-lr-decay times the one above;
    the embeddings one step below the first layer. None when every parameter takes --learning-rate."""
    if cfg.layer_lr_decay == 1 and cfg.head_learning_rate is None:
        return None

    def rate(name: str) -> float:
        below = layers_below_top(name, model)
        if below is None:
            return cfg.head_learning_rate or cfg.learning_rate
        return cfg.learning_rate * cfg.layer_lr_decay**below

    return rate


def layers_below_top(name: str, model) -> int | None:
    """How many encoder layers sit above a parameter: 0 in the top layer or above it (pooler), the number of
    layers for the embeddings; None for the head (outside the encoder)."""
    layers = model.config.num_hidden_layers
    if not name.startswith(model.base_model_prefix + "."):
        return None
    if "embeddings" in name:
        return layers
    found = re.search(r"\.layers?\.(\d+)\.", name)
    return layers - 1 - int(found.group(1)) if found else 0


def rate_summary(rates, model) -> dict[str, float]:
    """Each part's peak learning rate, top down: the head, the encoder's layers (1 = the lowest), the embeddings."""
    layers = model.config.num_hidden_layers
    parts: dict[str, float] = {}
    for name, _ in model.named_parameters():
        below = layers_below_top(name, model)
        part = "head" if below is None else "embeddings" if below == layers else f"layer {layers - below}"
        parts.setdefault(part, rates(name))
    return parts


def rates_said(parts: dict[str, float] | None) -> str:
    """A rate summary as one line, top down (config.json holds it with its keys sorted)."""
    if not parts:
        return "one rate for all"

    def top_down(part: str) -> tuple:
        return (0, 0) if part == "head" else (2, 0) if part == "embeddings" else (1, -int(part.split()[-1]))

    return ", ".join(f"{part} {parts[part]:.3g}" for part in sorted(parts, key=top_down))


def weighted_loss(weights: list[float] | None, multi_label: bool, label_smoothing: float = 0.0):
    """The Trainer's `compute_loss_func` for class weights and label smoothing: cross-entropy with `weight` and
    `label_smoothing` (multi-label: binary cross-entropy with `pos_weight`, each target moved toward 0.5 by half
    the smoothing), summed and divided by the rows (multi-label: row-label cells) of the whole optimizer step,
    which the Trainer counts across gradient accumulation as `num_items_in_batch`."""
    import torch
    import torch.nn.functional as F

    weight = torch.tensor(weights, dtype=torch.float32) if weights is not None else None

    def loss(outputs, labels, num_items_in_batch=None):
        logits = (outputs["logits"] if isinstance(outputs, dict) else outputs[0]).float()
        w = weight.to(logits.device) if weight is not None else None
        if multi_label:
            target = labels.float() * (1 - label_smoothing) + label_smoothing / 2
            total = F.binary_cross_entropy_with_logits(logits, target, pos_weight=w, reduction="sum")
        else:
            total = F.cross_entropy(logits, labels, weight=w, label_smoothing=label_smoothing, reduction="sum")
        items = num_items_in_batch if num_items_in_batch is not None else labels.numel()
        return total / items

    return loss
