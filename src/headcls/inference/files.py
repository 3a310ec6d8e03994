"""Prediction of files: texts read chunk by chunk under the rule of every command, results written as CSV or
JSONL, staged and locked like every output."""

from __future__ import annotations

import itertools
import json
import typing
from pathlib import Path

from headcls.errors import HeadclsError
from headcls.inference.classifier import Classifier
from headcls.inference.rows import as_csv_cells, prediction_names


def read_texts(path: Path, text_column: str | list[str] = "text", encoding: str = "utf-8", chunk_rows: int = 4096):
    """Yield lists of texts from a .txt (one per line), CSV/TSV, JSONL or Parquet file, chunk by chunk, under the
    same rule as training data: a missing, empty or blank text is refused with its row (or line) number; several
    text columns are joined with a space."""
    from headcls.files.columns import column_texts
    from headcls.files.tables import PREDICT_SUFFIXES, iter_frames

    txt = path.suffix.lower() == ".txt"
    columns = ["text"] if txt else [text_column] if isinstance(text_column, str) else list(text_column)
    for first, frame in iter_frames(path, encoding, chunk_rows, PREDICT_SUFFIXES):
        if len(frame):
            yield column_texts(frame, path, columns, first, "line" if txt else "row")
        elif not txt:  # a header with no rows still names its columns
            column_texts(frame, path, columns)


def write_predictions(rows, path: Path, top_k: int, jsonl: bool, multi_label: bool = False) -> int:
    """Write (text, result) pairs to `path` as JSONL or else CSV; return the count. A multi-label result's
    labels and scores go in CSV cells as JSON lists."""
    import csv

    count = 0
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = None if jsonl else csv.writer(f)
        if writer:
            writer.writerow(["text", *prediction_names(top_k, multi_label)])
        for text, result in rows:
            if writer:
                writer.writerow([text, *as_csv_cells(result, top_k)])
            else:
                f.write(json.dumps({"text": text, **result}, ensure_ascii=False, allow_nan=False) + "\n")
            count += 1
    return count


def predict_file(
    clf: Classifier | typing.Callable[[], Classifier],
    input_path: str | Path,
    output_path: str | Path,
    top_k: int = 1,
    text_column: str | list[str] = "text",
    encoding: str = "utf-8",
    chunk_rows: int = 4096,
    overwrite: bool = False,
) -> int:
    """Stream `input_path` through the classifier into a CSV or JSONL `output_path`; return the row count.

    The run holds a lock on the output, writes a temporary file beside it and renames it at the end, so a
    failed or interrupted run leaves any earlier output untouched (and an existing one is only replaced with
    `overwrite`). `clf` may be a function that loads the classifier: it is called once the output is known to
    be writable, so that a mistake there costs no model load.
    """
    from headcls.files.outputs import check_output, output_lock, staged_file

    input_path, output_path = Path(input_path), Path(output_path)
    if output_path.suffix.lower() not in (".csv", ".jsonl"):
        raise HeadclsError(f"--output {output_path}: write .csv or .jsonl")
    check_output(output_path, {"input": str(input_path)}, "--output")
    with output_lock(output_path), staged_file(output_path, overwrite) as tmp:
        texts = read_texts(input_path, text_column, encoding, chunk_rows)
        first = next(texts, None)  # a file that cannot be read fails here, before the model loads
        if not isinstance(clf, Classifier):
            clf = clf()
        top_k = min(top_k, len(clf.labels))

        def rows():
            for chunk in itertools.chain([first], texts) if first is not None else []:  # streamed, chunk by chunk
                yield from zip(chunk, clf.predict(chunk, top_k=top_k))

        return write_predictions(rows(), tmp, top_k, jsonl=output_path.suffix.lower() == ".jsonl",
                                 multi_label=clf.multi_label)
