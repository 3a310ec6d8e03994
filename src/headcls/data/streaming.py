"""Training rows read as a stream (`headcls train --streaming`): a file larger than memory is read in chunks, each
time the Trainer starts a pass over it, under the same rules for texts and labels as a file read whole.

A local file is read by `headcls.files` (the one decoding path); a URL (`s3://...`, `gs://...`, `https://...`)
by `datasets` streaming through fsspec. The label space is the declared `--labels`, or the labels one counting
pass finds (which also counts the rows, so that --epochs still means passes). Validation and test files stay in
memory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from headcls.errors import HeadclsError
from headcls.files.columns import column_labels, column_texts, label_order, raise_two_spellings
from headcls.files.tables import LABEL, SUFFIXES, file_format
from headcls.options.commands import TrainConfig

logger = logging.getLogger(__name__)

CHUNK_ROWS = 4096
SHUFFLE_BUFFER = 10_000  # rows shuffled together: a stream cannot be shuffled whole


def is_url(path: str) -> bool:
    return "://" in path


def chunks(path: str, encoding: str, chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[int, pd.DataFrame]]:
    """(number of the first row, DataFrame) chunks of a CSV / TSV / JSONL / Parquet file or URL."""
    if not is_url(path):
        from headcls.files.tables import iter_frames

        yield from iter_frames(path, encoding, chunk_rows)
        return
    import datasets

    builder = {"csv": "csv", "tsv": "csv", "jsonl": "json", "parquet": "parquet"}[file_format(path, SUFFIXES)]
    options = {"sep": "\t"} if path.lower().endswith(".tsv") else {}
    try:
        stream = datasets.load_dataset(builder, data_files=path, split="train", streaming=True, **options)
        first = 1
        for batch in stream.iter(batch_size=chunk_rows):
            frame = pd.DataFrame(batch)
            yield first, frame
            first += len(frame)
    except HeadclsError:
        raise
    except Exception as e:  # noqa: BLE001  fsspec and datasets raise many types for a URL that cannot be read
        raise HeadclsError(f"{path}: cannot be read as a stream ({type(e).__name__}: {str(e).splitlines()[0]})") \
            from None


def count(path: str, text_columns: list[str], label_column: str, encoding: str) -> tuple[list[str], int]:
    """One pass over the file: its label names (ordered as for a file read whole) and its row count. Every row
    is checked as it would be in memory (no text, a blank label, two spellings of one label)."""
    spellings: dict = {}
    rows = 0
    for first, frame in chunks(path, encoding):
        column_texts(frame, path, text_columns, first)
        _, found = column_labels(frame, path, label_column, first, multi_label=False)
        for name, seen in found.items():
            known = spellings.setdefault(name, seen)
            if known[0] != seen[0]:
                raise_two_spellings(name, known, seen)
        rows += len(frame)
    if rows == 0:
        raise HeadclsError(f"{path}: has a header but no rows")
    return label_order(spellings), rows


def training_stream(path: str, cfg, tokenizer, label2id: dict[str, int]):
    """A `datasets.IterableDataset` of tokenized rows (input ids, label id), shuffled within a buffer, reshuffled
    each pass (the Trainer sets the epoch); a label outside `label2id` is refused with its row."""
    import datasets

    def rows():
        for first, frame in chunks(path, cfg.encoding):
            texts = column_texts(frame, path, cfg.text_column, first)
            names, _ = column_labels(frame, path, cfg.label_column, first, multi_label=False)
            unknown = next((i for i, name in enumerate(names) if name not in label2id), None)
            if unknown is not None:
                raise HeadclsError(f"{path}: row {first + unknown} has label {names[unknown]!r}, which is not in "
                                   f"--labels ({', '.join(label2id)})")
            encoded = tokenizer(texts, truncation=True, max_length=cfg.max_length)
            for i, name in enumerate(names):
                yield {**{key: values[i] for key, values in encoded.items()}, LABEL: label2id[name]}

    stream = datasets.IterableDataset.from_generator(rows)
    return stream.shuffle(seed=cfg.seed, buffer_size=SHUFFLE_BUFFER)


def source(cfg) -> str:
    """The one training file --streaming reads, from --train-file or the --data folder."""
    if cfg.train_file:
        return cfg.train_file
    from headcls.data.splits import folder_file

    found = folder_file(Path(cfg.data), "train") if cfg.data and cfg.data != "ag_news" else None
    if found is None:
        raise HeadclsError("--streaming reads a training file: pass --train-file FILE (a path or a URL) or --data "
                           "FOLDER holding train.*")
    return str(found)


def read_stream_plan(cfg: TrainConfig) -> dict:
    """For --streaming: the training file, its label space (declared, or found by one counting pass) and its row
    count (None when declared)."""
    from headcls.files.columns import normalise_label

    path = source(cfg)
    if cfg.labels is not None:
        return {"path": path, "labels": [normalise_label(name) for name in cfg.labels], "rows": None}
    logger.info("Counting the rows and labels of %s (one pass; --labels and --max-steps skip it)", path)
    labels, rows = count(path, cfg.text_column, cfg.label_column, cfg.encoding)
    return {"path": path, "labels": labels, "rows": rows}


def stream_splits(splits, stream: dict):
    """The in-memory validation and test splits beside a streamed training file, checked against its labels."""
    from headcls.data.splits import Splits

    labels = stream["labels"]  # a stream is single-label (headcls.files.columns.column_labels refuses lists in one)
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
