"""Process-wide state, owned by the program that owns the process: torch's thread count and signal handlers."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)


def torch_threads(cfg, command: str) -> None:
    """torch's thread count is process-wide, so the CLI, which owns the process, sets it once at start (the
    library never does; ONNX Runtime takes it as a session option instead)."""
    if not cfg.threads:
        return
    if command != "train":  # training always runs torch; the other commands only where the backend is torch
        from headcls.inference.backends import pick_backend

        if pick_backend(cfg.model, getattr(cfg, "backend", "torch")) != "torch":
            return
    import torch

    torch.set_num_threads(cfg.threads)


@contextmanager
def sigterm_as_interrupt():
    """SIGTERM unwinds like Ctrl-C: staging folders, partial files and locks are cleaned up on the way out."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


REPEAT_SECONDS = 2.0  # a launcher forwards the terminal's Ctrl-C: the same stop arrives twice


@contextmanager
def stop_on_signal() -> Iterator[threading.Event]:
    """Ctrl-C (SIGINT) or SIGTERM while the block runs sets the event it yields: training finishes the current
    step, saves a checkpoint and stops. A second signal (after the launcher's echo of the first) stops at once."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield stop
        return
    first = [0.0]

    def handle(signum, frame):
        if stop.is_set():
            if time.monotonic() - first[0] < REPEAT_SECONDS:
                return
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        logger.warning("Stopping after this step; a checkpoint will be saved (Ctrl-C again to stop at once)")
        first[0] = time.monotonic()
        stop.set()

    with _handling(handle):
        yield stop


@contextmanager
def remember_signals() -> Iterator[list[int]]:
    """The signals that arrive while the block runs, in a list it yields, instead of their usual effect.

    uvicorn handles SIGTERM and SIGINT itself (stop accepting, finish in-flight requests, shut down), then raises
    the signal again for the program to end as it would have: `headcls serve` remembers it and exits 0 after a
    SIGTERM (a service manager's stop), 130 after Ctrl-C."""
    stopped_by: list[int] = []

    def remember(signum, frame):
        stopped_by.append(signum)

    with _handling(remember):
        yield stopped_by


@contextmanager
def _handling(handler) -> Iterator[None]:
    """`handler` for SIGINT and SIGTERM while the block runs; the handlers before are restored after."""
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, before in previous.items():
            signal.signal(s, before)
