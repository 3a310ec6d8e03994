"""Reading labelled text: files (CSV, TSV, JSONL, Parquet), folders, and AG News (local copy or the hub).

Every problem a user can fix is a `HeadclsError` naming the file, the row or column, and what would be valid.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from headcls.config import Columns, DataConfig, TrainConfig
from headcls.errors import HeadclsError
from headcls.reading import (  # noqa: F401  (label_order, normalise_label, is_missing: part of this module's API)
    LABEL,
    SUFFIXES,
    TEXT,
    column_labels,
    column_texts,
    is_missing,
    is_multi_label,
    label_order,
    label_set,
    normalise_label,
    raise_two_spellings,
    read_table,
)

logger = logging.getLogger(__name__)

AG_NEWS_LABELS = ["World", "Sports", "Business", "Sci/Tech"]
AG_NEWS_HUB_ID = "fancyzhx/ag_news"


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


def text_and_labels(
    frame: pd.DataFrame, path: str | Path, text_columns: list[str], label_column: str | None,
    separator: str | None = None,
) -> pd.DataFrame:
    """Pick the text column(s) (joined with a space) and the label column; refuse empty rows by number."""
    if len(frame) == 0:
        raise HeadclsError(f"{path}: has a header but no rows")
    out = pd.DataFrame({TEXT: column_texts(frame, path, text_columns)})
    if label_column:
        names, spellings = column_labels(frame, path, label_column, separator=separator)
        out[LABEL] = names
        out.attrs["spellings"] = spellings
    return out


def read_labelled(path: str | Path, cfg: Columns) -> pd.DataFrame:
    return text_and_labels(read_table(path, cfg.encoding), path, cfg.text_column, cfg.label_column,
                           cfg.label_separator)


# The names a --data folder's files may have, per split (the usual spellings of validation included).
SPLIT_NAMES = {"train": ("train",), "validation": ("validation", "valid", "val", "dev"), "test": ("test",)}


def _folder_file(folder: Path, split: str) -> Path | None:
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


def _ag_news(cfg: DataConfig) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """AG News from a local folder (`--data-dir` or HEADCLS_DATA_DIR) or else from the Hugging Face hub."""
    data_dir = cfg.data_dir or os.environ.get("HEADCLS_DATA_DIR")
    frames, sources = {}, {}
    if data_dir:
        for split in ("train", "test"):
            path = Path(data_dir) / "ag_news" / f"{split}.csv"
            if not path.is_file():
                raise HeadclsError(f"{path}: file not found (AG News is read from DATA_DIR/ag_news/{split}.csv)")
            frames[split] = read_table(path)
            sources[split] = str(path)
    else:
        import datasets  # only the hub path needs it here

        logger.info("Loading %s from the Hugging Face hub", AG_NEWS_HUB_ID)
        try:
            hub = datasets.load_dataset(AG_NEWS_HUB_ID)
        except Exception as e:  # offline, hub down, ...: the fix is the same
            raise HeadclsError(
                f"cannot load {AG_NEWS_HUB_ID} from the hub ({type(e).__name__}); "
                "without the network, pass --data-dir DIR holding ag_news/train.csv and ag_news/test.csv"
            ) from None
        for split in ("train", "test"):
            frames[split] = hub[split].to_pandas()
            sources[split] = f"{AG_NEWS_HUB_ID}:{split}"
    for split, frame in frames.items():
        frame = text_and_labels(frame, sources[split], ["text"], "label")
        names = {str(i): name for i, name in enumerate(AG_NEWS_LABELS)}
        bad = sorted(set(frame[LABEL]) - set(names))
        if bad:
            raise HeadclsError(f"{sources[split]}: AG News labels are 0-3, found {bad[0]!r}")
        frame[LABEL] = frame[LABEL].map(names)
        frames[split] = frame
    return frames, sources


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


def load_splits(cfg: DataConfig, read_train: bool = True) -> Splits:
    """Read the splits the config names, check them against each other, and hold out validation if needed.

    A `TrainConfig` needs training rows; any other `DataConfig` (evaluate), or `read_train=False` (a training file
    read as a stream), reads only validation and test.
    """
    need_train = isinstance(cfg, TrainConfig) and read_train
    wanted = ("train", "validation", "test") if need_train else ("validation", "test")
    frames: dict[str, pd.DataFrame] = {}
    sources: dict[str, str] = {}
    if cfg.data == "ag_news":
        frames, sources = _ag_news(cfg)
        if not need_train:
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
            path = _folder_file(folder, split)
            if path:
                frames[split] = read_labelled(path, cfg)
                sources[split] = str(path)
        if not frames:
            names = " / ".join(f"{SPLIT_NAMES[split][0]}.*" for split in wanted)
            raise HeadclsError(f"{folder}: holds no {names} file ({', '.join(SUFFIXES)})")
    files = {"validation": cfg.validation_file, "test": cfg.test_file}
    if need_train:
        files["train"] = cfg.train_file
    for split, path in files.items():
        if path:
            frames[split] = read_labelled(path, cfg)
            sources[split] = str(path)
    if need_train and "train" not in frames:
        raise HeadclsError("no training data: pass --data ag_news, --data FOLDER or --train-file FILE")
    if isinstance(cfg, TrainConfig) and not read_train and "validation" not in frames:
        raise HeadclsError("--streaming needs a validation file (--validation-file, or validation.* in --data): "
                           "rows cannot be held out of a stream")
    if not need_train and "test" not in frames and "validation" not in frames:
        raise HeadclsError("no data to evaluate: pass --test-file FILE, --data FOLDER or --data ag_news")
    _same_spellings(frames)
    # The label shape is the training file's (for evaluate, any file's): lists there make the run multi-label, and
    # a plain label elsewhere is then a list of one; lists in another file beside one label per row are refused.
    shaped = {split: is_multi_label(frame[LABEL]) for split, frame in frames.items() if LABEL in frame}
    multi_label = shaped["train"] if need_train else any(shaped.values())
    for split, frame in frames.items():
        if split in shaped and shaped[split] and not multi_label:
            raise HeadclsError(f"{sources[split]}: holds several labels per row (lists, or --label-separator), but "
                               f"the training data {sources['train']} one label per row; give both one shape")
        if multi_label:
            frame[LABEL] = [n if isinstance(n, tuple) else (n,) for n in frame[LABEL]]

    train = frames.get("train")
    validation = frames.get("validation")
    test = frames.get("test")
    if train is not None and need_train:
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
    if test is not None and cfg.test_samples is not None:
        test = _first_rows(test, cfg.test_samples, False, 0, sources["test"])

    if cfg.data == "ag_news":
        labels = list(AG_NEWS_LABELS)
    elif train is not None and need_train:
        labels = label_order(train[LABEL])
    else:
        labels = label_order(pd.concat([f[LABEL] for f in (validation, test) if f is not None]))
    if need_train:
        for split, frame in (("validation", validation), ("test", test)):
            if frame is None:
                continue
            unseen = sorted(label_set(frame[LABEL]) - set(labels))
            if unseen:
                row = next(i for i, n in enumerate(frame[LABEL]) if unseen[0] in (n if multi_label else (n,))) + 1
                raise HeadclsError(
                    f"{sources[split]}: label {unseen[0]!r} (row {row}) never occurs in the training data; "
                    f"training labels are: {', '.join(labels)}"
                )
    return Splits(train, validation, test, labels, sources, multi_label)


def label_targets(names, label2id: dict[str, int], multi_label: bool) -> list:
    """The training targets of a label column: ids, or multi-hot float vectors for multi-label."""
    if not multi_label:
        return [label2id[name] for name in names]
    out = []
    for row in names:
        hot = [0.0] * len(label2id)
        for name in row:
            hot[label2id[name]] = 1.0
        out.append(hot)
    return out


def tokenize(
    frame: pd.DataFrame, tokenizer, label2id: dict[str, int] | None, max_length: int, sort_by_length: bool = False,
    long_text=None, multi_label: bool = False,
):
    """A `datasets.Dataset` of input ids (cut to `max_length`, not padded: batches are padded by the collator).

    `long_text` (a `headcls.longtext.LongText`) says how a longer text is read: truncated, its head and tail, or
    as overlapping windows, one row each, carrying the text's label and its row number in column `doc`.
    `sort_by_length` orders rows by token count, so that evaluation batches carry almost no padding.
    """
    import datasets

    from headcls.longtext import Pieces, encode_whole, special_layout

    columns = {TEXT: frame[TEXT].tolist(), "doc": list(range(len(frame)))}
    if label2id is not None and LABEL in frame:
        columns[LABEL] = label_targets(frame[LABEL], label2id, multi_label)
    dataset = datasets.Dataset.from_dict(columns)
    if long_text is None or long_text.mode == "truncate":
        dataset = dataset.map(
            lambda batch: tokenizer(batch[TEXT], truncation=True, max_length=max_length),
            batched=True,
            remove_columns=[TEXT],
            desc="Tokenizing",
        )
    else:
        layout = special_layout(tokenizer)

        def pieces(batch):
            cut = Pieces(encode_whole(tokenizer, batch[TEXT]), long_text, max_length, layout)
            rows = [cut.features(p) for p in range(len(cut))]
            out = {key: [row[key] for row in rows] for key in (rows[0] if rows else {})}
            out["doc"] = [batch["doc"][i] for i in cut.doc]
            if LABEL in batch:
                out[LABEL] = [batch[LABEL][i] for i in cut.doc]
            return out

        dataset = dataset.map(pieces, batched=True, batch_size=64, remove_columns=dataset.column_names,
                              desc=f"Tokenizing ({long_text.mode})")
    if sort_by_length:
        lengths = [len(ids) for ids in dataset["input_ids"]]
        dataset = dataset.select(sorted(range(len(lengths)), key=lengths.__getitem__))
    return dataset
