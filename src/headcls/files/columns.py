"""The rules for texts and labels in a table, which train, evaluate, predict and serve share.

Every problem a user can fix is a `HeadclsError` naming the file, the row or column, and what would be valid.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from headcls.errors import HeadclsError
from headcls.files.tables import LABEL, TEXT, read_table

if TYPE_CHECKING:
    from headcls.options.fields import Columns


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
