"""Tables from files: CSV, TSV, JSONL, Parquet (and .txt, one text per line), whole or in streamed chunks."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from headcls.errors import HeadclsError
from headcls.files.text import TextReader

SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


PREDICT_SUFFIXES = {**SUFFIXES, ".txt": "txt"}  # unlabelled text may also be one text per line


TEXT, LABEL = "text", "label"


def file_format(path: str | Path, allowed: dict[str, str] = SUFFIXES) -> str:
    fmt = allowed.get(Path(path).suffix.lower())
    if fmt is None:
        raise HeadclsError(f"{path}: unsupported file type; use one of {', '.join(sorted(allowed))}")
    return fmt


def iter_frames(path: str | Path, encoding: str = "utf-8", chunk_rows: int = 4096, allowed: dict = SUFFIXES):
    """Yield (number of the first row, DataFrame) chunks of a CSV / TSV / JSONL / Parquet (or .txt) file.

    Text formats go through `TextReader`; Parquet is read by pyarrow, never decoded as text. CSV cells are read
    as strings with no "NA"/"null" guessing: a text that says "None" stays a text. A .txt file is one text per
    line, in a column named `text`.
    """
    path = Path(path)
    if path.is_dir():
        raise HeadclsError(f"{path}: is a folder; give a file ({', '.join(sorted(allowed))})")
    fmt = file_format(path, allowed)
    if not path.exists():
        raise HeadclsError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise HeadclsError(f"{path}: the file is empty")
    if fmt == "parquet":
        yield from _parquet_frames(path, chunk_rows)
        return
    with TextReader(path, encoding) as reader:
        if fmt == "txt":
            yield from _line_frames(reader, chunk_rows)
        elif fmt == "jsonl":
            yield from _jsonl_frames(reader, path, chunk_rows)
        else:
            yield from _csv_frames(reader, path, fmt, chunk_rows)


def _line_frames(reader: TextReader, chunk_rows: int):
    first, lines = 1, []
    for line in reader:
        lines.append(line.removesuffix("\n"))
        if len(lines) == chunk_rows:
            yield first, pd.DataFrame({TEXT: lines})
            first, lines = first + len(lines), []
    if lines or first == 1:
        yield first, pd.DataFrame({TEXT: lines})


def _jsonl_frames(reader: TextReader, path: Path, chunk_rows: int):
    first, rows, row = 1, [], 0
    for number, line in enumerate(reader, start=1):
        if not line.strip():
            continue  # blank lines between records carry no row
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise HeadclsError(
                f"{path}: line {number} is not valid JSON ({e.msg}); JSONL holds one object per line"
            ) from None
        if not isinstance(record, dict):
            raise HeadclsError(
                f"{path}: line {number} is a JSON {type(record).__name__}, not an object of columns "
                "(.json and .jsonl files are read as JSON Lines: one object per line)"
            )
        rows.append(record)
        row += 1
        if len(rows) == chunk_rows:
            yield first, pd.DataFrame.from_records(rows)
            first, rows = row + 1, []
    if rows or first == 1:
        yield first, pd.DataFrame.from_records(rows)


def _csv_frames(reader: TextReader, path: Path, fmt: str, chunk_rows: int):
    # header=None, then the first row as the header: pandas would rename a repeated column ("text.1") silently.
    try:
        chunks = pd.read_csv(
            reader, sep="\t" if fmt == "tsv" else ",", header=None, dtype=str, keep_default_na=False,
            chunksize=chunk_rows, skip_blank_lines=False,  # a blank line is a row with an empty text: refused
        )
        header, first = None, 1
        for chunk in chunks:
            if header is None:
                header = [str(c) for c in chunk.iloc[0]]
                repeated = sorted({c for c in header if header.count(c) > 1})
                if repeated:
                    raise HeadclsError(f"{path}: column {repeated[0]!r} appears more than once in the header")
                chunk = chunk.iloc[1:]
            chunk.columns = header
            yield first, chunk.reset_index(drop=True)
            first += len(chunk)
    except pd.errors.EmptyDataError:
        raise HeadclsError(f"{path}: the file is empty") from None
    except pd.errors.ParserError as e:
        raise HeadclsError(f"{path}: cannot be parsed as {fmt.upper()} ({str(e).strip()})") from None


def _parquet_frames(path: Path, chunk_rows: int):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
        names = file.schema_arrow.names
        if len(set(names)) != len(names):
            repeated = sorted({c for c in names if names.count(c) > 1})
            raise HeadclsError(f"{path}: column {repeated[0]!r} appears more than once")
        first = 1
        for batch in file.iter_batches(batch_size=chunk_rows):
            frame = batch.to_pandas()
            yield first, frame
            first += len(frame)
        if first == 1:
            yield first, file.schema_arrow.empty_table().to_pandas()
    except (pa.ArrowException, OSError, ValueError) as e:
        raise HeadclsError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0]})") from None


def read_table(path: str | Path, encoding: str = "utf-8") -> pd.DataFrame:
    """A whole CSV / TSV / JSONL / Parquet file as a DataFrame (for training and evaluation data)."""
    frames = [frame for _, frame in iter_frames(path, encoding, chunk_rows=1 << 16)]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
