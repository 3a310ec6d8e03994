


"""Batch prediction over sharded files on Ray Data: `headcls predict --engine ray` and `predict_dataset`.

Ray is an optional extra (`pip install 'headcls[ray]'`), imported here only, and only when a run starts.
One run is one Ray Data pipeline:

1. read: Ray tasks read the input files (a file, a folder or a glob, of one format) with headcls's own reader,
   so the decoding, the CSV-as-text rule and the text rule (a missing, empty or blank text is refused with its
   file and row) are those of `headcls predict --input`. Ray's own readers guess types instead (a CSV text
   `01` comes back as the number 1, `NA` as a null) and know no row numbers.
2. predict: `map_batches` with `Predictor`, a callable class: each Ray actor loads the model once (any
   backend: an exported ONNX int8 folder predicts without torch) and adds `label`, `score` and, with
   top-k > 1, `label_1`, `score_1`, ... (the columns of predict's CSV) to every row, keeping every input column.
3. write: Parquet (default) or JSONL shards, into a staging folder beside --output that is swapped in at the
   end under the output's lock, like every headcls output, with `_headcls.json` (what ran, row count,
   timings) beside them. Rows come in no particular order: keep an id column to join on.

Without --ray-address a local cluster is started for the run and shut down after it; with one, the run joins
that cluster and leaves it running. Paths are made absolute on the driver: on a cluster of several machines,
the model, the inputs and the output must be on storage that every node sees.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from headcls.errors import HeadclsError
from headcls.files.outputs import check_output
from headcls.inference.ray_cluster import (
    actor_options,
    import_ray,
    plan_workers,
    quiet_ray_data,
    ray_session,
    user_error,
)
from headcls.inference.ray_shards import (
    MARKER,
    ROWS_PER_BATCH,
    check_replaceable_predictions,
    count_rows,
    first_chunk,
    input_files,
    name_shards,
    read_files,
)
from headcls.inference.rows import as_columns, prediction_names
from headcls.options.commands import PredictConfig

logger = logging.getLogger(__name__)


def predict_dataset(
    model: str | Path,
    input: str | Path,
    output: str | Path,
    *,
    text_column: str | list[str] = "text",
    top_k: int = 1,
    backend: str = "auto",
    precision: str = "auto",
    batch_size: int = 64,
    threads: int | None = None,
    fast_paths: bool = True,
    encoding: str = "utf-8",
    workers: int | None = None,
    ray_address: str | None = None,
    output_format: str = "parquet",
    overwrite: bool = False,
) -> dict:
    """Classify every row of sharded files on Ray Data into a folder of Parquet or JSONL shards.

    The arguments are those of `headcls predict --engine ray`, checked by the same schema. `workers` model
    copies run with `threads` CPU threads each (by default the cluster's CPUs are shared out: one per
    worker, or all of them among the workers given). A process already connected to Ray (`ray.init()`)
    runs on that connection and keeps it.

    Returns the summary also written to OUTPUT/_headcls.json (`rows`, `output_files`, `seconds`, ...).

    Example:
        >>> predict_dataset("outputs/ag-int8", "shards/*.parquet", "predictions", top_k=2)
        {'rows': 7600, 'output_files': 15, ...}
    """
    from headcls.options.loading import build_config

    given = {"model": str(model), "input": str(input), "output": str(output), "text_column": text_column,
             "top_k": top_k, "backend": backend, "precision": precision, "batch_size": batch_size,
             "threads": threads, "fast_paths": fast_paths, "encoding": encoding, "workers": workers,
             "ray_address": ray_address, "output_format": output_format, "overwrite": overwrite}
    cfg = build_config(PredictConfig, flags={"engine": "ray", **{k: v for k, v in given.items() if v is not None}})
    return run_on_ray(cfg)


@dataclass
class RayJob:
    """What a run reads, with what model, into where: all checked before Ray starts."""

    files: list[str]  # absolute, sorted, of one format
    columns: list[str]  # the text columns
    added: list[str]  # the prediction columns
    model: str  # absolute
    backend: str
    top_k: int
    out: Path  # where the output lands (a symbolic link's target)
    output_format: str


def run_on_ray(cfg: PredictConfig) -> dict:
    """Check everything that can be checked without Ray, then read, predict and write on Ray Data."""
    from headcls.files.outputs import output_lock, staged_folder

    started = time.perf_counter()
    job = check_job(cfg)
    ray = import_ray()
    with output_lock(job.out):
        check_replaceable_predictions(job.out, cfg.overwrite)
        with staged_folder(job.out) as staging:
            with ray_session(ray, cfg.ray_address) as where, quiet_ray_data(ray):
                connected = time.perf_counter()
                workers, threads = plan_workers(ray, cfg.workers, cfg.threads)
                logger.info("Ray Data: %d files -> %d workers x %d threads (%s, %s backend)", len(job.files),
                            workers, threads, where, job.backend)
                pipeline(ray, job, cfg, workers, threads, staging)
            finished = time.perf_counter()
            shards = name_shards(staging, job.output_format)
            rows = count_rows(shards, job.output_format)
            summary = {
                "engine": "ray", "model": cfg.model, "backend": job.backend, "input": cfg.input,
                "input_files": len(job.files), "text_column": job.columns, "top_k": job.top_k, "rows": rows,
                "output_format": job.output_format, "output_files": len(shards), "cluster": where,
                "workers": workers, "threads_per_worker": threads,
                "seconds": {"start": round(connected - started, 3), "predict": round(finished - connected, 3),
                            "total": round(finished - started, 3)},
                "rows_per_second": round(rows / max(finished - connected, 1e-9), 1),
            }
            (staging / MARKER).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def check_job(cfg: PredictConfig) -> RayJob:
    """The inputs listed, the output spared them, the model folder and the first rows checked: the mistakes a
    user makes fail here, in a moment, rather than after a cluster has started."""
    from headcls.files.outputs import target
    from headcls.inference.backends import pick_backend
    from headcls.modeling.folder import check_model_folder, check_model_path, check_tokenizer_files, config_labels

    files, fmt = input_files(cfg.input)
    out = target(cfg.output)
    for file in files:
        check_output(out, {"input": file}, "--output")
    check_model_path(cfg.model)
    model = Path(cfg.model).resolve()  # Ray workers run in folders of their own: every path goes absolute
    config = check_model_folder(model)
    labels = config_labels(config, model)
    check_tokenizer_files(model)
    backend = pick_backend(str(model), cfg.backend)
    top_k = min(cfg.top_k, len(labels))
    columns = ["text"] if fmt == "txt" else list(cfg.text_column)
    from headcls.modeling.folder import is_multi_label

    added = prediction_names(top_k, is_multi_label(config))
    first_chunk(files[0], columns, cfg.encoding, added)
    return RayJob(files, columns, added, str(model), backend, top_k, out, cfg.output_format or "parquet")


def pipeline(ray, job: RayJob, cfg: PredictConfig, workers: int, threads: int, staging: Path) -> None:
    """Read the files, predict, write the shards into `staging`; a user's error raised in Ray comes out as one."""
    from headcls.inference.classifier import long_text_options

    dataset = ray.data.from_items([{"path": f} for f in job.files], override_num_blocks=len(job.files))
    # The readers and writers take none of the cluster's CPUs: the workers hold them all, and a task waiting for
    # a CPU would wait forever. Reading and writing are a small part of the work.
    dataset = dataset.map_batches(
        read_files, batch_size=1, num_cpus=0, compute=ray.data.TaskPoolStrategy(size=min(len(job.files), workers)),
        fn_kwargs={"columns": job.columns, "encoding": cfg.encoding, "added": job.added},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # see actor_options
        dataset = dataset.map_batches(
            Predictor, batch_size=ROWS_PER_BATCH, batch_format="pandas",
            compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=threads, fn_constructor_kwargs={
                "model": job.model, "text_column": job.columns, "top_k": job.top_k, "backend": job.backend,
                "precision": cfg.precision, "batch_size": cfg.batch_size, "threads": threads,
                "fast_paths": cfg.fast_paths, "long_text": long_text_options(cfg),
            }, runtime_env=worker_environment(threads), **actor_options(dataset),
        )
    try:
        if job.output_format == "parquet":
            dataset.write_parquet(str(staging), ray_remote_args={"num_cpus": 0})
        else:  # pandas writes the JSON: at its most digits (its default, 10, would round the input's floats)
            dataset.write_json(str(staging), ray_remote_args={"num_cpus": 0}, force_ascii=False, double_precision=15)
    except Exception as e:
        error = user_error(e)
        if error is None:
            raise
        raise error from None


def worker_environment(threads: int) -> dict:
    """The process-wide settings of a worker, given by Ray when it starts the actor's process (the actor itself
    changes none): torch's threads (OMP_NUM_THREADS, read when torch starts; ONNX Runtime takes the count as a
    session option) and no tokenizer threads of its own beside them."""
    return {"env_vars": {"OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}}


class Predictor:
    """The callable class of `map_batches`: one model per Ray actor, loaded once, classifying pandas batches."""

    def __init__(self, model: str, text_column: list[str], top_k: int, backend: str = "auto",
                 precision: str = "auto", batch_size: int = 64, threads: int | None = None, fast_paths: bool = True,
                 long_text: dict | None = None):
        from headcls.inference.classifier import Classifier

        self.columns = text_column
        self.top_k = top_k
        self.error = None
        try:
            self.classifier = Classifier.from_pretrained(model, backend=backend, precision=precision,
                                                         batch_size=batch_size, threads=threads,
                                                         fast_paths=fast_paths, **(long_text or {}))
        except HeadclsError as e:  # e.g. a corrupt model.onnx: said on the first batch, see __call__
            self.error = e

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        from headcls.files.columns import column_texts

        if self.error:  # an error of a call reaches the driver as itself; one of an actor's start only as text,
            raise self.error  # after Ray retried the start
        texts = column_texts(batch, "a batch", self.columns)  # checked already, with file and row, when read
        results = self.classifier.predict(texts, top_k=self.top_k)
        rows = [as_columns(r, self.top_k) for r in results]  # multi-label: lists per row
        names = prediction_names(self.top_k, self.classifier.multi_label)
        return batch.assign(**{name: [row[name] for row in rows] for name in names})
