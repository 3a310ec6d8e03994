"""Ray itself: importing it, joining or starting a cluster for a run, its settings, workers and errors."""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator

from headcls.errors import HeadclsError, first_line

logger = logging.getLogger(__name__)


def import_ray():
    try:
        import ray
        import ray.data
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
            with _unless_set("RAY_USAGE_STATS_ENABLED", "0"):  # no usage report sent from a cluster we start
                ray.init(address="local", include_dashboard=False, **options)
    except (ConnectionError, ValueError, RuntimeError, TimeoutError) as e:

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


@contextlib.contextmanager
def _unless_set(name: str, value: str) -> Iterator[None]:
    """The environment variable `name` at `value` while the block runs (the processes it starts inherit it),
    unless the user set it; the environment is as it was after."""
    given = name in os.environ
    if not given:
        os.environ[name] = value
    try:
        yield
    finally:
        if not given:
            os.environ.pop(name, None)


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
