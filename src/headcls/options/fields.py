"""Field types and the option groups that several commands share; every rule that holds for all options.

Rules that hold for every option, so no command can forget them:
- numbers are finite; counts are whole numbers from 1 (or 0) up to 2**31 - 1;
- strings are non-empty and hold no NUL character; a one-item list may be written as a plain string in YAML;
- an output never equals an input, nor holds one inside it (it would be replaced).
"""

from __future__ import annotations

import codecs
import os
import types
import typing
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

INT_MAX = 2**31 - 1  # counts go to torch, numpy and the Trainer: keep them in a 32-bit int


class Positional:
    """Marks the field that takes the command's positional arguments."""


def _text_encoding(name: str) -> str:
    try:
        info = codecs.lookup(name)
    except LookupError:
        raise ValueError("is not a known text encoding (e.g. utf-8, utf-16, latin-1, cp1252)") from None
    if not getattr(info, "_is_text_encoding", True):  # base64, rot13, zlib: codecs, but not for text files
        raise ValueError("is a codec for bytes, not a text encoding (e.g. utf-8, utf-16, latin-1)")
    return name


def _path(value: str) -> str:
    """Paths mean the same wherever they come from: `~` expanded (a YAML file or `--output=~/x` gets no shell
    expansion), `a/../b` and `out/` normalised. A URL (`s3://...`) is left as written."""
    if "://" in value:
        return value
    return os.path.normpath(os.path.expanduser(value))


Count = Annotated[int, Field(ge=1, le=INT_MAX)]


PathOption = Annotated[str, AfterValidator(_path)]


Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
TopK = Annotated[int, Field(ge=1, le=INT_MAX, description="also give the K best labels with their scores")]  # numpy's seed range


Threads = Annotated[int, Field(ge=1, le=1024)]


Encoding = Annotated[str, AfterValidator(_text_encoding)]


Precision = Literal["auto", "bf16", "fp32"]


Backend = Literal["auto", "torch", "onnx"]


Engine = Literal["local", "ray"]


LongTextMode = Literal["truncate", "head-tail", "chunks"]


Pooling = Literal["mean", "max"]


ShardFormat = Literal["parquet", "jsonl"]


FAST_PATHS_HELP = "exact speed-ups that patch library internals (headcls.fast); --no-fast-paths runs stock code"


def base_type(annotation):
    """int for `int`, `int | None`, `Annotated[int, ...] | None`; the annotation itself otherwise."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return base_type(typing.get_args(annotation)[0])
    if origin is typing.Union or isinstance(annotation, types.UnionType):
        return base_type(next(a for a in typing.get_args(annotation) if a is not type(None)))
    return annotation


class Options(BaseModel):
    """The rules every command's options share (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_min_length=1, validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _plain_strings(cls, value: Any, info) -> Any:
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(value, str) and getattr(annotation, "__origin__", None) is list:
            value = [value]  # YAML: `text_column: title` for a one-column list
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, str):
                continue
            if "\x00" in item:
                raise ValueError("must not contain a NUL character")
            if any("\udc80" <= c <= "\udcff" for c in item):  # bytes the terminal's encoding could not decode
                raise ValueError("is not valid text (a byte that is not UTF-8)")
            if "_" in item and base_type(annotation) in (int, float):  # Python reads 1_0 as 10: a typo here
                raise ValueError("must be a plain number (no underscores)")
        return value


class Runs(Options):
    """Options of every command that runs a model (each option is defined once, here or in its command)."""

    threads: Threads | None = Field(None, description="CPU threads (default: the libraries' choice)")
    fast_paths: bool = Field(True, description=FAST_PATHS_HELP)


class Writes(Options):
    """The option of every command that writes an output."""

    overwrite: bool = Field(False, description="replace an existing output (only one headcls wrote)")


class LongTexts(Options):
    """How a text longer than --max-length is read: defined once for train (unset: truncate, a quarter head, a
    quarter of the window shared, mean) and for the commands that load a model (unset: the model's own)."""

    long_text: LongTextMode | None = Field(
        None, description="a text past --max-length: truncate (cut), head-tail (its first and last tokens), or "
        "chunks (overlapping windows, pooled per text) (default: truncate; a model's own)"
    )
    head_fraction: float | None = Field(None, gt=0, lt=1, description="head-tail: the share of the tokens taken "
                                        "from the head (default 0.25, as Sun et al. 2019: head 128 + tail 382)")
    stride: int | None = Field(None, ge=0, le=INT_MAX, description="chunks: tokens neighbouring windows share "
                               "(default: a quarter of the window)")
    pooling: Pooling | None = Field(None, description="chunks: how the windows' logits make the text's (default: "
                                    "mean)")


    def misplaced(self, mode: str) -> str | None:
        """The first option set here that belongs to another --long-text mode than `mode`, said as an error."""
        owners = {"head_fraction": "head-tail", "stride": "chunks", "pooling": "chunks"}
        for name, wanted in owners.items():
            if getattr(self, name) is not None and mode != wanted:
                return f"--{name.replace('_', '-')} is an option of --long-text {wanted}"
        return None


class Infers(Runs, LongTexts):
    """Options of the commands that load a trained model and classify with it (evaluate, predict)."""

    model: PathOption = Field(description="a folder written by headcls train or headcls export")
    backend: Backend = Field("auto", description="auto: ONNX Runtime for an exported folder, else torch")
    precision: Precision = Field("auto", description="torch backend: bf16 where supported (auto), or forced")
    batch_size: Count = Field(64, description="texts per forward pass")


class Columns(Options):
    """How a labelled file is read: its text and label columns and its encoding (train, evaluate, export)."""

    text_column: list[str] = Field(
        default_factory=lambda: ["text"], min_length=1, description="one or more columns, joined with a space"
    )
    label_column: str = Field("label", description="the column holding the labels (a list per row: multi-label)")
    label_separator: str | None = Field(
        None, description="multi-label CSV/TSV: the character(s) between a row's labels (e.g. '|')"
    )
    encoding: Encoding = Field("utf-8", description="text encoding of CSV/TSV/JSONL files (a BOM overrides it)")

    @model_validator(mode="after")
    def _label_is_not_text(self):
        if self.label_column in self.text_column:
            raise ValueError(f"--text-column includes the label column {self.label_column!r}: the label would be "
                             "part of the text the model reads")
        return self


class DataConfig(Columns):
    """Where labelled text comes from and how it is read (train and evaluate)."""

    data: PathOption | None = Field(None, description="'ag_news', or a folder holding train.* / validation.* / test.*")
    data_dir: PathOption | None = Field(None, description="local folder holding ag_news/train.csv and ag_news/test.csv")
    validation_file: PathOption | None = Field(None, description="CSV, TSV, JSONL or Parquet")
    test_file: PathOption | None = Field(None, description="CSV, TSV, JSONL or Parquet")
    test_samples: Count | None = Field(None, description="use the first N test rows")

    def input_paths(self) -> dict[str, str]:
        """Flag name -> path, for the inputs an output must not overwrite."""
        names = ("data", "train_file", "validation_file", "test_file", "model", "input", "check_file", "class_weights")
        return {n: v for n in names
                if isinstance(v := getattr(self, n, None), str) and v not in ("ag_news", "none", "balanced")}


def _class_weights(value: str) -> str:
    return value if value in ("none", "balanced") else _path(value)
