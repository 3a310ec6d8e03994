"""The FastAPI app over one `Classifier`.

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
import contextlib
import importlib.resources
import logging
import os
import secrets

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, StrictStr, model_validator

from headcls import __version__
from headcls.options.commands import ServeConfig
from headcls.options.fields import TopK
from headcls.serving.asgi import BodyLimit, Metrics, RequestMetrics
from headcls.serving.batcher import Batcher, QueueFull

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1
PATHS = {"/v1/classify", "/v1/labels", "/healthz", "/readyz", "/metrics", "/"}


class ClassifyRequest(BaseModel):
    """Texts to classify: `texts` (a list) or `text` (one)."""

    model_config = ConfigDict(extra="forbid")
    texts: list[StrictStr] | None = None
    text: StrictStr | None = None
    top_k: TopK = 1  # the option of `headcls predict --top-k`

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


class Service:
    """What the endpoints share: the classifier behind its micro-batcher, the limits, the key, the metrics."""

    def __init__(self, classifier, cfg: ServeConfig, api_key: str | None):
        self.classifier, self.cfg, self.api_key = classifier, cfg, api_key
        self.metrics = Metrics()
        self.batcher = Batcher(classifier, cfg.max_batch, cfg.max_wait_ms / 1000, cfg.queue_size, self.metrics)
        self.ready = False
        self.model_name = os.path.basename(os.path.normpath(classifier.name)) or classifier.name

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        self.batcher.start()
        job = self.batcher.submit(["warm-up"], 1)  # ready only once the model has really classified a text
        await job.future
        self.ready = True
        logger.info("Ready: %s (%s backend), labels %s", self.classifier.name, self.classifier.backend,
                    ", ".join(self.classifier.labels))
        yield
        self.ready = False
        await asyncio.to_thread(self.batcher.stop)  # requests still queued are answered first

    async def authorized(self, request: Request) -> None:  # async: a plain def would hop to a thread per request
        if self.api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.encode(), self.api_key.encode()):
            raise HTTPException(401, "missing or wrong API key: send 'Authorization: Bearer KEY'",
                                headers={"WWW-Authenticate": "Bearer"})

    def check(self, texts: list[str]) -> None:
        """The limits of a request's texts (413), and the rule of every command: no empty text (422)."""
        cfg = self.cfg
        if len(texts) > cfg.max_texts:
            raise HTTPException(413, f"{len(texts)} texts: at most {cfg.max_texts} per request")
        long = next((i for i, t in enumerate(texts) if len(t) > cfg.max_chars), None)
        if long is not None:
            raise HTTPException(413, f"text {long + 1} has {len(texts[long])} characters: at most {cfg.max_chars}")
        blank = next((i for i, t in enumerate(texts) if not t.strip()), None)
        if blank is not None:  # an empty text is refused, never classified
            raise HTTPException(422, f"text {blank + 1} is empty or only whitespace")

    async def classify(self, body: ClassifyRequest, request: Request) -> dict:
        texts = body.texts if body.texts is not None else [body.text]
        self.check(texts)
        if not texts:
            return {"predictions": [], "model": self.model_name}
        try:
            job = self.batcher.submit(texts, body.top_k)
        except QueueFull:
            raise HTTPException(503, "busy: the queue is full, retry shortly",
                                headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        watcher = asyncio.ensure_future(_until_disconnected(request))
        try:
            done, _ = await asyncio.wait({job.future, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
        if job.future not in done:  # the client went away: its texts are not classified unless already taken
            self.batcher.withdraw(job)
            job.future.cancel()
            raise HTTPException(499, "client closed the request")
        return {"predictions": job.future.result(), "model": self.model_name}

    def labels(self) -> dict:
        clf = self.classifier
        answer = {"model": self.model_name, "labels": clf.labels, "backend": clf.backend,
                  "multi_label": clf.multi_label}
        if clf.multi_label:
            answer["thresholds"] = dict(zip(clf.labels, clf.thresholds))
        return answer


def create_app(classifier, cfg: ServeConfig, api_key: str | None = None) -> FastAPI:
    """The FastAPI app over `classifier` (loaded once by the caller); `cfg` gives the limits."""
    service = Service(classifier, cfg, api_key)
    app = FastAPI(title="headcls", version=__version__, lifespan=service.lifespan,
                  description="Text classification with a fine-tuned encoder. "
                              "Errors are JSON: 401 key, 413 limits, 422 invalid request, 503 busy (see Retry-After).")
    app.add_exception_handler(RequestValidationError, invalid_request)
    _api_routes(app, service)
    _probe_routes(app, service)
    if cfg.cors_origin:
        app.add_middleware(CORSMiddleware, allow_origins=cfg.cors_origin, allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"])
    app.add_middleware(BodyLimit, limit=cfg.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=service.metrics, paths=PATHS)
    app.state.batcher, app.state.metrics = service.batcher, service.metrics
    return app


def _api_routes(app: FastAPI, service: Service) -> None:
    """/v1/classify and /v1/labels, behind the API key."""
    key = [Depends(service.authorized)]

    @app.post("/v1/classify", response_model=ClassifyResponse, response_model_exclude_none=True, dependencies=key,
              responses={401: {"description": "missing or wrong API key"}, 413: {"description": "over a limit"},
                         503: {"description": "the queue is full; retry after Retry-After seconds"}})
    async def classify(body: ClassifyRequest, request: Request):
        return await service.classify(body, request)

    @app.get("/v1/labels", dependencies=key)
    async def labels():
        return service.labels()


def _probe_routes(app: FastAPI, service: Service) -> None:
    """The open paths: health, readiness, Prometheus metrics and the page."""

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        if not service.ready:
            return JSONResponse({"status": "loading"}, status_code=503)
        return {"status": "ready", "model": service.model_name}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus_metrics():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return PlainTextResponse(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    page = importlib.resources.files("headcls.serving").joinpath("static", "index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page)


async def invalid_request(request: Request, error: RequestValidationError):
    """A request the models refuse: 422 with pydantic's errors, as JSON."""
    kind = request.headers.get("content-type", "")
    errors = jsonable_encoder(error.errors())
    if "json" not in kind and request.method == "POST":  # curl -d sends a form type: the body was never JSON
        return JSONResponse({"detail": "send the body as JSON, with 'Content-Type: application/json'",
                             "errors": errors}, status_code=422)
    return JSONResponse({"detail": errors}, status_code=422)


async def _until_disconnected(request) -> None:
    """Returns when the client goes away. The body has been read: the server's receive() wakes only for the
    disconnect, so this waits without polling (polling every waiting request took a core under load)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
