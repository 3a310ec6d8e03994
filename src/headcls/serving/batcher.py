"""Micro-batching: requests queue their texts; one worker thread classifies what is queued together."""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from headcls.inference.rows import trimmed

if TYPE_CHECKING:
    from headcls.serving.asgi import Metrics

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    """The bounded queue has no room for a request's texts."""


@dataclass
class Pending:
    """A request's texts waiting for the worker, and the future its answer goes to."""

    texts: list[str]
    top_k: int
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    gone: threading.Event = field(default_factory=threading.Event)  # the client went away: skip it


class Batcher:
    """Micro-batching: requests queue their texts; one worker thread classifies what is queued together."""

    def __init__(self, classifier, max_batch: int, max_wait: float, capacity: int, metrics: Metrics):
        self.classifier = classifier
        self.max_batch, self.max_wait, self.capacity = max_batch, max_wait, capacity
        self.metrics = metrics
        self.jobs: collections.deque[Pending] = collections.deque()
        self.pending = 0  # texts queued, not yet taken by the worker
        self.cond = threading.Condition()
        self.stopping = False
        self.worker = threading.Thread(target=self._work, name="headcls-batcher", daemon=True)

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        """Finish what is queued, then end the worker."""
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        self.worker.join()

    def submit(self, texts: list[str], top_k: int) -> Pending:
        """Queue a request's texts (in the event loop's thread); QueueFull when they do not fit."""
        loop = asyncio.get_running_loop()
        with self.cond:
            if self.stopping or self.pending + len(texts) > self.capacity:
                raise QueueFull
            job = Pending(texts, top_k, loop.create_future(), loop)
            self.jobs.append(job)
            self.pending += len(texts)
            self.metrics.queue_depth.set(self.pending)
            self.cond.notify()
        return job

    def withdraw(self, job: Pending) -> None:
        """A request whose client left: out of the queue at once (its room is free for the next request), or, if
        the worker took it already, skipped there."""
        job.gone.set()
        with self.cond:
            if job in self.jobs:
                self.jobs.remove(job)
                self.pending -= len(job.texts)
                self.metrics.queue_depth.set(self.pending)

    def _take(self) -> list[Pending] | None:
        """The next batch: every job queued now, and those arriving within max_wait, up to max_batch texts."""
        with self.cond:
            while not self.jobs and not self.stopping:
                self.cond.wait()
            if not self.jobs:
                return None
            batch, count = [], 0
            deadline = time.monotonic() + self.max_wait
            while True:
                while self.jobs and (not batch or count + len(self.jobs[0].texts) <= self.max_batch):
                    job = self.jobs.popleft()
                    batch.append(job)
                    count += len(job.texts)
                left = deadline - time.monotonic()
                if count >= self.max_batch or self.jobs or left <= 0 or self.stopping:
                    break
                self.cond.wait(left)
            self.pending -= count
            self.metrics.queue_depth.set(self.pending)
            return batch

    def _work(self) -> None:
        while (batch := self._take()) is not None:
            live = [job for job in batch if not job.gone.is_set()]
            texts = [text for job in live for text in job.texts]
            if not texts:
                continue
            try:
                results = self.classifier.predict(texts, top_k=max(job.top_k for job in live))
            except Exception as e:  # handed to each waiting request: the worker keeps serving
                logger.exception("classification failed")
                for job in live:
                    job.loop.call_soon_threadsafe(_settle, job.future, None, e)
                continue
            self.metrics.batch_size.observe(len(texts))
            self.metrics.texts.inc(len(texts))
            start = 0
            for job in live:
                mine = [trimmed(r, job.top_k) for r in results[start : start + len(job.texts)]]
                start += len(job.texts)
                job.loop.call_soon_threadsafe(_settle, job.future, mine, None)


def _settle(future: asyncio.Future, value, error) -> None:
    if future.done():  # cancelled: the request ended already
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
