"""Every option of every command, defined once: type, range, finiteness, default and help.

Each command has one pydantic model (`TrainConfig`, `EvaluateConfig`, `PredictConfig`, `ExportConfig`). The same
model builds the command's flags (`headcls.cli`), checks a YAML config file (`--config`, keys = flag names with
underscores), and checks every value before any work starts. Precedence: defaults < YAML file < flags.

Rules that hold for every option, so no command can forget them:
- numbers are finite; counts are whole numbers from 1 (or 0) up to 2**31 - 1;
- strings are non-empty and hold no NUL character; a one-item list may be written as a plain string in YAML;
- an output never equals an input, nor holds one inside it (it would be replaced).
"""

from __future__ import annotations

import codecs
import difflib
import os
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from headcls.errors import HeadclsError

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
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # numpy's seed range
Threads = Annotated[int, Field(ge=1, le=1024)]
Encoding = Annotated[str, AfterValidator(_text_encoding)]
Precision = Literal["auto", "bf16", "fp32"]
Backend = Literal["auto", "torch", "onnx"]
Engine = Literal["local", "ray"]
LongTextMode = Literal["truncate", "head-tail", "chunks"]
Pooling = Literal["mean", "max"]
ShardFormat = Literal["parquet", "jsonl"]

FAST_PATHS_HELP = "exact speed-ups that patch library internals (headcls.fast); --no-fast-paths runs stock code"


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
            if "_" in item and info.field_name in NUMBERS.get(cls, ()):  # Python reads 1_0 as 10: a typo here
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


class TrainConfig(DataConfig, Runs, Writes, LongTexts):
    """Everything `headcls train` needs. Defaults follow the AG News tutorial (3 epochs, batch 32, ...)."""

    train_file: PathOption | None = Field(None, description="CSV, TSV, JSONL or Parquet (with --streaming: or a URL)")
    train_samples: Count | None = Field(None, description="use the first N training rows")
    stratify: bool = Field(False, description="with --train-samples: a seeded stratified sample instead")
    validation_fraction: float = Field(0.1, gt=0, lt=1, description="held out of train when no validation file")
    seed: Seed = Field(42, description="seeds the head, the batches, dropout and the hold-out")
    model: PathOption | None = Field(None, description="hub id or local folder (default: bundled all-MiniLM-L6-v2)")
    output: PathOption = Field("outputs/model", description="the model folder to write")
    epochs: float = Field(3.0, gt=0, le=10_000, description="passes over the training rows (fractions allowed)")
    batch_size: Count = Field(32, description="training rows per step and process (device)")
    gradient_accumulation_steps: Count = Field(
        1, description="steps whose gradients add up before one optimizer step (effective batch = batch size x "
        "processes x this)"
    )
    eval_batch_size: Count = Field(128, description="rows per validation batch")
    # The tutorial's BERT used 5e-5; the small MiniLM encoder, tuned for embeddings, needs a larger step.
    learning_rate: float = Field(1e-4, gt=0, description="peak learning rate of AdamW")
    head_learning_rate: float | None = Field(
        None, gt=0, description="peak learning rate of the new classification head (default: --learning-rate)"
    )
    layer_lr_decay: float = Field(
        1.0, gt=0, le=1, description="each encoder layer learns at this times the rate of the layer above (the top "
        "one at --learning-rate, the embeddings below the first); 1: one rate for all"
    )
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    warmup_steps: int = Field(500, ge=0, le=INT_MAX, description="linear warmup steps (capped, see next)")
    # A short run would spend all its steps warming up: cap the warmup to this fraction of the run.
    max_warmup_fraction: float = Field(0.1, ge=0, le=1, description="cap of the warmup as a fraction of all steps")
    max_length: Count = Field(128, description="tokens per text, [CLS] and [SEP] included; the rest is cut")
    # None keeps the encoder's own dropout. 0 skips the masks and cost 0.7 points of test accuracy on the
    # tutorial protocol (BENCHMARKS.md).
    dropout: float | None = Field(None, ge=0, lt=1, description="every dropout rate of the encoder (default: its own)")
    precision: Precision = Field("auto", description="bf16 autocast where supported (auto), or forced")
    logging_steps: Count = Field(10, description="steps between loss lines in TensorBoard")
    early_stopping_patience: Count | None = Field(None, description="epochs without a better validation macro-F1")
    keep_best: bool = Field(False, description="keep the epoch with the best validation macro-F1")
    baseline: bool = Field(True, description="also score TF-IDF + logistic regression on the same rows")
    resume: bool = Field(False, description="continue from the last checkpoint of an interrupted run")
    max_steps: Count | None = Field(None, description="optimizer steps in all (instead of --epochs)")
    streaming: bool = Field(False, description="read the training file as a stream, never whole (a path or a URL)")
    labels: list[str] | None = Field(
        None, description="with --streaming: the label names, instead of a counting pass over the file"
    )
    class_weights: Annotated[str, AfterValidator(_class_weights)] = Field(
        "none", description="none, balanced (rows per class, inverted; multi-label: pos_weight), or a JSON/YAML "
        "file mapping each label to its weight"
    )
    label_smoothing: float = Field(
        0.0, ge=0, lt=1, description="spread this share of each target over all labels (multi-label: toward 0.5)"
    )
    tune_thresholds: bool = Field(False, description="multi-label: pick each label's threshold for the best "
                                  "validation F1 (else 0.5); saved with the model")

    @model_validator(mode="after")
    def _long_text_options(self) -> TrainConfig:
        mode = self.long_text or "truncate"
        if problem := self.misplaced(mode):
            raise ValueError(problem)
        if self.stride is not None and self.stride >= self.max_length - 2:
            raise ValueError(f"--stride {self.stride} must be below the window (--max-length {self.max_length} "
                             "less its special tokens)")
        if self.streaming and mode != "truncate":
            raise ValueError(f"--long-text {mode} reads training texts whole; not with --streaming")
        if self.streaming and self.label_separator is not None:
            raise ValueError("--label-separator: multi-label data is read whole, not with --streaming")
        return self

    @model_validator(mode="after")
    def _streaming(self) -> TrainConfig:
        if not self.streaming:
            if self.train_file and "://" in self.train_file:
                raise ValueError(f"--train-file {self.train_file}: a URL is read with --streaming (add it)")
            if self.labels is not None:
                raise ValueError("--labels declares the label space of --streaming; without --streaming the labels "
                                 "come from the training data")
            return self
        if self.data == "ag_news":
            raise ValueError("--streaming reads a training file (--train-file or --data FOLDER), not --data ag_news")
        for name in ("train_samples", "stratify"):
            if getattr(self, name):
                raise ValueError(f"--{name.replace('_', '-')} takes rows of a table read whole; not with --streaming")
        if self.labels is not None:
            if self.max_steps is None:
                raise ValueError("--streaming with --labels needs --max-steps N: the rows are not counted, so "
                                 "--epochs cannot be turned into steps")
            from headcls.reading import normalise_label

            names = [normalise_label(label) for label in self.labels]
            if None in names or len(set(names)) != len(names) or len(names) < 2:
                raise ValueError(f"--labels needs two or more distinct, non-blank names, got {self.labels}")
        return self

    @model_validator(mode="after")
    def _outputs_spare_inputs(self) -> TrainConfig:
        out = Path(self.output)
        check_output(out, self.input_paths(), "--output")
        check_output(out.with_name(out.name + ".checkpoints"), self.input_paths(), "--output (its checkpoints)")
        return self


class EvaluateConfig(DataConfig, Infers, Writes):
    """`headcls evaluate`: score a trained model folder on labelled data."""

    output: PathOption | None = Field(
        None, description="folder for metrics.json, plots, predictions.csv (default: MODEL/eval-SPLIT)"
    )

    @model_validator(mode="after")
    def _outputs_spare_inputs(self) -> EvaluateConfig:
        if self.output:
            check_output(Path(self.output), self.input_paths(), "--output")
        return self


class PredictConfig(Infers, Writes):
    """`headcls predict`: classify sentences given as arguments, or a file into a file; with --engine ray, sharded
    files into a folder of shards on Ray Data."""

    texts: Annotated[list[Annotated[str, StringConstraints(min_length=0)]], Positional()] = Field(
        default_factory=list, description="sentences to classify (or --input FILE)"
    )
    input: PathOption | None = Field(
        None, description="txt (one text per line), or CSV/TSV/JSONL/Parquet with --text-column; with --engine ray "
        "also a folder or a glob of such files"
    )
    output: PathOption | None = Field(
        None, description="CSV or JSONL file to write (needed with --input); with --engine ray a folder of shards"
    )
    text_column: list[str] = Field(
        default_factory=lambda: ["text"], min_length=1, description="the column(s) of --input with the text, joined"
    )
    encoding: Encoding = Field("utf-8", description="text encoding of --input (a BOM overrides it)")
    top_k: Count = Field(1, description="also give the K best labels with their scores")
    engine: Engine = Field("local", description="local: in this process; ray: batch prediction on Ray Data "
                           "(pip install 'headcls[ray]')")
    workers: Count | None = Field(None, description="--engine ray: model copies, each a Ray actor with --threads "
                                  "threads (default: the cluster's CPUs shared out)")
    ray_address: str | None = Field(None, description="--engine ray: join this Ray cluster (auto, HOST:PORT, "
                                    "ray://HOST:PORT) instead of starting a local one for the run")
    # A flag, not the suffix of --output: the output of --engine ray is a folder, and a folder named x.jsonl
    # would look like a file.
    output_format: ShardFormat | None = Field(None, description="--engine ray: the format of the output shards "
                                              "(default: parquet)")
    threads: Threads | None = Field(None, description="CPU threads (default: the libraries' choice); with --engine "
                                    "ray per worker")

    input_paths = DataConfig.input_paths

    @model_validator(mode="after")
    def _what_to_classify(self) -> PredictConfig:
        if self.engine == "ray":
            return self._ray_run()
        ray_only = [n for n in ("workers", "ray_address", "output_format") if getattr(self, n) is not None]
        if ray_only:
            raise ValueError(f"--{ray_only[0].replace('_', '-')} is an option of --engine ray")
        if not self.texts and not self.input:
            raise ValueError("predict needs sentences as arguments or --input FILE")
        if self.texts and self.input:
            raise ValueError(f"predict takes sentences or --input FILE, not both (got {len(self.texts)} sentences "
                             "besides --input; a --text-column of several columns is written --text-column a b)")
        if self.input and not self.output:
            raise ValueError("--input needs --output FILE (.csv or .jsonl)")
        if self.output:
            if Path(self.output).suffix.lower() not in (".csv", ".jsonl"):
                raise ValueError(f"--output {self.output}: write .csv or .jsonl")
            check_output(Path(self.output), self.input_paths(), "--output")
        return self

    def _ray_run(self) -> PredictConfig:
        if self.texts:
            raise ValueError(f"--engine ray classifies --input files, not sentences (got {len(self.texts)}); "
                             "sentences go to the local engine")
        if not self.input:
            raise ValueError("--engine ray needs --input (a file, a folder or a glob)")
        if not self.output:
            raise ValueError("--engine ray needs --output FOLDER")
        if Path(self.output).suffix.lower() in (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt"):
            raise ValueError(f"--output {self.output}: --engine ray writes a folder of shards; give a folder "
                             "(--output-format picks parquet or jsonl)")
        check_output(Path(self.output), self.input_paths(), "--output")  # a glob's files are checked when listed
        return self


class ExportConfig(Columns, Runs, Writes):
    """`headcls export`: an ONNX Runtime model folder (fp32 or dynamic int8) that predicts without torch."""

    model: PathOption = Field(description="a folder written by headcls train")
    output: PathOption = Field(description="the folder to write model.onnx, config and tokenizer to")
    int8: bool = Field(False, description="dynamic int8 quantization (about a quarter of the size, faster on CPU)")
    check_file: PathOption | None = Field(None, description="labelled CSV/TSV/JSONL/Parquet to compare both models on")
    check_samples: Count = Field(500, description="rows of the check file to compare")

    input_paths = DataConfig.input_paths

    @model_validator(mode="after")
    def _outputs_spare_inputs(self) -> ExportConfig:
        check_output(Path(self.output), self.input_paths(), "--output")
        return self


class ServeConfig(Infers):
    """`headcls serve`: a REST API and a page over one model, with micro-batching, limits and back-pressure."""

    # A micro-batch holds texts of any length; forward passes of 8, sorted by length, pad least: 32 clients of one
    # AG News text each, ONNX int8, 2 cores: 112 texts/s against 102 / 93 / 35 with 4 / 16 / 32 (BENCHMARKS.md).
    batch_size: Count = Field(8, description="texts per forward pass within a micro-batch")
    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0: every interface)")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0: any free one, printed at start)")
    max_batch: Count = Field(64, description="texts classified together at most (micro-batching)")
    max_wait_ms: float = Field(2.0, ge=0, le=10_000, description="how long a batch waits for more texts to join")
    queue_size: Count = Field(1024, description="texts waiting at most; beyond it requests get 503 + Retry-After")
    max_texts: Count = Field(256, description="texts per request at most (413 beyond)")
    max_chars: Count = Field(20_000, description="characters per text at most (413 beyond)")
    max_body_bytes: Count = Field(1 << 20, description="request body size at most, enforced while reading (413)")
    api_key_file: PathOption | None = Field(
        None, description="file holding the key /v1/* requests must send as 'Authorization: Bearer KEY' "
        "(or set HEADCLS_API_KEY)"
    )
    cors_origin: list[str] | None = Field(None, description="origins allowed to call the API from a browser")

    @model_validator(mode="after")
    def _queue_holds_a_request(self) -> ServeConfig:
        if self.queue_size < self.max_texts:
            raise ValueError(f"--queue-size {self.queue_size} is below --max-texts {self.max_texts}: a full request "
                             "could never be queued")
        return self


COMMAND_CONFIGS = {"train": TrainConfig, "evaluate": EvaluateConfig, "predict": PredictConfig, "export": ExportConfig,
                   "serve": ServeConfig}


def base_type(annotation):
    """int for `int`, `int | None`, `Annotated[int, ...] | None`; the annotation itself otherwise."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return base_type(typing.get_args(annotation)[0])
    if origin is typing.Union or isinstance(annotation, types.UnionType):
        return base_type(next(a for a in typing.get_args(annotation) if a is not type(None)))
    return annotation


NUMBERS = {cls: {n for n, f in cls.model_fields.items() if base_type(f.annotation) in (int, float)}
           for cls in COMMAND_CONFIGS.values()}


def check_output(output: Path, inputs: dict[str, str], flag: str) -> None:
    """Refuse an output that is one of the inputs or holds one inside it (writing it would replace the input), or
    that is the current folder or holds it."""
    out = _real(output)
    cwd = _real(Path.cwd())
    if out == cwd or out in cwd.parents:
        raise ValueError(f"{flag} {output} is the current folder or holds it; choose another output")
    for name, value in inputs.items():
        path = _real(Path(value))
        same = path == out or (path.exists() and out.exists() and os.path.samefile(path, out))
        if same or out in path.parents:
            what = "is" if same else "holds"
            flag_in = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} {output} {what} the input {flag_in} {value}; choose another output")


def _real(path: Path) -> Path:
    try:
        return path.expanduser().resolve()
    except (OSError, RuntimeError):  # a symlink loop: compare as written
        return path.absolute()


# --- reading and reporting ------------------------------------------------------------------------------------

MESSAGES = {  # pydantic error type -> how we say it; {ctx keys} are filled from the error's context
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be greater than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "finite_number": "must be a finite number",
    "int_parsing": "must be a whole number, written in digits",
    "int_from_float": "must be a whole number",
    "int_type": "must be a whole number",
    "int_parsing_size": "must be a whole number of sensible size",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "string_too_short": "must not be empty",
    "list_type": "must be a list of strings",
    "too_short": "needs at least one item",
    "missing": "is required",
}


def _say(error: dict) -> str:
    kind = error["type"]
    if kind == "literal_error":
        return f"must be one of {error['ctx']['expected'].replace(' or ', ', ').replace(chr(39), '')}"
    if kind in MESSAGES:
        ctx = {k: f"{v:g}" if isinstance(v, float) else v for k, v in error.get("ctx", {}).items()}
        return MESSAGES[kind].format(**ctx)
    return error["msg"].removeprefix("Value error, ").removeprefix("Input should be ")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def problems(errors: list[dict], flags: set[str], config_file: str | None, cls=None) -> str:
    """One line naming every offending flag or config key, what was given and what would be valid."""
    cls_fields = {n: f.metadata for n, f in cls.model_fields.items()} if cls else {}
    lines = []
    for e in errors:
        field = str(e["loc"][0]) if e["loc"] else None
        what = _say(e)
        if field is None:  # a rule across options: its message names the flags
            lines.append(what)
        elif any(isinstance(m, Positional) for m in cls_fields.get(field, ())):
            where = f"sentence {e['loc'][1] + 1}" if len(e["loc"]) > 1 else "the sentences"
            lines.append(f"{where} {what}")
        elif e["type"] == "extra_forbidden":
            lines.append(f"{config_file}: unknown key {field!r}")
        elif field in flags:  # a flag's value is the string typed: show it as typed
            value = e["input"]
            shown = "" if e["type"] == "missing" else f", got {value if isinstance(value, str) else _shown(value)}"
            lines.append(f"--{field.replace('_', '-')} {what}{shown}")
        elif config_file:
            lines.append(f"{config_file}: key {field!r} {what}, got {_shown(e['input'])}")
        else:
            shown = "" if e["type"] == "missing" else f", got {_shown(e['input'])}"
            lines.append(f"--{field.replace('_', '-')} {what}{shown}")
    return "; ".join(lines)


class YamlLoader(yaml.SafeLoader):
    """YAML 1.1 reads 1e-3 (no dot) as a string; as an option's value it is always a number."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a mapping (checked against a command's schema by `build_config`). It is read
    as every text file is (a BOM decides the encoding)."""
    from headcls.reading import TextReader

    path = Path(os.path.expanduser(path))
    if path.is_dir():
        raise HeadclsError(f"{path}: is a folder, not a config file")
    if not path.is_file():
        raise HeadclsError(f"{path}: config file not found")
    try:
        with TextReader(path, "utf-8") as reader:
            raw = yaml.load(reader.read(), Loader=YamlLoader)  # a SafeLoader with one more resolver
    except yaml.YAMLError as e:
        raise HeadclsError(f"{path}: not a valid YAML file ({str(e).splitlines()[0]})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(k, str) for k in raw):
        raise HeadclsError(f"{path}: a config file must be a mapping of keys to values, got {type(raw).__name__}")
    return raw


def build_config(cls: type[Options], config_file: str | None = None, flags: dict[str, Any] | None = None):
    """Defaults, then the YAML file (typed values, checked strictly), then the flags (strings, parsed here).

    Raises HeadclsError with one line naming every offending flag or key.
    """
    flags = flags or {}
    values: dict[str, Any] = {}
    if config_file:
        values = load_yaml(config_file)
        unknown = sorted(set(values) - set(cls.model_fields))
        if unknown:
            close = difflib.get_close_matches(unknown[0], cls.model_fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise HeadclsError(
                f"{config_file}: unknown key {', '.join(map(repr, unknown))}{hint}; "
                f"valid keys are: {', '.join(sorted(cls.model_fields))}"
            )
        # Strict on YAML's own types: `epochs: true` or `batch_size: "32"` are mistakes, not numbers.
        try:
            cls.model_validate(values, strict=True)
        except ValidationError as e:
            field_errors = [x for x in e.errors() if x["loc"] and x["type"] != "missing"]
            if field_errors:
                raise HeadclsError(problems(field_errors, set(), config_file, cls)) from None
    try:
        return cls.model_validate({**values, **flags})
    except ValidationError as e:
        raise HeadclsError(problems(e.errors(), set(flags), config_file, cls)) from None


def to_dict(cfg: Options) -> dict[str, Any]:
    return cfg.model_dump()
