"""Reading files: the one decoding path for text files, streamed frames of every format, and the rules for
texts and labels that train, evaluate and predict share.

Every problem a user can fix is a `HeadclsError` naming the file, the row or column, and what would be valid.
"""

from __future__ import annotations

import codecs
import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from headcls.errors import HeadclsError

SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
PREDICT_SUFFIXES = {**SUFFIXES, ".txt": "txt"}  # unlabelled text may also be one text per line
TEXT, LABEL = "text", "label"


def file_format(path: str | Path, allowed: dict[str, str] = SUFFIXES) -> str:
    fmt = allowed.get(Path(path).suffix.lower())
    if fmt is None:
        raise HeadclsError(f"{path}: unsupported file type; use one of {', '.join(sorted(allowed))}")
    return fmt


# Byte-order marks, longest first (the UTF-32 LE mark starts with the UTF-16 LE one).
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Python's incremental UTF-16/32 decoders refuse a stream without a BOM; such files are little-endian in practice.
NO_BOM = {"utf-16": "utf-16-le", "utf-32": "utf-32-le"}


class TextReader(io.TextIOBase):
    """The one way headcls reads text files: bytes decoded with `encoding` (a BOM overrides it and is dropped),
    every line ending (\\r\\n, \\r, \\n) read as \\n, and a NUL character or an undecodable byte refused with its
    position. Streams: memory stays bounded whatever the file size.
    """

    CHUNK = 1 << 16

    def __init__(self, path: str | Path, encoding: str = "utf-8"):
        self.path = Path(path)
        self.raw = self.path.open("rb")
        head = self.raw.read(4)
        bom = next(((mark, name) for mark, name in BOMS if head.startswith(mark)), None)
        if bom:
            self.codec = bom[1]
            head = head[len(bom[0]) :]
            self.offset = len(bom[0])
        else:
            name = codecs.lookup(encoding).name
            self.codec = NO_BOM.get(name, name)
            self.offset = 0
        self.named = encoding
        self.inner = codecs.getincrementaldecoder(self.codec)(errors="strict")
        self.decoder = io.IncrementalNewlineDecoder(self.inner, translate=True)
        self.buffer = ""
        self.chars = 0  # characters decoded so far, for the position of a NUL
        self.done = False
        self._feed(head, final=False)

    def _feed(self, data: bytes, final: bool) -> None:
        pending = len(self.inner.getstate()[0])
        try:
            text = self.decoder.decode(data, final=final)
        except UnicodeError as e:
            at = self.offset - pending + getattr(e, "start", 0)
            bad = getattr(e, "object", b"")[getattr(e, "start", 0) : getattr(e, "start", 0) + 1]
            byte = f"byte 0x{bad[0]:02x} at offset {at}" if bad else f"at offset {at}"
            raise HeadclsError(
                f"{self.path}: is not {self.named} text ({byte}); if the file is in another encoding, "
                "pass it with --encoding (e.g. --encoding latin-1)"
            ) from None
        nul = text.find("\x00")
        if nul >= 0:
            raise HeadclsError(
                f"{self.path}: contains a NUL character (character {self.chars + nul} of the {self.codec} text); "
                "this is not a text file, or not in this encoding (pass --encoding)"
            )
        self.offset += len(data)
        self.chars += len(text)
        self.buffer += text

    def _fill(self) -> bool:
        if self.done:
            return False
        data = self.raw.read(self.CHUNK)
        self.done = not data
        self._feed(data, final=self.done)
        return True

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> str:
        while (size is None or size < 0 or len(self.buffer) < size) and self._fill():
            pass
        if size is None or size < 0:
            size = len(self.buffer)
        out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out

    def readline(self, size: int | None = -1) -> str:
        while "\n" not in self.buffer and self._fill():
            pass
        end = self.buffer.find("\n") + 1 or len(self.buffer)
        out, self.buffer = self.buffer[:end], self.buffer[end:]
        return out

    def close(self) -> None:
        self.raw.close()
        super().close()


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


def is_missing(value) -> bool:
    """The missing values JSONL and Parquet carry: null and NaN (CSV cells are read as strings)."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _what(value) -> str:
    return {list: "a list", np.ndarray: "a list", dict: "an object", bytes: "bytes"}.get(type(value),
                                                                                         type(value).__name__)


def column_texts(
    frame: pd.DataFrame, source, columns: list[str], first_row: int = 1, row_word: str = "row"
) -> list[str]:
    """The one rule for texts, in train, evaluate and predict alike: a row whose text is missing, empty or only
    whitespace is refused with its number (nothing is skipped silently); several columns are joined with a space.
    """
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        found = ", ".join(repr(str(c)) for c in frame.columns)
        hint = ""
        if len(frame.columns) == 1:
            hint = " (only one column: is the delimiter right? .csv is read comma-separated, .tsv tab-separated)"
        raise HeadclsError(f"{source}: missing text column {missing[0]!r}; columns found: {found}{hint}")
    parts = []
    for column in columns:
        values = []
        for i, value in enumerate(frame[column].tolist()):
            if is_missing(value):
                value = ""
            elif isinstance(value, (list, dict, bytes, np.ndarray)):
                raise HeadclsError(
                    f"{source}: {row_word} {first_row + i} holds {_what(value)} in column {column!r}, not a text"
                )
            values.append(value if isinstance(value, str) else str(value))
        parts.append(values)
    texts = [" ".join(row) for row in zip(*parts)] if len(parts) > 1 else parts[0]
    for i, text in enumerate(texts):
        if not text.strip():
            blank = row_word == "row" and all(_blank(v) for v in frame.iloc[i].tolist())
            hint = " (a blank line? remove it)" if blank and len(frame.columns) > 1 else ""
            raise HeadclsError(
                f"{source}: {row_word} {first_row + i} has no text in {'+'.join(columns)} "
                f"(empty or only whitespace){hint}"
            )
    return texts


def _blank(value) -> bool:
    return is_missing(value) or (isinstance(value, str) and not value.strip())


def _label_name(value) -> tuple[str, str] | None:
    """(name, spelling): numbers in one canonical form (3, 3.0 and "3" are all "3"), other labels stripped; the
    spelling is how the file wrote it, to catch two spellings of one name. None for a blank."""
    if is_missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):  # as JSON and CSV write them
        return str(bool(value)).lower(), str(bool(value)).lower()
    if isinstance(value, (int, np.integer)):
        return str(int(value)), str(int(value))
    if isinstance(value, (float, np.floating)):
        name = str(int(value)) if math.isfinite(value) and float(value).is_integer() else str(value)
        return name, name
    spelling = str(value)
    text = spelling.strip()
    if not text:
        return None
    try:
        return str(int(text)), spelling
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text, spelling
    return (str(int(number)) if math.isfinite(number) and number.is_integer() else text), spelling


def normalise_label(value) -> str | None:
    """A label as a string name: 3, 3.0 and "3" are all "3"; blanks and NaN are None."""
    named = _label_name(value)
    return named[0] if named else None


def column_labels(frame: pd.DataFrame, source, column: str, first_row: int = 1, separator: str | None = None,
                  multi_label: bool = True) -> tuple[list, dict]:
    """Label names of a column, and {name: (spelling, row)} of their first spellings. A blank label is refused
    with its row; so is a name written two ways ("01" and "1", "a" and "a "): no label is merged silently.

    A column of lists (JSONL, Parquet), or of strings split on `separator` (CSV, TSV), is multi-label: each row's
    names are then a tuple, in first-seen order without repeats; `[]` (or a blank cell when split) is a text with
    no label. `multi_label=False` refuses such a column (a stream takes one label per row).
    """
    if column not in frame.columns:
        found = ", ".join(repr(str(c)) for c in frame.columns)
        raise HeadclsError(f"{source}: missing label column {column!r}; columns found: {found}")
    values = frame[column].tolist()
    lists = separator is not None or any(isinstance(v, (list, tuple, np.ndarray)) for v in values)
    names, spellings = [], {}

    def name_of(value, row: int, where: str = "") -> str:
        if isinstance(value, (list, tuple, dict, bytes, np.ndarray)):
            raise HeadclsError(
                f"{source}: row {row} holds {_what(value)} {where}in label column {column!r}; "
                + ("a row's labels are one flat list" if lists else "headcls takes one label per row")
            )
        named = _label_name(value)
        if named is None:
            raise HeadclsError(f"{source}: row {row} has an empty label {where}in column {column!r}"
                               + ("; a text with no label is written []" if lists and separator is None else ""))
        name, spelling = named
        seen = spellings.setdefault(name, (spelling, row, source))
        if seen[0] != spelling:
            raise_two_spellings(name, seen, (spelling, row, source))
        return name

    if lists and not multi_label:
        row = next(i for i, v in enumerate(values) if separator or isinstance(v, (list, tuple, np.ndarray)))
        raise HeadclsError(f"{source}: row {first_row + row} holds several labels in column {column!r}; multi-label "
                           "data is read whole, not with --streaming")
    for i, value in enumerate(values):
        row = first_row + i
        if not lists:
            names.append(name_of(value, row))
            continue
        if isinstance(value, (list, tuple, np.ndarray)):
            items = list(value)
        elif separator is not None and isinstance(value, str):
            items = [] if not value.strip() else [part.strip() for part in value.split(separator)]
        else:
            items = [value]  # one label, in a column of lists
        row_names = [name_of(item, row, "in the list ") for item in items]
        names.append(tuple(dict.fromkeys(row_names)))
    return names, spellings


def is_multi_label(names) -> bool:
    """Whether a label column read by `column_labels` is multi-label (its rows are tuples)."""
    return any(isinstance(n, tuple) for n in names)


def label_set(names) -> set[str]:
    """Every label name of a column, single- or multi-label."""
    if is_multi_label(names):
        return {name for row in names for name in row}
    return set(names)


def raise_two_spellings(name: str, a: tuple, b: tuple):
    where_a = f"row {a[1]}" if a[2] == b[2] else f"{a[2]} row {a[1]}"
    raise HeadclsError(
        f"{b[2]}: label {b[0]!r} (row {b[1]}) and {a[0]!r} ({where_a}) both read as {name!r}; "
        "write each label one way (headcls does not merge labels silently)"
    )


def label_order(names) -> list[str]:
    """Integer-like labels in numeric order, others alphabetically (as run_classification.py does); the rows of a
    multi-label column count with each of their names."""
    names = label_set(names)
    try:
        return sorted(names, key=int)
    except ValueError:
        return sorted(names)
