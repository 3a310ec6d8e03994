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

import contextlib
import glob
import inspect
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from headcls.config import PredictConfig
from headcls.errors import HeadclsError

logger = logging.getLogger(__name__)

MARKER = "_headcls.json"  # a leading "_": pandas, pyarrow, Spark and Ray skip it when they read the folder
# Rows per map_batches call, and per block read: big enough that length-sorted batches pad little, small
# enough that a few thousand rows still keep every worker busy to the end.
ROWS_PER_BATCH = 512


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
    from headcls.config import build_config

    given = {"model": str(model), "input": str(input), "output": str(output), "text_column": text_column,
             "top_k": top_k, "backend": backend, "precision": precision, "batch_size": batch_size,
             "threads": threads, "fast_paths": fast_paths, "encoding": encoding, "workers": workers,
             "ray_address": ray_address, "output_format": output_format, "overwrite": overwrite}
    cfg = build_config(PredictConfig, flags={"engine": "ray", **{k: v for k, v in given.items() if v is not None}})
    return run(cfg)


def predict_command(cfg: PredictConfig) -> None:
    """`headcls predict --engine ray`."""
    summary = run(cfg)
    files = summary["output_files"]
    print(f"Wrote {summary['rows']} predictions to {cfg.output} ({files} {summary['output_format']} "
          f"file{'s' if files != 1 else ''})", file=sys.stderr)


@dataclass
class Job:
    """What a run reads, with what model, into where: all checked before Ray starts."""

    files: list[str]  # absolute, sorted, of one format
    columns: list[str]  # the text columns
    added: list[str]  # the prediction columns
    model: str  # absolute
    backend: str
    top_k: int
    out: Path  # where the output lands (a symbolic link's target)
    output_format: str


def run(cfg: PredictConfig) -> dict:
    """Check everything that can be checked without Ray, then read, predict and write on Ray Data."""
    from headcls.atomic import output_lock, staged_folder

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


def check_job(cfg: PredictConfig) -> Job:
    """The inputs listed, the output spared them, the model folder and the first rows checked: the mistakes a
    user makes fail here, in a moment, rather than after a cluster has started."""
    from headcls.atomic import target
    from headcls.model import check_model_folder, check_model_path, check_tokenizer_files, config_labels
    from headcls.predict import pick_backend

    files, fmt = input_files(cfg.input)
    out = target(cfg.output)
    for file in files:
        check_spared(out, file)
    check_model_path(cfg.model)
    model = Path(cfg.model).resolve()  # Ray workers run in folders of their own: every path goes absolute
    config = check_model_folder(model)
    labels = config_labels(config, model)
    check_tokenizer_files(model)
    backend = pick_backend(str(model), cfg.backend)
    top_k = min(cfg.top_k, len(labels))
    columns = ["text"] if fmt == "txt" else list(cfg.text_column)
    from headcls.model import MULTI_LABEL

    added = prediction_names(top_k, config.get("problem_type") == MULTI_LABEL)
    first_chunk(files[0], columns, cfg.encoding, added)
    return Job(files, columns, added, str(model), backend, top_k, out, cfg.output_format or "parquet")


def pipeline(ray, job: Job, cfg: PredictConfig, workers: int, threads: int, staging: Path) -> None:
    """Read the files, predict, write the shards into `staging`; a user's error raised in Ray comes out as one."""
    from headcls.predict import long_text_options

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
            }, **actor_options(dataset),
        )
    try:
        if job.output_format == "parquet":
            dataset.write_parquet(str(staging), ray_remote_args={"num_cpus": 0})
        else:  # pandas writes the JSON: at its most digits (its default, 10, would round the input's floats)
            dataset.write_json(str(staging), ray_remote_args={"num_cpus": 0}, force_ascii=False, double_precision=15)
    except Exception as e:  # noqa: BLE001  Ray wraps what its tasks raised: find the user's error
        error = user_error(e)
        if error is None:
            raise
        raise error from None


# --- inputs and outputs ----------------------------------------------------------------------------------------

def input_files(pattern: str) -> tuple[list[str], str]:
    """The files of --input, absolute and sorted, and their one format. --input is a file, a folder (the files
    in it) or a glob (`shards/*.parquet`, `data/**/*.csv`); names starting with `.` or `_` (markers such as
    _SUCCESS or _headcls.json) are not data and are left out."""
    from headcls.reading import PREDICT_SUFFIXES, file_format

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


def check_spared(out: Path, file: str) -> None:
    from headcls.config import check_output

    try:
        check_output(out, {"input": file}, "--output")
    except ValueError as e:
        raise HeadclsError(str(e)) from None


def check_replaceable_predictions(out: Path, overwrite: bool) -> None:
    """As for every output (headcls.atomic.check_replaceable), and a folder this command wrote (it holds
    _headcls.json) is one headcls wrote."""
    from headcls.atomic import check_replaceable

    if overwrite and out.is_dir() and (out / MARKER).is_file():
        return
    check_replaceable(out, overwrite)


def prediction_names(top_k: int, multi_label: bool = False) -> list[str]:
    """The columns predictions add, named as in predict's CSV output (multi-label: `labels` and `scores`, lists)."""
    names = ["labels", "scores"] if multi_label else ["label", "score"]
    for k in range(1, top_k + 1 if top_k > 1 else 1):
        names += [f"label_{k}", f"score_{k}"]
    return names


def check_frame(frame: pd.DataFrame, path: str, columns: list[str], first_row: int, added: list[str]) -> None:
    """The text rule of every command (headcls.reading.column_texts), and no input column that a prediction
    column would overwrite."""
    from headcls.reading import column_texts

    column_texts(frame, path, columns, first_row, "line" if path.lower().endswith(".txt") else "row")
    taken = [c for c in frame.columns if c in added]
    if taken:
        raise HeadclsError(f"{path}: has a column {taken[0]!r}, which the predictions would overwrite (they add "
                           f"{', '.join(added)}); rename or drop it")


def first_chunk(path: str, columns: list[str], encoding: str, added: list[str]) -> None:
    """The first rows of the first file, checked as every chunk is: a wrong column or encoding shows at once."""
    from headcls.reading import PREDICT_SUFFIXES, iter_frames

    with contextlib.closing(iter_frames(path, encoding, ROWS_PER_BATCH, PREDICT_SUFFIXES)) as frames:
        first, frame = next(frames)
        check_frame(frame, path, columns, first, added)


def read_files(batch: dict, columns: list[str], encoding: str, added: list[str]) -> Iterator[pd.DataFrame]:
    """The read step (Ray tasks): every file named in the batch, chunk by chunk, each chunk checked."""
    from headcls.reading import PREDICT_SUFFIXES, iter_frames

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


# --- the model on a Ray actor ------------------------------------------------------------------------------------

class Predictor:
    """The callable class of `map_batches`: one model per Ray actor, loaded once, classifying pandas batches."""

    def __init__(self, model: str, text_column: list[str], top_k: int, backend: str = "auto",
                 precision: str = "auto", batch_size: int = 64, threads: int | None = None, fast_paths: bool = True,
                 long_text: dict | None = None):
        from headcls.predict import Classifier

        # The actor owns its process, as the CLI owns its own: the process-wide settings are set here, once.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        if threads and backend == "torch":
            import torch

            torch.set_num_threads(threads)
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
        from headcls.reading import column_texts

        if self.error:  # an error of a call reaches the driver as itself; one of an actor's start only as text,
            raise self.error  # after Ray retried the start
        texts = column_texts(batch, "a batch", self.columns)  # checked already, with file and row, when read
        results = self.classifier.predict(texts, top_k=self.top_k)
        keys = ("labels", "scores") if results and "labels" in results[0] else ("label", "score")
        added = {key: [r[key] for r in results] for key in keys}  # multi-label: lists per row
        for k in range(self.top_k if self.top_k > 1 else 0):
            added[f"label_{k + 1}"] = [r["top_k"][k]["label"] for r in results]
            added[f"score_{k + 1}"] = [r["top_k"][k]["score"] for r in results]
        return batch.assign(**added)


# --- Ray -------------------------------------------------------------------------------------------------------

def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise HeadclsError("--engine ray needs Ray Data: pip install 'headcls[ray]'") from None
    return ray


@contextlib.contextmanager
def ray_session(ray, address: str | None) -> Iterator[str]:
    """Connected to Ray while the block runs: to `address`, or to a local cluster started here and shut down
    after. A process connected already keeps its connection. Yields where the run goes, for the log."""
    if ray.is_initialized():
        if address:
            raise HeadclsError(f"--ray-address {address}: this process is connected to Ray already; leave it out "
                               "to run on that connection")
        yield "this process's Ray connection"
        return
    if address:
        check_reachable(address)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report sent from a cluster we start
    main_thread = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if main_thread else None
    options = {"log_to_driver": False, "configure_logging": False}
    # Ray warns, on every start, that the local cluster has token authentication (its default, which stays).
    auth_log = logging.getLogger("ray._private.authentication")
    auth_level = auth_log.level
    auth_log.setLevel(logging.ERROR)
    try:
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(address="local", include_dashboard=False, **options)
    except (ConnectionError, ValueError, RuntimeError, TimeoutError) as e:
        from headcls.model import first_line

        if address:  # Ray turns token authentication on by itself only for a cluster it finds, not for an address
            raise HeadclsError(f"--ray-address {address}: cannot join the Ray cluster ({first_line(e)}); a cluster "
                               "with token authentication needs RAY_AUTH_MODE=token (and its token) here") from None
        raise HeadclsError(f"cannot start a local Ray cluster ({first_line(e)})") from None
    finally:
        auth_log.setLevel(auth_level)
        if main_thread and sigterm is not None:  # ray.init sets a SIGTERM handler (exit 15): keep the CLI's
            signal.signal(signal.SIGTERM, sigterm)  # (clean up, exit 130)
    try:
        yield f"Ray cluster at {address}" if address else "a local Ray cluster"
    finally:
        ray.shutdown()  # a local cluster stops; a joined one only loses this driver


def check_reachable(address: str) -> None:
    """A HOST:PORT that nothing answers at fails at once: Ray would retry it for many minutes, deaf to Ctrl-C.
    Other forms (auto, ray://...) are left to Ray."""
    host, colon, port = address.rpartition(":")
    if address.startswith("ray://") or not colon or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, OverflowError, ValueError) as e:
        raise HeadclsError(f"--ray-address {address}: nothing answers there ({getattr(e, 'strerror', None) or e}); "
                           "is the cluster running (ray start --head)?") from None


@contextlib.contextmanager
def quiet_ray_data(ray) -> Iterator[None]:
    """Ray Data settings for the run, restored after: no progress bars or plan printed, the original error of a
    task raised, and nothing of Ray Data's own log on the console (its error records carry the remote traceback
    of what headcls prints as one line); Ray Data's log file in the session folder keeps all of it. The
    resources are checked before the run (`plan_workers`), so no warning that a pool cannot start goes unseen."""
    context = ray.data.DataContext.get_current()
    settings = {"enable_progress_bars": False, "print_on_execution_start": False,
                "raise_original_map_exception": True}
    before = {name: getattr(context, name) for name in settings}
    for name, value in settings.items():
        setattr(context, name, value)
    console = [h for h in logging.getLogger("ray.data").handlers
               if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    levels = [h.level for h in console]
    for handler in console:
        handler.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for name, value in before.items():
            setattr(context, name, value)
        for handler, level in zip(console, levels):
            handler.setLevel(level)


def no_restarts() -> dict:
    return {"max_restarts": 0}


def actor_options(dataset) -> dict:
    """An actor that dies fails the run (its output is staged: nothing is harmed) rather than being recreated:
    Ray Data's default (recreate) logs an error line on every run that its recreation may fail (Ray issue 53727).
    Ray 2.60 takes the option only through `ray_remote_args_fn`, deprecated for removal in 2.64; where it is
    gone, Ray's default stays."""
    if "ray_remote_args_fn" in inspect.signature(dataset.map_batches).parameters:
        return {"ray_remote_args_fn": no_restarts}
    return {}


def plan_workers(ray, workers: int | None, threads: int | None) -> tuple[int, int]:
    """(workers, threads per worker): the cluster's CPUs shared out, never more than it has. Each worker
    reserves its threads as Ray CPUs, so Ray places no more workers on a machine than it has cores."""
    total = int(ray.cluster_resources().get("CPU", 0))
    node = max((int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")), default=0)
    if total < 1:
        raise HeadclsError("the Ray cluster has no CPUs to run the model on")
    if workers is None and threads is None:
        workers, threads = total, 1
    elif workers is None:
        workers = max(1, total // threads)
    elif threads is None:
        threads = max(1, min(node, total // workers))
    if threads > node or workers * threads > total:
        raise HeadclsError(
            f"--workers {workers} x --threads {threads} needs {workers * threads} CPUs, {threads} on one machine; "
            f"the Ray cluster has {total} (at most {node} on one machine)"
        )
    return workers, threads


def user_error(e: BaseException) -> HeadclsError | None:
    """The HeadclsError a Ray task or actor raised, found through Ray's wrappers (their text carries the remote
    traceback); None for anything else (a bug). Ray appends lines of its own to the message (how often it
    retried): a headcls message is one line, the first."""
    stack, seen = [e], set()
    while stack:
        x = stack.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        cause = getattr(x, "cause", None)
        if not isinstance(cause, BaseException):
            cause = None
        if isinstance(x, HeadclsError) and cause is None:
            return HeadclsError(str(x).split("\n", 1)[0])
        stack += [cause, x.__cause__, x.__context__]
    return None
