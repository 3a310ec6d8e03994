"""ASGI layers around the app: the body size limit while reading, and the Prometheus metrics of every request."""

from __future__ import annotations

import time


class Metrics:
    """The server's Prometheus metrics, in a registry of its own (no process-wide registry is touched)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("headcls_requests", "HTTP requests by path and status", ["path", "status"],
                                registry=self.registry)
        self.texts = Counter("headcls_texts_classified", "texts classified", registry=self.registry)
        self.batch_size = Histogram("headcls_batch_size", "texts per model call",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=self.registry)
        self.queue_depth = Gauge("headcls_queue_depth", "texts waiting for the model", registry=self.registry)
        self.latency = Histogram("headcls_request_seconds", "request latency", ["path"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


class BodyLimit:
    """Refuse a body over `limit` bytes with 413 while reading it: from its Content-Length at once, or as soon as a
    chunked body passes the limit. At most `limit` bytes are ever held; the app then reads the body from here."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        too_large = {"detail": f"request body over {self.limit} bytes"}
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await _json(send, 413, too_large)
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away while sending: nothing to answer
            body += message.get("body", b"")
            if len(body) > self.limit:
                return await _json(send, 413, too_large)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # after the body: a disconnect, for the app to notice

        await self.app(scope, replay, send)


class RequestMetrics:
    """Count every response by path and status (401s and 413s from the outer layers included) and time it."""

    def __init__(self, app, metrics: Metrics, paths: set[str]):
        self.app, self.metrics, self.paths = app, metrics, paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"] if scope["path"] in self.paths else "other"
        started = time.perf_counter()
        status = 500

        async def recording_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)


async def _json(send, status: int, body: dict, headers: list | None = None) -> None:
    import json

    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": data})
