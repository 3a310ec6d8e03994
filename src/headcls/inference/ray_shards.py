"""The files of a Ray Data run: the inputs listed and checked, read chunk by chunk; the output shards named."""

from __future__ import annotations

import contextlib
import glob
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from headcls.errors import HeadclsError

MARKER = "_headcls.json"  # a leading "_": pandas, pyarrow, Spark and Ray skip it when they read the folder
# Rows per map_batches call, and per block read: big enough that length-sorted batches pad little, small
# enough that a few thousand rows still keep every worker busy to the end.
ROWS_PER_BATCH = 512


def input_files(pattern: str) -> tuple[list[str], str]:
    """The files of --input, absolute and sorted, and their one format. --input is a file, a folder (the files
    in it) or a glob (`shards/*.parquet`, `data/**/*.csv`); names starting with `.` or `_` (markers such as
    _SUCCESS or _headcls.json) are not data and are left out."""
    from headcls.files.tables import PREDICT_SUFFIXES, file_format

    path = Path(pattern)
    if path.is_dir():
        found = sorted(path.iterdir())
    elif path.is_file():
        found = [path]
    elif any(c in pattern for c in "*?["):
        found = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
    else:
        raise HeadclsError(f"--input {pattern}: no such file or folder")
    found = [p for p in found if p == path or not p.name.startswith((".", "_"))]
    if not found:
        raise HeadclsError(f"--input {pattern}: {'the folder holds' if path.is_dir() else 'matches'} no files")
    formats: dict[str, Path] = {}
    for p in found:
        if p.is_dir():
            raise HeadclsError(f"--input {pattern}: {p} is a folder; for files in subfolders give a glob, "
                               f"e.g. --input '{path / '**' / '*.parquet'}'")
        formats.setdefault(file_format(p, PREDICT_SUFFIXES), p)
    if len(formats) > 1:
        (a, file_a), (b, file_b) = list(formats.items())[:2]
        raise HeadclsError(f"--input {pattern}: holds {a} ({file_a.name}) and {b} ({file_b.name}) files; "
                           "give shards of one format")
    return [str(p.resolve()) for p in found], next(iter(formats))


def check_replaceable_predictions(out: Path, overwrite: bool) -> None:
    """As for every output (headcls.files.outputs.check_replaceable), and a folder this command wrote (it holds
    _headcls.json) is one headcls wrote."""
    from headcls.files.outputs import check_replaceable

    if overwrite and out.is_dir() and (out / MARKER).is_file():
        return
    check_replaceable(out, overwrite)


def check_frame(frame: pd.DataFrame, path: str, columns: list[str], first_row: int, added: list[str]) -> None:
    """The text rule of every command (headcls.files.columns.column_texts), and no input column that a prediction
    column would overwrite."""
    from headcls.files.columns import column_texts

    column_texts(frame, path, columns, first_row, "line" if path.lower().endswith(".txt") else "row")
    taken = [c for c in frame.columns if c in added]
    if taken:
        raise HeadclsError(f"{path}: has a column {taken[0]!r}, which the predictions would overwrite (they add "
                           f"{', '.join(added)}); rename or drop it")


def first_chunk(path: str, columns: list[str], encoding: str, added: list[str]) -> None:
    """The first rows of the first file, checked as every chunk is: a wrong column or encoding shows at once."""
    from headcls.files.tables import PREDICT_SUFFIXES, iter_frames

    with contextlib.closing(iter_frames(path, encoding, ROWS_PER_BATCH, PREDICT_SUFFIXES)) as frames:
        first, frame = next(frames)
        check_frame(frame, path, columns, first, added)


def read_files(batch: dict, columns: list[str], encoding: str, added: list[str]) -> Iterator[pd.DataFrame]:
    """The read step (Ray tasks): every file named in the batch, chunk by chunk, each chunk checked."""
    from headcls.files.tables import PREDICT_SUFFIXES, iter_frames

    for path in batch["path"]:
        for first, frame in iter_frames(str(path), encoding, ROWS_PER_BATCH, PREDICT_SUFFIXES):
            check_frame(frame, str(path), columns, first, added)
            if len(frame):
                yield frame


def name_shards(staging: Path, output_format: str) -> list[Path]:
    """Ray names its files {uuid}_{index}; give them stable names, part-00000.parquet, ..."""
    written = sorted(p for p in staging.iterdir() if not p.name.startswith((".", "_")))
    suffix = "parquet" if output_format == "parquet" else "jsonl"
    named = []
    for i, path in enumerate(written):
        named.append(path.rename(staging / f"part-{i:05d}.{suffix}"))
    return named


def count_rows(shards: list[Path], output_format: str) -> int:
    if output_format == "parquet":
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(p).metadata.num_rows for p in shards)
    count = 0
    for path in shards:
        with path.open("rb") as f:
            count += sum(1 for line in f if line.strip())
    return count
