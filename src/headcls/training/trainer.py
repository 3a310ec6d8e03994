"""The Hugging Face Trainer as headcls runs it: seeded length-grouped batches, per-layer rates, a loss guard,
the validation metrics of each epoch, and a stop asked for by a signal."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

from headcls.errors import HeadclsError
from headcls.files.outputs import write_failure
from headcls.options.commands import TrainConfig
from headcls.runtime import distributed
from headcls.runtime.distributed import Ranks
from headcls.training.checkpoints import kept_note

logger = logging.getLogger(__name__)


class NonFinite(HeadclsError):
    """The loss or the weights became NaN or infinite: training stops and nothing broken is saved."""


def finite_weights(model) -> bool:
    import torch

    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


class StopWhenAsked(TrainerCallback):
    """Stop after the current step, saving a checkpoint, once `stop` is set (by the CLI on Ctrl-C or SIGTERM, or
    by a program from any thread). Under torchrun a stop asked of any process stops every process after the same
    step: the flag is reduced across them each step."""

    def __init__(self, stop: threading.Event | None, here: Ranks):
        self.stop, self.here = stop or threading.Event(), here
        self.stopped = False  # the job stops: asked of any process

    def on_step_end(self, args, state, control, **kwargs):
        if distributed.any_rank(self.here, self.stop.is_set()):
            self.stopped = True
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.stopped:  # the epoch was cut short: save, but no validation entry for a partial epoch
            control.should_evaluate = False
        return control


class EpochSeededSampler(LengthGroupedSampler):
    """Length-grouped batches in an order seeded by (seed + epoch).

    The stock LengthGroupedSampler draws from the global RNG when an epoch starts; a run resumed in the middle
    of an epoch starts from another RNG state, so it would skip the wrong batches. Seeding each epoch's order
    with (seed + epoch) makes a resumed run see exactly the batches an uninterrupted one sees.
    """

    def __init__(self, *args, seed: int, **kw):
        super().__init__(*args, **kw)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


class SeededTrainer(Trainer):
    """A Trainer whose length-grouped batches depend only on the seed and the epoch, whose evaluation reads the
    (length-sorted) evaluation set in order, and whose optimizer may group parameters by peak rate (`rates`: each
    parameter's peak rate by name, from `learning_rates(cfg, model)`; None: the Trainer's one rate for all)."""

    def __init__(self, *args, rates=None, **kw):
        super().__init__(*args, **kw)
        self.rates = rates
        # The model's own loss is a mean over its batch that ignores `num_items_in_batch`, but its forward takes
        # **kwargs, so the Trainer would take that mean as normalised over the whole step: neither divided by
        # the accumulation steps nor left unscaled across processes (the gradient grows with both). Said so,
        # the Trainer averages it itself. A `compute_loss_func` (class weights, label smoothing) normalises by the
        # step's items.
        if self.compute_loss_func is None:
            self.model_accepts_loss_kwargs = False

    def create_optimizer(self, model=None):
        if self.optimizer is not None or self.rates is None:
            return super().create_optimizer(model)
        # The stock optimizer and its weight-decay rule, with parameters grouped by peak rate too.
        model = self.accelerator.unwrap_model(model or self.model)  # names as `learning_rates` knows them
        decay = set(self.get_decay_parameter_names(model))
        groups: dict[tuple[float, float], list] = {}
        for name, p in model.named_parameters():
            if p.requires_grad:
                key = (self.rates(name), self.args.weight_decay if name in decay else 0.0)
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
                + kept_note(self.args.output_dir)
            )
        return loss

    def _save_checkpoint(self, model, trial):
        if not finite_weights(model):  # never keep a broken checkpoint: the previous one stays the last good
            raise NonFinite(
                f"the weights became NaN or infinite by step {self.state.global_step}; "
                f"--learning-rate {self.args.learning_rate:g} is likely too high. No model was saved"
                + kept_note(self.args.output_dir)
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


def make_trainer(rates=None, **kwargs) -> SeededTrainer:
    """The Trainer of a run (see `SeededTrainer`); `kwargs` are the stock Trainer's."""
    return SeededTrainer(rates=rates, **kwargs)


def training_arguments(cfg: TrainConfig, checkpoints: Path, bf16: bool, warmup: int, cadence: int | None = None,
                       max_steps: int | None = None):
    """The Trainer's settings. `cadence`: evaluate and save every that many steps instead of every epoch, and
    `max_steps` instead of --epochs (a stream has no length the Trainer can see)."""
    from transformers import TrainingArguments

    from headcls.runtime.hardware import device

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
    from headcls.data.longtext import pool
    from headcls.evaluation.metrics import compute_metrics, compute_multilabel_metrics

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
