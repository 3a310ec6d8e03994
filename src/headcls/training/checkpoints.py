"""A run's checkpoints: where they are, which is the newest complete one, and whether a --resume continues the
same run."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from headcls.errors import HeadclsError
from headcls.options.commands import TrainConfig
from headcls.runtime import distributed
from headcls.training.recipe import rates_said

logger = logging.getLogger(__name__)


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
    from headcls.files.outputs import check_replaceable

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


ARCHITECTURE = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size", "max_position_embeddings")


def check_resumable(checkpoint: str, labels: list[str], encoder_config, epochs: float) -> None:
    """A checkpoint continues only the run it came from: the same label space and shape, the same encoder, texts
    read the same way (a different --long-text makes other rows, so other batches), the same learning rates per
    part (--layer-lr-decay and --head-learning-rate group the optimizer's parameters), and epochs left."""
    from headcls.modeling.folder import CONFIG_FILE, config_labels, is_multi_label, read_json, saved_settings

    saved_config = read_json(Path(checkpoint) / CONFIG_FILE)
    shapes = {True: "multi-label", False: "single-label"}
    was, now = is_multi_label(saved_config), is_multi_label(encoder_config)
    if was != now:
        raise HeadclsError(f"--resume: {checkpoint} is a {shapes[was]} run, but the training data is now "
                           f"{shapes[now]}; start over with --overwrite instead of --resume")
    saved_reading = saved_settings(saved_config).get("long_text")
    reading = saved_settings(encoder_config).get("long_text")
    if saved_reading is not None and saved_reading != reading:
        raise HeadclsError(f"--resume: {checkpoint} read long texts as {saved_reading}, this run as {reading}; "
                           "give the interrupted run's --long-text options, or start over with --overwrite")
    saved_rates = saved_settings(saved_config).get("learning_rates")
    rates = saved_settings(encoder_config).get("learning_rates")
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


def kept_note(checkpoints: str) -> str:
    """What an error says of the checkpoints that survive it."""
    found = last_checkpoint(Path(checkpoints))
    return f"; the last good checkpoint is {found}" if found else "; no checkpoint had been saved"
