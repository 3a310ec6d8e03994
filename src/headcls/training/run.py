"""Fine-tuning with the Hugging Face Trainer: the one place that trains.

Layout of a run with `--output OUT`:
    OUT.checkpoints/   Trainer checkpoints (one per epoch) and TensorBoard logs while training; removed after
                       a successful run. `--resume` continues from the newest complete checkpoint here.
    OUT/               the final model folder, written to a staging folder first and swapped in at the end,
                       so a run that dies leaves the previous OUT (or none), never a half-written one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headcls.data.longtext import LongText
from headcls.data.splits import Splits, load_splits
from headcls.data.streaming import read_stream_plan, stream_splits
from headcls.data.tokenize import tokenize
from headcls.errors import HeadclsError, Interrupted
from headcls.files.outputs import check_space, output_lock, target, write_failure
from headcls.modeling import loading
from headcls.modeling.folder import checkpoint_dir, write_settings
from headcls.options.commands import TrainConfig
from headcls.options.loading import options_for
from headcls.runtime import distributed
from headcls.runtime.distributed import Ranks
from headcls.runtime.hardware import device, use_bf16
from headcls.training.checkpoints import check_resumable, kept_note, last_checkpoint, preflight
from headcls.training.recipe import (
    class_weights,
    learning_rates,
    rate_summary,
    rates_said,
    schedule,
    space_needed,
    weighted_loss,
)
from headcls.training.saving import save_run
from headcls.training.trainer import (
    NonFinite,
    StopWhenAsked,
    finite_weights,
    make_trainer,
    trainer_metrics,
    training_arguments,
)

logger = logging.getLogger(__name__)


def train(cfg: TrainConfig | None = None, /, *, callbacks: Sequence[Any] = (), stop: threading.Event | None = None,
          echo: Callable[..., None] = print, **options) -> dict:
    """Fine-tune, evaluate on the test split, and write the model folder. Returns the metrics (written to
    OUTPUT/metrics.json too); under torchrun, {} on every process but the main one.

    The options are those of `headcls train` (a `TrainConfig`, or keyword arguments named like its flags, checked
    by the same schema). `callbacks`: `transformers.TrainerCallback`s, added to the Trainer's. `stop`: an event
    that, once set, stops training after the current step with a checkpoint (as Ctrl-C does in the CLI), then
    raises `Interrupted`. `echo`: where the run's report lines go. The process-wide settings are the caller's:
    `threads` is applied by the CLI (`torch.set_num_threads` from Python), and nothing here touches signals.

    Example:
        >>> import headcls
        >>> metrics = headcls.train(data="ag_news", data_dir="../shared/data", train_samples=6000, output="out")
        >>> metrics["accuracy"]
    """
    cfg = options_for(TrainConfig, cfg, options)
    here = distributed.init(use_cpu=device() == "cpu")  # under torchrun: join the others before any work
    output = target(cfg.output)
    checkpoints = checkpoint_dir(output)
    with contextlib.ExitStack() as held:

        def lock_and_check() -> str | None:
            held.enter_context(output_lock(output))  # one run per output: a second one refuses at once
            return preflight(cfg, output, checkpoints)

        resume_from = distributed.on_main(here, lock_and_check)  # only the main process locks and clears
        run = prepare(cfg, Where(output, checkpoints, here, echo if here.is_main else _silent), resume_from)
        trainer, result, seconds = fit(run, resume_from, callbacks, stop)
        return finish(run, trainer, result, seconds)


def _silent(*args, **kwargs) -> None:
    """The echo of the processes other than the main one: the main process reports the run."""


@dataclass(frozen=True)
class Where:
    """Where a run writes and reports: its output, its checkpoints, this process, and the report's echo."""

    output: Path
    checkpoints: Path
    here: Ranks
    echo: Callable[..., None]


@dataclass
class Run:
    """A run prepared: the data read and tokenized, the model built, the recipe decided."""

    cfg: TrainConfig
    where: Where
    splits: Splits
    tokenizer: Any
    classifier: Any
    reading: LongText
    weights: list[float] | None
    rates: Callable[[str], float] | None
    train_set: Any
    val_set: Any
    plan: dict
    streamed: bool
    bf16: bool


def prepare(cfg: TrainConfig, where: Where, resume_from: str | None) -> Run:
    """Read and check the data, build the model with its labels, decide the recipe, tokenize, and say the plan.

    The main process reads first (a hub download lands in the cache once; bad data stops every process with its
    one line), then the others read the same files; every process must see the same label space."""
    from transformers import set_seed

    here = where.here
    bf16 = use_bf16(cfg.precision)
    encoder = distributed.main_first(here, lambda: loading.resolve(cfg.model))  # a bad --model fails before data
    stream = distributed.on_main(here, lambda: read_stream_plan(cfg)) if cfg.streaming else None
    splits = distributed.main_first(
        here, lambda: load_splits(cfg, read_train=stream is None, streaming=stream is not None)
    )
    if stream:
        splits = stream_splits(splits, stream)
    main_labels = distributed.on_main(here, lambda: splits.labels)
    if splits.labels != main_labels:
        raise HeadclsError(f"process {here.rank} read labels {', '.join(splits.labels)} but the main process "
                           f"{', '.join(main_labels)}: every process must see the same data files")
    if cfg.tune_thresholds and not splits.multi_label:
        raise HeadclsError("--tune-thresholds picks the thresholds of a multi-label model; the training labels "
                           "are one per row (lists, or --label-separator, make multi-label data)")
    tokenizer = distributed.main_first(here, lambda: loading.load_tokenizer(encoder))
    set_seed(cfg.seed)  # before the head is initialised: same seed, same run (on every process)
    weights = class_weights(cfg, splits)
    classifier = distributed.main_first(here, lambda: loading.build_classifier(
        encoder, splits.labels, cfg.dropout, device(), cfg.fast_paths, splits.multi_label))
    cfg = _fitting_max_length(cfg, tokenizer, classifier)
    reading = LongText.from_options(cfg)
    rates = learning_rates(cfg, classifier)
    # Saved in config.json: the reading is read by Classifier; both are checked by --resume.
    write_settings(classifier.config, long_text=reading.to_dict(),
                   learning_rates=rate_summary(rates, classifier) if rates is not None else None)
    if resume_from:
        check_resumable(resume_from, splits.labels, classifier.config, cfg.epochs)
    distributed.on_main(here, lambda: check_space(where.output, space_needed(cfg, classifier),
                                                  "training (checkpoints and the model)"))
    train_set, train_rows = _training_set(cfg, splits, stream, tokenizer, classifier.config.label2id, reading)
    val_set = tokenize(splits.validation, tokenizer, classifier.config.label2id, cfg.max_length, sort_by_length=True,
                       long_text=reading, multi_label=splits.multi_label)
    plan = schedule(cfg, train_rows, here.world_size)
    run = Run(cfg, where, splits, tokenizer, classifier, reading, weights, rates, train_set, val_set, plan,
              stream is not None, bf16)
    _announce(run, train_rows)
    return run


def _fitting_max_length(cfg: TrainConfig, tokenizer, classifier) -> TrainConfig:
    """The run's max length: the default cut to the encoder's positions; a given one checked against them."""
    if "max_length" not in cfg.model_fields_set and cfg.max_length > loading.max_positions(classifier.config):
        cfg = cfg.model_copy(update={"max_length": loading.max_positions(classifier.config)})  # a default that fits
        logger.info("max_length %d: the encoder's positions", cfg.max_length)
    loading.check_max_length(cfg.max_length, tokenizer, classifier.config)
    return cfg


def _training_set(cfg: TrainConfig, splits: Splits, stream: dict | None, tokenizer, label2id: dict[str, int],
                  reading: LongText) -> tuple[Any, int | None]:
    """The tokenized training rows (a stream's, read on every pass) and how many there are (None: not counted)."""
    if stream:
        from headcls.data.streaming import training_stream

        return training_stream(stream["path"], cfg, tokenizer, label2id), stream["rows"]
    train_set = tokenize(splits.train, tokenizer, label2id, cfg.max_length, long_text=reading,
                         multi_label=splits.multi_label)
    return train_set, len(train_set)


def _announce(run: Run, train_rows: int | None) -> None:
    """The run's plan, in the report: rows, labels, precision, class weights, batch size, steps, rates."""
    cfg, splits, plan, echo, here = run.cfg, run.splits, run.plan, run.where.echo, run.where.here
    rows_said = f"{train_rows} rows" if train_rows is not None else "a stream of rows"
    if splits.train is not None and train_rows != len(splits.train):
        rows_said = f"{len(splits.train)} texts ({train_rows} {run.reading.mode} pieces)"
    echo(
        f"Training on {rows_said}{' (streamed)' if run.streamed else ''}, validating on {len(splits.validation)}"
        + (f", testing on {len(splits.test)}" if splits.test is not None else "")
        + f"; {len(splits.labels)} labels{' (multi-label)' if splits.multi_label else ''}: "
        f"{', '.join(splits.labels)}; precision {'bf16' if run.bf16 else 'fp32'}"
    )
    if run.weights is not None:
        echo("Class weights" + (" (pos_weight)" if splits.multi_label else "") + ": "
             + ", ".join(f"{name} {w:.4g}" for name, w in zip(splits.labels, run.weights)))
    echo(
        f"Effective batch size {plan['effective_batch_size']} ({cfg.batch_size} per device x {here.world_size} "
        f"process{'es' if here.world_size > 1 else ''} x {cfg.gradient_accumulation_steps} accumulation): "
        f"{plan['steps']} optimizer steps, {plan['warmup_steps']} of warmup"
    )
    if run.rates is not None:
        echo(f"Learning rates: {rates_said(rate_summary(run.rates, run.classifier))}")


def fit(run: Run, resume_from: str | None, callbacks: Sequence[Any] = (), stop: threading.Event | None = None):
    """Train with the Trainer until the schedule ends, training goes wrong, or `stop` is set (then raise
    `Interrupted` once every process has saved its checkpoint). Returns the trainer, its result and the seconds."""
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback

    from headcls.modeling.fast import cpu_dropout

    cfg, plan, checkpoints = run.cfg, run.plan, run.where.checkpoints
    # A stream: evaluate and save once per pass when the rows were counted, else ten times in the run.
    cadence = None
    if run.streamed:
        rows = plan["train_rows"]
        cadence = (math.ceil(rows / plan["effective_batch_size"]) if rows else None) or max(1, math.ceil(
            plan["steps"] / 10))
    args = training_arguments(cfg, checkpoints, run.bf16, plan["warmup_steps"], cadence,
                              plan["steps"] if run.streamed else None)
    stopper = StopWhenAsked(stop, run.where.here)
    early = [EarlyStoppingCallback(cfg.early_stopping_patience)] if cfg.early_stopping_patience is not None else []
    custom_loss = run.weights is not None or cfg.label_smoothing > 0
    docs = run.val_set["doc"] if run.reading.mode == "chunks" else None
    trainer = make_trainer(
        rates=run.rates, model=run.classifier, args=args, train_dataset=run.train_set, eval_dataset=run.val_set,
        processing_class=run.tokenizer, data_collator=DataCollatorWithPadding(run.tokenizer),
        compute_metrics=trainer_metrics(run.splits.multi_label, docs, run.reading.pooling),
        compute_loss_func=weighted_loss(run.weights, run.splits.multi_label, cfg.label_smoothing) if custom_loss
        else None,
        callbacks=[*early, *callbacks, stopper],
    )
    started = time.perf_counter()
    try:
        with cpu_dropout(enabled=cfg.fast_paths):
            result = trainer.train(resume_from_checkpoint=resume_from)
    except NonFinite:
        if last_checkpoint(checkpoints) is None:  # only the logs of a failed start: nothing worth keeping
            shutil.rmtree(checkpoints, ignore_errors=True)
        raise
    seconds = time.perf_counter() - started
    distributed.barrier(run.where.here)  # a stopped job: every process has saved its part before any exits
    if stopper.stopped:
        raise Interrupted(
            f"interrupted; the last checkpoint is in {checkpoints}: add --resume to the same command to continue"
        )
    if not finite_weights(trainer.model):
        raise NonFinite(
            "the weights became NaN or infinite in the last steps; no model was saved" + kept_note(str(checkpoints))
        )
    return trainer, result, seconds


def finish(run: Run, trainer, result, seconds: float) -> dict:
    """Save the model folder and its report (see `save_run`); the checkpoints go once the folder is in place. A
    failed save keeps them and says how to save again."""
    where = run.where
    try:
        metrics = save_run(run.cfg, trainer, run.tokenizer, run.splits, where.output, where.checkpoints, result,
                           seconds, where.echo, where.here, run.plan, run.weights)
    except Exception as e:  # the trained weights are safe in the checkpoints: say how to get them
        failure = write_failure(e, where.output)
        if failure is None:
            raise
        raise HeadclsError(
            f"{failure}; the trained model is kept in {where.checkpoints}: fix this, then add --resume to save it"
        ) from None
    if where.here.is_main:
        shutil.rmtree(where.checkpoints, ignore_errors=True)
    return metrics
