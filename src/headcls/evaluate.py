"""`headcls evaluate`: score a trained model folder on any labelled data."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from headcls.config import DataConfig
from headcls.errors import HeadclsError

logger = logging.getLogger(__name__)


@dataclass
class EvaluateConfig(DataConfig):
    model: str | None = None
    output: str | None = None  # default: MODEL/eval-<split>
    backend: str = "auto"
    precision: str = "auto"
    batch_size: int = 64


def evaluate(cfg: EvaluateConfig, echo=print) -> dict:
    """Predict the test split (or validation when there is no test split) and write the report files."""
    from headcls import data
    from headcls.predict import Classifier
    from headcls.report import evaluate_frame, print_summary, write_metrics

    if not cfg.model:
        raise HeadclsError("evaluate needs --model DIR (a folder written by headcls train)")
    clf = Classifier.from_pretrained(cfg.model, backend=cfg.backend, precision=cfg.precision, batch_size=cfg.batch_size)
    splits = data.load_splits(cfg, need_train=False)
    frame, split = (splits.test, "test") if splits.test is not None else (splits.validation, "validation")
    unknown = sorted(set(frame["label"]) - set(clf.labels))
    if unknown:
        raise HeadclsError(
            f"{splits.sources[split]}: label {unknown[0]!r} is not one the model knows; "
            f"its labels are: {', '.join(clf.labels)}"
        )
    out_dir = Path(cfg.output) if cfg.output else Path(cfg.model) / f"eval-{split}"
    metrics = evaluate_frame(clf, frame, out_dir, title=f"{split} split")
    metrics["split"] = split
    metrics["source"] = splits.sources[split]
    write_metrics(metrics, out_dir / "metrics.json")
    echo(f"Evaluated {cfg.model} on {metrics['num_examples']} rows of {splits.sources[split]} -> {out_dir}")
    print_summary(metrics, echo)
    return metrics
