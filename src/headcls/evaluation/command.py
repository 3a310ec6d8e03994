"""`headcls evaluate`: score a trained model folder on any labelled data."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from headcls.data.splits import load_splits
from headcls.errors import HeadclsError
from headcls.evaluation.report import evaluate_frame, print_summary, write_metrics
from headcls.files.columns import label_set
from headcls.files.outputs import check_output, check_replaceable, output_lock, staged_folder, target
from headcls.inference.classifier import Classifier
from headcls.modeling.folder import METRICS_FILE, check_model_path
from headcls.options.commands import EvaluateConfig
from headcls.options.loading import options_for

logger = logging.getLogger(__name__)


def evaluate(cfg: EvaluateConfig | None = None, /, *, echo: Callable[..., None] = print, **options) -> dict:
    """Predict the test split (or validation when there is no test split) and write the report files; return the
    metrics. The options are those of `headcls evaluate` (an `EvaluateConfig`, or keyword arguments named like its
    flags, checked by the same schema).

    The report folder is written staged and swapped in whole, under a lock: a failed or interrupted run leaves
    the previous report (or none), never new predictions beside old metrics.

    Example:
        >>> import headcls
        >>> headcls.evaluate(model="outputs/ag", test_file="reviews.csv", output="outputs/ag-eval")["accuracy"]
    """
    cfg = options_for(EvaluateConfig, cfg, options)
    check_model_path(cfg.model)
    splits = load_splits(cfg)
    frame, split = (splits.test, "test") if splits.test is not None else (splits.validation, "validation")
    out_dir = target(cfg.output) if cfg.output else Path(cfg.model) / f"eval-{split}"
    check_output(out_dir, cfg.input_paths(), "--output")  # the default (MODEL/eval-SPLIT) too: it holds no input
    with output_lock(out_dir):
        check_replaceable(out_dir, cfg.overwrite)
        clf = Classifier.from_config(cfg)
        if splits.multi_label != clf.multi_label:
            shape = "several labels per row" if splits.multi_label else "one label per row"
            raise HeadclsError(f"{splits.sources[split]}: holds {shape}, but {cfg.model} is a "
                               f"{'multi' if clf.multi_label else 'single'}-label model")
        unknown = sorted(label_set(frame["label"]) - set(clf.labels))
        if unknown:
            raise HeadclsError(
                f"{splits.sources[split]}: label {unknown[0]!r} is not one the model knows; "
                f"its labels are: {', '.join(clf.labels)}"
            )
        with staged_folder(out_dir) as staging:
            metrics, predictions = evaluate_frame(clf, frame, staging, title=f"{split} split")
            metrics["split"] = split
            metrics["source"] = splits.sources[split]
            write_metrics(metrics, staging / METRICS_FILE)
    echo(f"Evaluated {cfg.model} on {metrics['num_examples']} rows of {splits.sources[split]} -> {out_dir}")
    print_summary(metrics, predictions, echo)
    return metrics
