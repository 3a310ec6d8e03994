"""`headcls evaluate`: score a trained model folder on any labelled data."""

from __future__ import annotations

import logging
from pathlib import Path

from headcls.config import EvaluateConfig
from headcls.errors import HeadclsError

logger = logging.getLogger(__name__)


def evaluate(cfg: EvaluateConfig, echo=print) -> dict:
    """Predict the test split (or validation when there is no test split) and write the report files.

    The report folder is written staged and swapped in whole, under a lock: a failed or interrupted run leaves
    the previous report (or none), never new predictions beside old metrics.
    """
    from headcls import data
    from headcls.atomic import check_replaceable, output_lock, staged_folder, target
    from headcls.config import check_output
    from headcls.model import check_model_path
    from headcls.predict import Classifier, long_text_options
    from headcls.reading import label_set
    from headcls.report import evaluate_frame, print_summary, write_metrics

    check_model_path(cfg.model)
    splits = data.load_splits(cfg)
    frame, split = (splits.test, "test") if splits.test is not None else (splits.validation, "validation")
    out_dir = target(cfg.output) if cfg.output else Path(cfg.model) / f"eval-{split}"
    try:  # the default output (MODEL/eval-SPLIT) is checked as a given one is: it must not hold an input
        check_output(out_dir, cfg.input_paths(), "--output")
    except ValueError as e:
        raise HeadclsError(str(e)) from None
    with output_lock(out_dir):
        check_replaceable(out_dir, cfg.overwrite)
        clf = Classifier.from_pretrained(
            cfg.model, backend=cfg.backend, precision=cfg.precision, batch_size=cfg.batch_size, threads=cfg.threads,
            fast_paths=cfg.fast_paths, **long_text_options(cfg),
        )
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
            metrics = evaluate_frame(clf, frame, staging, title=f"{split} split")
            metrics["split"] = split
            metrics["source"] = splits.sources[split]
            write_metrics(metrics, staging / "metrics.json")
    echo(f"Evaluated {cfg.model} on {metrics['num_examples']} rows of {splits.sources[split]} -> {out_dir}")
    print_summary(metrics, echo)
    return metrics
