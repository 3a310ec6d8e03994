"""Reading labelled text: files (CSV, TSV, JSONL, Parquet), folders, and AG News (local copy or the hub).

Every problem a user can fix is a `HeadclsError` naming the file, the row or column, and what would be valid.
"""

from __future__ import annotations

import codecs
import io
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from headcls.config import DataConfig
from headcls.errors import HeadclsError

logger = logging.getLogger(__name__)

AG_NEWS_LABELS = ["World", "Sports", "Business", "Sci/Tech"]
AG_NEWS_HUB_ID = "fancyzhx/ag_news"
SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
TEXT, LABEL = "text", "label"


@dataclass
class Splits:
    """Labelled rows per split (columns `text` and `label`, labels as names) and the ordered label names."""

    train: pd.DataFrame | None
    validation: pd.DataFrame | None
    test: pd.DataFrame | None
    labels: list[str]
    sources: dict[str, str]


def file_format(path: str | Path) -> str:
    fmt = SUFFIXES.get(Path(path).suffix.lower())
    if fmt is None:
        raise HeadclsError(f"{path}: unsupported file type; use one of {', '.join(sorted(SUFFIXES))}")
    return fmt


def decode_text(raw: bytes, path: str | Path, encoding: str = "utf-8", final: bool = True) -> str:
    """Bytes to text, refusing binary files and wrongly encoded ones with a pointer to --encoding.

    With `final=False`, `raw` may end inside a multi-byte character (the head of a larger file).
    """
    if b"\x00" in raw:
        offset = raw.index(b"\x00")
        raise HeadclsError(f"{path}: contains a NUL byte at offset {offset}; this is not a text file")
    try:
        text = codecs.getincrementaldecoder(encoding)().decode(raw, final=final)
    except UnicodeDecodeError as e:
        raise HeadclsError(
            f"{path}: is not {encoding} text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
            f"if the file is in another encoding, pass it with --encoding (e.g. --encoding latin-1)"
        ) from None
    except LookupError:
        raise HeadclsError(f"unknown encoding {encoding!r}") from None
    return text.removeprefix("\ufeff")


def read_table(path: str | Path, encoding: str = "utf-8") -> pd.DataFrame:
    """Read a CSV / TSV / JSONL / Parquet file into a DataFrame, with one-line errors for bad files."""
    path = Path(path)
    fmt = file_format(path)
    if not path.is_file():
        raise HeadclsError(f"{path}: file not found")
    if fmt == "parquet":
        try:
            return pd.read_parquet(path)
        except Exception as e:  # pyarrow raises many types for a corrupt file
            raise HeadclsError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0]})") from None
    text = decode_text(path.read_bytes(), path, encoding)
    if not text.strip():
        raise HeadclsError(f"{path}: the file is empty")
    try:
        if fmt == "jsonl":
            return pd.read_json(io.StringIO(text), lines=True, dtype=False)
        # Every cell as a string, and no "NA"/"null" guessing: a text that says "None" stays a text.
        return pd.read_csv(
            io.StringIO(text), sep="\t" if fmt == "tsv" else ",", dtype=str, keep_default_na=False
        )
    except pd.errors.ParserError as e:
        raise HeadclsError(f"{path}: cannot be parsed as {fmt.upper()} ({str(e).strip()})") from None
    except ValueError as e:
        raise HeadclsError(f"{path}: cannot be parsed as {fmt.upper()} ({str(e).splitlines()[0]})") from None


def is_missing(value) -> bool:
    """The missing values JSONL and Parquet carry: null and NaN (CSV cells are read as strings)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def normalise_label(value) -> str | None:
    """A label as a string name: 3, 3.0 and "3" are all "3"; blanks and NaN are None."""
    if is_missing(value):
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def label_order(names) -> list[str]:
    """Integer-like labels in numeric order, others alphabetically (as run_classification.py does)."""
    names = set(names)
    try:
        return sorted(names, key=int)
    except ValueError:
        return sorted(names)


def text_and_labels(
    frame: pd.DataFrame, path: str | Path, text_columns: list[str], label_column: str | None
) -> pd.DataFrame:
    """Pick the text column(s) (joined with a space) and the label column; refuse empty rows by number."""
    if len(frame) == 0:
        raise HeadclsError(f"{path}: has a header but no rows")
    wanted = [*text_columns, *([label_column] if label_column else [])]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        found = ", ".join(repr(str(c)) for c in frame.columns)
        hint = ""
        if len(frame.columns) == 1:
            hint = " (only one column: is the delimiter right? .csv is read comma-separated, .tsv tab-separated)"
        kind = "text" if missing[0] in text_columns else "label"
        raise HeadclsError(f"{path}: missing {kind} column {missing[0]!r}; columns found: {found}{hint}")
    parts = [frame[c].map(lambda v: "" if is_missing(v) else str(v)) for c in text_columns]
    text = parts[0]
    for part in parts[1:]:
        text = text.str.cat(part, sep=" ")
    out = pd.DataFrame({TEXT: text.to_numpy()})
    blank = out.index[out[TEXT].str.strip() == ""]
    if len(blank):
        raise HeadclsError(f"{path}: row {blank[0] + 1} has an empty text in {'+'.join(text_columns)}")
    if label_column:
        labels = frame[label_column].map(normalise_label)
        blank = labels.index[labels.isna()]
        if len(blank):
            raise HeadclsError(f"{path}: row {blank[0] + 1} has an empty label in column {label_column!r}")
        out[LABEL] = labels.to_numpy()
    return out


def read_labelled(path: str | Path, cfg: DataConfig) -> pd.DataFrame:
    return text_and_labels(read_table(path, cfg.encoding), path, cfg.text_column, cfg.label_column)


def _folder_file(folder: Path, split: str) -> Path | None:
    found = [p for p in sorted(folder.glob(f"{split}.*")) if p.suffix.lower() in SUFFIXES]
    return found[0] if found else None


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


def _first_rows(frame: pd.DataFrame, n: int | None, stratify: bool, seed: int, what: str) -> pd.DataFrame:
    if n is None:
        return frame
    if n > len(frame):
        raise HeadclsError(f"{what}: asked for {n} rows but it has only {len(frame)}")
    if not stratify or n == len(frame):
        return frame.iloc[:n].reset_index(drop=True)
    from sklearn.model_selection import train_test_split

    counts = frame[LABEL].value_counts()
    if counts.min() < 2 or n < len(counts):
        raise HeadclsError(f"{what}: cannot take a stratified sample of {n} rows over {len(counts)} classes")
    sample, _ = train_test_split(frame, train_size=n, stratify=frame[LABEL], random_state=seed)
    return sample.reset_index(drop=True)


def _hold_out(frame: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded, stratified validation split. Rows of a class seen only once stay in train."""
    from sklearn.model_selection import train_test_split

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
            "split; add rows or pass --validation-file"
        )
    train, val = train_test_split(rest, test_size=n_val, stratify=rest[LABEL], random_state=seed)
    train = pd.concat([train, frame[single]])
    return train.reset_index(drop=True), val.reset_index(drop=True)


def load_splits(cfg: DataConfig, need_train: bool = True) -> Splits:
    """Read the splits the config names, check them against each other, and hold out validation if needed."""
    frames: dict[str, pd.DataFrame] = {}
    sources: dict[str, str] = {}
    if cfg.data == "ag_news":
        frames, sources = _ag_news(cfg)
    elif cfg.data:
        folder = Path(cfg.data)
        if not folder.is_dir():
            raise HeadclsError(f"--data {cfg.data}: not 'ag_news' and not a folder")
        for split in ("train", "validation", "test"):
            path = _folder_file(folder, split)
            if path:
                frames[split] = read_labelled(path, cfg)
                sources[split] = str(path)
        if not frames:
            raise HeadclsError(f"{folder}: holds no train.*, validation.* or test.* file ({', '.join(SUFFIXES)})")
    for split, path in (("train", cfg.train_file), ("validation", cfg.validation_file), ("test", cfg.test_file)):
        if path:
            frames[split] = read_labelled(path, cfg)
            sources[split] = str(path)
    if need_train and "train" not in frames:
        raise HeadclsError("no training data: pass --data ag_news, --data FOLDER or --train-file FILE")
    if not need_train and "test" not in frames and "validation" not in frames:
        raise HeadclsError("no data to evaluate: pass --test-file FILE, --data FOLDER or --data ag_news")

    train = frames.get("train")
    validation = frames.get("validation")
    test = frames.get("test")
    if train is not None and need_train:
        train = _first_rows(train, cfg.train_samples, cfg.stratify, cfg.seed, sources["train"])
        duplicates = int(train.duplicated().sum())
        if duplicates:
            logger.info("%s: %d duplicate rows (text and label) kept", sources["train"], duplicates)
        classes = train[LABEL].unique()
        if len(classes) < 2:
            hint = "" if cfg.train_samples is None or cfg.stratify else " (the rows may be sorted by class: add --stratify)"
            raise HeadclsError(
                f"{sources['train']}: only one class ({classes[0]!r}) in the training rows; "
                f"a classifier needs at least two{hint}"
            )
        if validation is None:
            train, validation = _hold_out(train, cfg.validation_fraction, cfg.seed)
            sources["validation"] = f"{cfg.validation_fraction:g} of {sources['train']}"
    if test is not None and cfg.test_samples is not None:
        test = _first_rows(test, cfg.test_samples, False, cfg.seed, sources["test"])

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
            unseen = sorted(set(frame[LABEL]) - set(labels))
            if unseen:
                row = int(frame.index[frame[LABEL] == unseen[0]][0]) + 1
                raise HeadclsError(
                    f"{sources[split]}: label {unseen[0]!r} (row {row}) never occurs in the training data; "
                    f"training labels are: {', '.join(labels)}"
                )
    return Splits(train, validation, test, labels, sources)


def tokenize(
    frame: pd.DataFrame, tokenizer, label2id: dict[str, int] | None, max_length: int, sort_by_length: bool = False
):
    """A `datasets.Dataset` of input ids (truncated, not padded: batches are padded by the collator).

    `sort_by_length` orders rows by token count, so that evaluation batches carry almost no padding.
    """
    import datasets

    columns = {TEXT: frame[TEXT].tolist()}
    if label2id is not None and LABEL in frame:
        columns[LABEL] = [label2id[name] for name in frame[LABEL]]
    dataset = datasets.Dataset.from_dict(columns)
    dataset = dataset.map(
        lambda batch: tokenizer(batch[TEXT], truncation=True, max_length=max_length),
        batched=True,
        remove_columns=[TEXT],
        desc="Tokenizing",
    )
    if sort_by_length:
        lengths = [len(ids) for ids in dataset["input_ids"]]
        dataset = dataset.select(sorted(range(len(lengths)), key=lengths.__getitem__))
    return dataset
