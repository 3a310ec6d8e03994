"""Labelled splits: files, folders and AG News read, checked against each other, validation held out.

Every problem a user can fix is a `HeadclsError` naming the file, the row or column, and what would be valid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from headcls.data.agnews import AG_NEWS_LABELS, read_ag_news
from headcls.errors import HeadclsError
from headcls.files.columns import is_multi_label, label_order, label_set, raise_two_spellings, read_labelled
from headcls.files.tables import LABEL, SUFFIXES
from headcls.options.fields import DataConfig

logger = logging.getLogger(__name__)


@dataclass
class Splits:
    """Labelled rows per split (columns `text` and `label`, labels as names; multi-label: a tuple of names per
    row) and the ordered label names."""

    train: pd.DataFrame | None
    validation: pd.DataFrame | None
    test: pd.DataFrame | None
    labels: list[str]
    sources: dict[str, str]
    multi_label: bool = False


# The names a --data folder's files may have, per split (the usual spellings of validation included).
SPLIT_NAMES = {"train": ("train",), "validation": ("validation", "valid", "val", "dev"), "test": ("test",)}


def folder_file(folder: Path, split: str) -> Path | None:
    """The folder's one file for `split`; two candidates are refused rather than one picked silently."""
    found = [p for p in sorted(folder.iterdir()) if p.stem.lower() in SPLIT_NAMES[split] and p.is_file()
             and p.suffix.lower() in SUFFIXES]
    if len(found) > 1:
        raise HeadclsError(f"{folder}: holds {found[0].name} and {found[1].name} for the {split} split; keep one")
    return found[0] if found else None


def _unused_files(folder: Path) -> None:
    """Say which files of a --data folder look like data but are not read (test.txt, training.csv, ...)."""
    known = {name for names in SPLIT_NAMES.values() for name in names}
    for path in sorted(folder.iterdir()):
        data_like = path.suffix.lower() in {*SUFFIXES, ".txt", ".xlsx", ".xls"}
        if path.is_file() and data_like and not (path.stem.lower() in known and path.suffix.lower() in SUFFIXES):
            logger.warning("%s: not read (a --data folder's files are train, validation/val/dev and test, as %s)",
                           path, "/".join(sorted(SUFFIXES)))


def _same_spellings(frames: dict[str, pd.DataFrame]) -> None:
    """A label name written one way in one split and another way in the next ("1" and "01") is refused."""
    seen: dict[str, tuple] = {}
    for frame in (frames[split] for split in ("train", "validation", "test") if split in frames):
        for name, first in frame.attrs.get("spellings", {}).items():
            earlier = seen.setdefault(name, first)
            if earlier[0] != first[0]:
                raise_two_spellings(name, earlier, first)


def _first_rows(frame: pd.DataFrame, n: int | None, stratify: bool, seed: int, what: str) -> pd.DataFrame:
    if n is None:
        return frame
    if n > len(frame):
        raise HeadclsError(f"{what}: asked for {n} rows but it has only {len(frame)}")
    if not stratify or n == len(frame):
        return frame.iloc[:n].reset_index(drop=True)
    if is_multi_label(frame[LABEL]):
        raise HeadclsError(f"{what}: --stratify samples single-label data; multi-label rows are taken in order")
    from sklearn.model_selection import train_test_split

    counts = frame[LABEL].value_counts()
    if counts.min() < 2 or n < len(counts):
        raise HeadclsError(f"{what}: cannot take a stratified sample of {n} rows over {len(counts)} classes")
    sample, _ = train_test_split(frame, train_size=n, stratify=frame[LABEL], random_state=seed)
    return sample.reset_index(drop=True)


def _hold_out(frame: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded, stratified validation split. Rows of a class seen only once stay in train. Multi-label rows are
    held out at random (seeded): a row has no one class to stratify on; a held-out row carrying a label that no
    training row kept goes back to train (every label must be learnt)."""
    from sklearn.model_selection import train_test_split

    if is_multi_label(frame[LABEL]):
        n_val = max(1, round(len(frame) * fraction))
        if len(frame) - n_val < 2:
            raise HeadclsError(f"only {len(frame)} training rows: too few to hold out a validation split of "
                               f"--validation-fraction {fraction:g}; add rows, lower it, or pass --validation-file")
        train, val = train_test_split(frame, test_size=n_val, random_state=seed)
        kept = label_set(train[LABEL])
        back = [not set(names) <= kept for names in val[LABEL]]
        if any(back):
            logger.info("%d held-out rows carry a label no other training row has: kept for training", sum(back))
            train, val = pd.concat([train, val[back]]), val[[not b for b in back]]
        if len(val) == 0:
            raise HeadclsError("every held-out row carries a label seen only there: too few rows per label to "
                               "hold out a validation split; add rows or pass --validation-file")
        return train.reset_index(drop=True), val.reset_index(drop=True)

    counts = frame[LABEL].value_counts()
    single = frame[LABEL].map(counts) == 1
    if single.any():
        logger.warning("%d classes have a single row: kept for training, absent from validation", int(single.sum()))
    rest = frame[~single]
    classes = rest[LABEL].nunique()
    n_val = max(classes, round(len(frame) * fraction))  # stratifying needs a row of every class
    if classes == 0 or len(rest) - n_val < classes:
        raise HeadclsError(
            f"only {len(frame)} training rows over {len(counts)} classes: too few to hold out a validation "
            f"split of --validation-fraction {fraction:g}; add rows, lower it, or pass --validation-file"
        )
    train, val = train_test_split(rest, test_size=n_val, stratify=rest[LABEL], random_state=seed)
    train = pd.concat([train, frame[single]])
    return train.reset_index(drop=True), val.reset_index(drop=True)


def load_splits(cfg: DataConfig, read_train: bool = False, streaming: bool = False) -> Splits:
    """Read the splits the config names, check them against each other, and hold out validation if needed.

    `read_train`: training reads its rows (`cfg` is a `TrainConfig`); evaluation reads only validation and test,
    and so does a training run whose training file is read as a stream (`streaming`: a validation file is needed).
    """
    wanted = ("train", "validation", "test") if read_train else ("validation", "test")
    frames, sources = _read_frames(cfg, wanted)
    if read_train and "train" not in frames:
        raise HeadclsError("no training data: pass --data ag_news, --data FOLDER or --train-file FILE")
    if streaming and "validation" not in frames:
        raise HeadclsError("--streaming needs a validation file (--validation-file, or validation.* in --data): "
                           "rows cannot be held out of a stream")
    if not read_train and "test" not in frames and "validation" not in frames:
        raise HeadclsError("no data to evaluate: pass --test-file FILE, --data FOLDER or --data ag_news")
    _same_spellings(frames)
    multi_label = _label_shape(frames, sources, read_train)
    train, validation, test = (frames.get(split) for split in ("train", "validation", "test"))
    if read_train:
        train, validation = _training_rows(cfg, train, validation, sources, multi_label)
    if test is not None and cfg.test_samples is not None:
        test = _first_rows(test, cfg.test_samples, False, 0, sources["test"])
    if cfg.data == "ag_news":
        labels = list(AG_NEWS_LABELS)
    elif read_train:
        labels = label_order(train[LABEL])
    else:
        labels = label_order(pd.concat([f[LABEL] for f in (validation, test) if f is not None]))
    if read_train:
        _seen_in_training(labels, {"validation": validation, "test": test}, sources, multi_label)
    return Splits(train, validation, test, labels, sources, multi_label)


def _read_frames(cfg: DataConfig, wanted: tuple[str, ...]) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """The splits in `wanted` that --data and the --*-file flags name (a file flag wins over the folder's file)."""
    frames: dict[str, pd.DataFrame] = {}
    sources: dict[str, str] = {}
    if cfg.data == "ag_news":
        frames, sources = read_ag_news(cfg)
        if "train" not in wanted:
            frames.pop("train"), sources.pop("train")
    elif cfg.data:
        folder = Path(cfg.data)
        if folder.is_file():
            raise HeadclsError(f"--data {cfg.data}: is a file; --data takes a folder (or ag_news): for one file, "
                               "use --train-file / --test-file")
        if not folder.is_dir():
            raise HeadclsError(f"--data {cfg.data}: not 'ag_news' and not a folder")
        _unused_files(folder)
        for split in wanted:
            path = folder_file(folder, split)
            if path:
                frames[split] = read_labelled(path, cfg)
                sources[split] = str(path)
        if not frames:
            names = " / ".join(f"{SPLIT_NAMES[split][0]}.*" for split in wanted)
            raise HeadclsError(f"{folder}: holds no {names} file ({', '.join(SUFFIXES)})")
    for split in ("validation", "test", "train"):
        path = getattr(cfg, f"{split}_file") if split in wanted else None
        if path:
            frames[split] = read_labelled(path, cfg)
            sources[split] = str(path)
    return frames, sources


def _label_shape(frames: dict[str, pd.DataFrame], sources: dict[str, str], read_train: bool) -> bool:
    """Whether the data is multi-label; its frames' labels made tuples if so.

    The label shape is the training file's (for evaluate, any file's): lists there make the run multi-label, and
    a plain label elsewhere is then a list of one; lists in another file beside one label per row are refused."""
    shaped = {split: is_multi_label(frame[LABEL]) for split, frame in frames.items() if LABEL in frame}
    multi_label = shaped["train"] if read_train else any(shaped.values())
    for split, frame in frames.items():
        if split in shaped and shaped[split] and not multi_label:
            raise HeadclsError(f"{sources[split]}: holds several labels per row (lists, or --label-separator), but "
                               f"the training data {sources['train']} one label per row; give both one shape")
        if multi_label:
            frame[LABEL] = [n if isinstance(n, tuple) else (n,) for n in frame[LABEL]]
    return multi_label


def _training_rows(cfg, train: pd.DataFrame, validation: pd.DataFrame | None, sources: dict[str, str],
                   multi_label: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training rows asked for (--train-samples, --stratify), checked, and validation held out of them if no
    file gives it."""
    train = _first_rows(train, cfg.train_samples, cfg.stratify, cfg.seed, sources["train"])
    duplicates = int(train.duplicated().sum())
    if duplicates:
        logger.info("%s: %d duplicate rows (text and label) kept", sources["train"], duplicates)
    classes = sorted(label_set(train[LABEL]))
    if not classes:
        raise HeadclsError(f"{sources['train']}: no training row carries a label")
    if len(classes) < 2 and not multi_label:  # multi-label: one label, on or off, is a task
        sorted_hint = " (the rows may be sorted by class: add --stratify)"
        hint = "" if cfg.train_samples is None or cfg.stratify else sorted_hint
        raise HeadclsError(
            f"{sources['train']}: only one class ({classes[0]!r}) in the training rows; "
            f"a classifier needs at least two{hint}"
        )
    if validation is None:
        train, validation = _hold_out(train, cfg.validation_fraction, cfg.seed)
        sources["validation"] = f"{cfg.validation_fraction:g} of {sources['train']}"
    return train, validation


def _seen_in_training(labels: list[str], frames: dict[str, pd.DataFrame | None], sources: dict[str, str],
                      multi_label: bool) -> None:
    """Refuse a validation or test label that no training row carries, with its row."""
    for split, frame in frames.items():
        if frame is None:
            continue
        unseen = sorted(label_set(frame[LABEL]) - set(labels))
        if unseen:
            row = next(i for i, n in enumerate(frame[LABEL]) if unseen[0] in (n if multi_label else (n,))) + 1
            raise HeadclsError(
                f"{sources[split]}: label {unseen[0]!r} (row {row}) never occurs in the training data; "
                f"training labels are: {', '.join(labels)}"
            )
