"""The five command schemas: every option of `headcls train`, `evaluate`, `predict`, `export` and `serve`.

Each command has one pydantic model. The same model builds the command's flags (`headcls.cli`), checks a YAML
config file (`--config`, keys = flag names with underscores), and checks every value before any work starts.
Precedence: defaults < YAML file < flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from headcls.files.outputs import check_output
from headcls.modeling.folder import checkpoint_dir
from headcls.options.fields import (
    INT_MAX,
    Columns,
    Count,
    DataConfig,
    Encoding,
    Engine,
    Infers,
    LongTexts,
    PathOption,
    Positional,
    Precision,
    Runs,
    Seed,
    ShardFormat,
    Threads,
    TopK,
    Writes,
    _class_weights,
)


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
            from headcls.files.columns import normalise_label

            names = [normalise_label(label) for label in self.labels]
            if None in names or len(set(names)) != len(names) or len(names) < 2:
                raise ValueError(f"--labels needs two or more distinct, non-blank names, got {self.labels}")
        return self

    @model_validator(mode="after")
    def _outputs_spare_inputs(self) -> TrainConfig:
        out = Path(self.output)
        check_output(out, self.input_paths(), "--output")
        check_output(checkpoint_dir(out), self.input_paths(), "--output (its checkpoints)")
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
    top_k: TopK = 1
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
