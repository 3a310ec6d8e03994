"""`headcls serve`: a REST API over one `Classifier`, with micro-batching, limits, back-pressure and a page.

    POST /v1/classify  {"texts": [...], "top_k": 1} or {"text": "..."}  ->  {"predictions": [...], "model": name}
    GET  /v1/labels    the model's name and labels
    GET  /healthz      alive;  GET /readyz  ready once the model is loaded and has classified a warm-up text
    GET  /metrics      Prometheus text format
    GET  /             a page to try the model

One worker thread owns the model and classifies, in one call, the texts of every request that arrived while it
was busy (up to --max-batch, waiting --max-wait-ms for more when idle); the event loop only parses, queues and
answers, so it never blocks on the model. The queue is bounded in texts: when full, a request gets 503 with
Retry-After at once. A request whose client went away before its turn is dropped, not classified.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations as objects.
import asyncio
import collections
import contextlib
import importlib.resources
import logging
import os
import secrets
import signal
import threading
import time
from dataclasses import dataclass, field

from headcls.config import Count, PredictConfig, ServeConfig
from headcls.errors import HeadclsError

logger = logging.getLogger(__name__)

API_KEY_ENV = "HEADCLS_API_KEY"
RETRY_AFTER_SECONDS = 1


class QueueFull(Exception):
    """The bounded queue has no room for a request's texts."""


@dataclass
class Job:
    texts: list[str]
    top_k: int
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    gone: threading.Event = field(default_factory=threading.Event)  # the client went away: skip it


class Batcher:
    """Micro-batching: requests queue their texts; one worker thread classifies what is queued together."""

    def __init__(self, classifier, max_batch: int, max_wait: float, capacity: int, metrics: "Metrics"):
        self.classifier = classifier
        self.max_batch, self.max_wait, self.capacity = max_batch, max_wait, capacity
        self.metrics = metrics
        self.jobs: collections.deque[Job] = collections.deque()
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

    def submit(self, texts: list[str], top_k: int) -> Job:
        """Queue a request's texts (in the event loop's thread); QueueFull when they do not fit."""
        loop = asyncio.get_running_loop()
        with self.cond:
            if self.stopping or self.pending + len(texts) > self.capacity:
                raise QueueFull
            job = Job(texts, top_k, loop.create_future(), loop)
            self.jobs.append(job)
            self.pending += len(texts)
            self.metrics.queue_depth.set(self.pending)
            self.cond.notify()
        return job

    def withdraw(self, job: Job) -> None:
        """A request whose client left: out of the queue at once (its room is free for the next request), or, if
        the worker took it already, skipped there."""
        job.gone.set()
        with self.cond:
            if job in self.jobs:
                self.jobs.remove(job)
                self.pending -= len(job.texts)
                self.metrics.queue_depth.set(self.pending)

    def _take(self) -> "list[Job] | None":
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
                mine = [_trim(r, job.top_k) for r in results[start : start + len(job.texts)]]
                start += len(job.texts)
                job.loop.call_soon_threadsafe(_settle, job.future, mine, None)


def _trim(result: dict, top_k: int) -> dict:
    if top_k <= 1:  # a multi-label model's result is its labels above their thresholds, with their scores
        keys = ("labels", "scores") if "labels" in result else ("label", "score")
        return {key: result[key] for key in keys}
    return {**result, "top_k": result["top_k"][:top_k]}


def _settle(future: asyncio.Future, value, error) -> None:
    if future.done():  # cancelled: the request ended already
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


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


# --- ASGI layers: what happens before and after FastAPI sees a request ----------------------------------------------

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


# --- the application ----------------------------------------------------------------------------------------------

def read_api_key(cfg: ServeConfig) -> str | None:
    """The key from --api-key-file (its first line) or HEADCLS_API_KEY; None: the API is open."""
    if cfg.api_key_file:
        try:
            with open(cfg.api_key_file, encoding="utf-8") as f:
                key = f.readline().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise HeadclsError(f"--api-key-file {cfg.api_key_file}: cannot be read ({e})") from None
        if not key:
            raise HeadclsError(f"--api-key-file {cfg.api_key_file}: the first line holds no key")
        return key
    return os.environ.get(API_KEY_ENV) or None


def create_app(classifier, cfg: ServeConfig, api_key: str | None = None):
    """The FastAPI app over `classifier` (loaded once by the caller); `cfg` gives the limits."""
    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError
    from fastapi.middleware.cors import CORSMiddleware
    from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
    from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator

    metrics = Metrics()
    batcher = Batcher(classifier, cfg.max_batch, cfg.max_wait_ms / 1000, cfg.queue_size, metrics)
    state = {"ready": False}
    top_k_field = PredictConfig.model_fields["top_k"]  # the same option as `headcls predict --top-k`

    class ClassifyRequest(BaseModel):
        """Texts to classify: `texts` (a list) or `text` (one)."""

        model_config = ConfigDict(extra="forbid")
        texts: list[StrictStr] | None = None
        text: StrictStr | None = None
        top_k: Count = Field(1, description=top_k_field.description)  # the type of `headcls predict --top-k`

        @model_validator(mode="after")
        def _one_of(self):
            if (self.texts is None) == (self.text is None):
                raise ValueError("give either 'texts' (a list of strings) or 'text' (a string)")
            return self

    class Prediction(BaseModel):
        label: str | None = None  # single-label: the best label
        score: float | None = None
        labels: list[str] | None = None  # multi-label: every label at or above its threshold
        scores: list[float] | None = None
        top_k: list[dict] | None = None

    class ClassifyResponse(BaseModel):
        predictions: list[Prediction]
        model: str

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        job = batcher.submit(["warm-up"], 1)  # ready only once the model has really classified a text
        await job.future
        state["ready"] = True
        logger.info("Ready: %s (%s backend), labels %s", classifier.name, classifier.backend,
                    ", ".join(classifier.labels))
        yield
        state["ready"] = False
        await asyncio.to_thread(batcher.stop)  # requests still queued are answered first

    app = FastAPI(title="headcls", version=_version(), lifespan=lifespan,
                  description="Text classification with a fine-tuned encoder. "
                              "Errors are JSON: 401 key, 413 limits, 422 invalid request, 503 busy (see Retry-After).")

    async def authorized(request: Request) -> None:  # async: a plain def would hop to a thread per request
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.encode(), api_key.encode()):
            raise HTTPException(401, "missing or wrong API key: send 'Authorization: Bearer KEY'",
                                headers={"WWW-Authenticate": "Bearer"})

    model_name = os.path.basename(os.path.normpath(classifier.name)) or classifier.name

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError):
        kind = request.headers.get("content-type", "")
        errors = jsonable_encoder(error.errors())
        if "json" not in kind and request.method == "POST":  # curl -d sends a form type: the body was never JSON
            return JSONResponse({"detail": "send the body as JSON, with 'Content-Type: application/json'",
                                 "errors": errors}, status_code=422)
        return JSONResponse({"detail": errors}, status_code=422)

    @app.post("/v1/classify", response_model=ClassifyResponse, response_model_exclude_none=True,
              dependencies=[Depends(authorized)],
              responses={401: {"description": "missing or wrong API key"}, 413: {"description": "over a limit"},
                         503: {"description": "the queue is full; retry after Retry-After seconds"}})
    async def classify(body: ClassifyRequest, request: Request):
        texts = body.texts if body.texts is not None else [body.text]
        if len(texts) > cfg.max_texts:
            raise HTTPException(413, f"{len(texts)} texts: at most {cfg.max_texts} per request")
        long = next((i for i, t in enumerate(texts) if len(t) > cfg.max_chars), None)
        if long is not None:
            raise HTTPException(413, f"text {long + 1} has {len(texts[long])} characters: at most {cfg.max_chars}")
        blank = next((i for i, t in enumerate(texts) if not t.strip()), None)
        if blank is not None:  # the rule of every command: an empty text is refused, never classified
            raise HTTPException(422, f"text {blank + 1} is empty or only whitespace")
        if not texts:
            return {"predictions": [], "model": model_name}
        try:
            job = batcher.submit(texts, body.top_k)
        except QueueFull:
            raise HTTPException(503, "busy: the queue is full, retry shortly",
                                headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        watcher = asyncio.ensure_future(_until_disconnected(request))
        try:
            done, _ = await asyncio.wait({job.future, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
        if job.future not in done:  # the client went away: its texts are not classified unless already taken
            batcher.withdraw(job)
            job.future.cancel()
            raise HTTPException(499, "client closed the request")
        return {"predictions": job.future.result(), "model": model_name}

    @app.get("/v1/labels", dependencies=[Depends(authorized)])
    async def labels():
        answer = {"model": model_name, "labels": classifier.labels, "backend": classifier.backend,
                  "multi_label": classifier.multi_label}
        if classifier.multi_label:
            answer["thresholds"] = dict(zip(classifier.labels, classifier.thresholds))
        return answer

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        if not state["ready"]:
            return JSONResponse({"status": "loading"}, status_code=503)
        return {"status": "ready", "model": model_name}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus_metrics():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    page = importlib.resources.files("headcls").joinpath("static", "index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page)

    if cfg.cors_origin:
        app.add_middleware(CORSMiddleware, allow_origins=cfg.cors_origin, allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"])
    paths = {"/v1/classify", "/v1/labels", "/healthz", "/readyz", "/metrics", "/"}
    app.add_middleware(BodyLimit, limit=cfg.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics, paths=paths)
    app.state.batcher, app.state.metrics = batcher, metrics
    return app


async def _until_disconnected(request) -> None:
    """Returns when the client goes away. The body has been read: the server's receive() wakes only for the
    disconnect, so this waits without polling (polling every waiting request took a core under load)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _version() -> str:
    from headcls import __version__

    return __version__


def serve(cfg: ServeConfig) -> int:
    """Load the model once and serve it until SIGTERM or Ctrl-C; both finish the requests in flight first.

    Returns 0 after SIGTERM (a service manager's stop), 130 after Ctrl-C.
    """
    try:
        import uvicorn
    except ImportError:
        raise HeadclsError("serve needs FastAPI and uvicorn: pip install 'headcls[serve]'") from None
    from headcls.predict import Classifier, long_text_options

    api_key = read_api_key(cfg)
    sock = _bind(cfg)  # a taken port fails before the model loads
    try:
        classifier = Classifier.from_pretrained(
            cfg.model, backend=cfg.backend, precision=cfg.precision, batch_size=cfg.batch_size, threads=cfg.threads,
            fast_paths=cfg.fast_paths, **long_text_options(cfg),
        )
    except BaseException:
        sock.close()
        raise
    app = create_app(classifier, cfg, api_key)
    config = uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning", timeout_graceful_shutdown=30,
                            access_log=False)
    server = uvicorn.Server(config)
    stopped_by: list[int] = []

    # uvicorn handles SIGTERM and SIGINT itself (stop accepting, finish in-flight requests, shut down), then raises
    # the signal again for the program to end as it would have. A SIGTERM is a normal stop: exit 0.
    def remember(signum, frame):
        stopped_by.append(signum)

    previous = {s: signal.signal(s, remember) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if not server.started:
        raise HeadclsError(f"the server did not start on {cfg.host}:{cfg.port}")
    return 130 if signal.SIGINT in stopped_by else 0


def _bind(cfg: ServeConfig):
    """The listening socket, opened here so that a taken port is one line and port 0 can be printed."""
    import socket

    family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets that say TCP,
    # and without it every keep-alive response waits ~40 ms for the client's delayed ACK (measured).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((cfg.host, cfg.port))
    except OSError as e:
        sock.close()
        raise HeadclsError(f"--host {cfg.host} --port {cfg.port}: cannot listen there ({e.strerror})") from None
    except socket.gaierror as e:
        sock.close()
        raise HeadclsError(f"--host {cfg.host}: not an address of this machine ({e})") from None
    sock.listen(2048)  # connections wait in the backlog until the app is up, rather than being refused
    host, port = sock.getsockname()[:2]
    print(f"headcls: serving on http://{host}:{port}/ once the model is loaded (GET /readyz); Ctrl-C or SIGTERM "
          "stops", flush=True)
    return sock
