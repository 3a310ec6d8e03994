"""`headcls serve` over real HTTP: the real server in a child process on 127.0.0.1 (a free port), the tiny model."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

SLOW_SERVE = Path(__file__).with_name("slow_serve.py")


class Server:
    def __init__(self, proc: subprocess.Popen, port: int):
        self.proc, self.port = proc, port

    def call(self, method: str, path: str, body=None, headers: dict | None = None, raw: bytes | None = None,
             timeout: float = 60):
        """(status, headers, JSON or text) of one request on a fresh connection."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        sent = {"Content-Type": "application/json", **(headers or {})} if data is not None else dict(headers or {})
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        text = response.read().decode()
        connection.close()
        try:
            payload = json.loads(text)
        except json.JSONDecodeError:
            payload = text
        return response.status, dict(response.getheaders()), payload

    def classify(self, body, **kwargs):
        return self.call("POST", "/v1/classify", body, **kwargs)


@contextmanager
def serving(model: Path, *flags: str, delay: float = 0.0, env: dict | None = None):
    """Start `headcls serve` on a free port and wait until /readyz says ready; stop it afterwards."""
    argv = [sys.executable, str(SLOW_SERVE), "--delay", str(delay), "--", "serve", "--model", str(model),
            "--port", "0", *flags]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    assert match, line + proc.stderr.read()
    server = Server(proc, int(match.group(1)))
    deadline = time.monotonic() + 60
    while server.call("GET", "/readyz")[0] != 200:
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    try:
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


@pytest.fixture(scope="module")
def server(trained_dir):
    with serving(trained_dir, "--max-texts", "8", "--max-chars", "100", "--max-body-bytes", "2000") as running:
        yield running


TEXTS = ["the team scored a goal in the match", "bank", "nasa space research chip software internet", "goal",
         "the stock market shares and trade profit today"]


def test_classify_in_input_order_with_scores_and_top_k(server, trained_dir):
    from headcls import Classifier

    expected = Classifier.from_pretrained(trained_dir).predict(TEXTS, top_k=2)
    status, _, body = server.classify({"texts": TEXTS, "top_k": 2})
    assert status == 200 and body["model"] == "model"
    assert [p["label"] for p in body["predictions"]] == [e["label"] for e in expected]
    assert [p["score"] for p in body["predictions"]] == pytest.approx([e["score"] for e in expected], abs=1e-5)
    assert all(len(p["top_k"]) == 2 for p in body["predictions"])
    status, _, body = server.classify({"text": "stock market profit"})
    assert status == 200 and list(body["predictions"][0]) == ["label", "score"]
    assert body["predictions"][0]["label"] == "business"


def test_labels_health_readiness_metrics_docs_and_page(server):
    assert server.call("GET", "/v1/labels")[2] == {"model": "model", "labels": ["business", "science", "sports"],
                                                  "backend": "torch", "multi_label": False}
    assert server.call("GET", "/healthz")[:3:2] == (200, {"status": "ok"})
    assert server.call("GET", "/readyz")[2] == {"status": "ready", "model": "model"}
    server.classify({"texts": ["goal", "bank"]})
    status, headers, text = server.call("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    for name in ("headcls_requests_total", "headcls_texts_classified_total", "headcls_batch_size_bucket",
                 "headcls_queue_depth", "headcls_request_seconds_bucket"):
        assert name in text, name
    assert 'headcls_requests_total{path="/v1/classify",status="200"}' in text
    spec = server.call("GET", "/openapi.json")[2]
    assert {"/v1/classify", "/v1/labels", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    assert "ClassifyRequest" in json.dumps(spec)
    assert server.call("GET", "/docs")[0] == 200
    status, headers, page = server.call("GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html") and 'id="classify"' in page


@pytest.mark.parametrize("raw, status, expected", [
    (b'{"texts": ["a", ', 422, "JSON decode error"),
    (b'{"texts": "a single string"}', 422, "valid list"),
    (b'{"texts": ["ok", 3]}', 422, "valid string"),
    (b'{"text": null}', 422, "give either 'texts'"),
    (b'{"text": "x", "texts": ["y"]}', 422, "give either 'texts'"),
    (b'{"texts": ["x"], "top_k": 0}', 422, "greater than or equal to 1"),
    (b'{"texts": ["x"], "model": "/etc/passwd"}', 422, "Extra inputs are not permitted"),
    (b'[1, 2]', 422, "valid dictionary"),
    (b'{"texts": []}', 200, {"predictions": [], "model": "model"}),
    (json.dumps({"texts": ["goal"] * 9}).encode(), 413, "9 texts: at most 8 per request"),
    (json.dumps({"texts": ["goal", "g" * 101]}).encode(), 413, "text 2 has 101 characters: at most 100"),
    (json.dumps({"text": "g " * 1500}).encode(), 413, "request body over 2000 bytes"),
])
def test_errors_and_limits(server, raw, status, expected):
    got, _, body = server.call("POST", "/v1/classify", raw=raw, headers={"Content-Type": "application/json"})
    assert got == status, body
    assert expected == body if isinstance(expected, dict) else expected in json.dumps(body)


def test_a_chunked_body_is_cut_at_the_limit(server):
    """No Content-Length: the limit holds while reading, the rest is never buffered."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    chunks = (b'{"text": "' + b"g" * 500 + b'"' if i == 0 else b" " * 500 for i in range(100))  # 50 kB
    connection.request("POST", "/v1/classify", body=chunks, encode_chunked=True,
                       headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    response = connection.getresponse()
    assert response.status == 413 and b"request body over 2000 bytes" in response.read()


def test_form_encoded_body_says_to_send_json(server):
    status, _, body = server.call("POST", "/v1/classify", raw=b'{"text": "goal"}',
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 422 and body["detail"] == "send the body as JSON, with 'Content-Type: application/json'"


def test_api_key(trained_dir, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("s3cret-key\n")
    with serving(trained_dir, "--api-key-file", str(key_file)) as server:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-key"}):
            status, response_headers, body = server.classify({"text": "goal"}, headers=headers)
            assert status == 401 and response_headers["www-authenticate"] == "Bearer", body
            assert server.call("GET", "/v1/labels", headers=headers)[0] == 401
        assert server.classify({"text": "goal"}, headers={"Authorization": "Bearer s3cret-key"})[0] == 200
        for path in ("/healthz", "/readyz", "/"):
            assert server.call("GET", path)[0] == 200, path
        assert 'headcls_requests_total{path="/v1/classify",status="401"} 3.0' in server.call("GET", "/metrics")[2]
    with serving(trained_dir, env={"HEADCLS_API_KEY": "from-env"}) as server:
        assert server.classify({"text": "goal"})[0] == 401
        assert server.classify({"text": "goal"}, headers={"Authorization": "Bearer from-env"})[0] == 200


def test_cors_only_when_asked(trained_dir, server):
    origin = {"Origin": "http://example.test"}
    assert "access-control-allow-origin" not in server.call("GET", "/v1/labels", headers=origin)[1]
    with serving(trained_dir, "--cors-origin", "http://example.test") as open_server:
        headers = open_server.call("GET", "/v1/labels", headers=origin)[1]
        assert headers["access-control-allow-origin"] == "http://example.test"


def in_thread(function, *args, **kwargs) -> dict:
    """Run `function` in a thread; the dict gets its result (or error) under 'value'."""
    out: dict = {}

    def target():
        try:
            out["value"] = function(*args, **kwargs)
        except Exception as e:  # noqa: BLE001  reported by the test
            out["value"] = e

    out["thread"] = threading.Thread(target=target)
    out["thread"].start()
    return out


def test_a_full_queue_answers_503_at_once_and_recovers(trained_dir):
    with serving(trained_dir, "--queue-size", "2", "--max-texts", "2", "--max-batch", "2", delay=1.0) as server:
        first = in_thread(server.classify, {"texts": ["goal", "bank"]})
        time.sleep(0.3)  # the worker has taken it and is busy for a second
        second = in_thread(server.classify, {"texts": ["nasa", "space"]})
        time.sleep(0.3)  # queued: the queue (2 texts) is full
        started = time.monotonic()
        status, headers, body = server.classify({"text": "market"})
        assert status == 503 and headers["retry-after"] == "1", body
        assert time.monotonic() - started < 0.5, "refused at once, not after waiting"
        for job in (first, second):
            job["thread"].join()
            assert job["value"][0] == 200, job["value"]
        assert server.classify({"text": "market"})[0] == 200, "full service once the load drops"


def classified(server) -> float:
    text = server.call("GET", "/metrics")[2]
    return float(re.search(r"^headcls_texts_classified_total (\S+)$", text, re.MULTILINE).group(1))


def test_a_request_whose_client_left_is_not_classified(trained_dir):
    with serving(trained_dir, delay=1.0) as server:
        before = classified(server)
        busy = in_thread(server.classify, {"texts": ["goal"]})
        time.sleep(0.3)
        sock = socket.create_connection(("127.0.0.1", server.port))
        body = json.dumps({"texts": ["bank", "nasa", "space"]}).encode()
        sock.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        time.sleep(0.3)
        sock.close()  # gone before the worker is free
        busy["thread"].join()
        assert busy["value"][0] == 200
        time.sleep(1.5)
        assert classified(server) == before + 1, "only the request still waiting was classified"


def test_sigterm_finishes_the_requests_in_flight_and_exits_0(trained_dir):
    with serving(trained_dir, "--max-batch", "1", delay=0.5) as server:
        jobs = [in_thread(server.classify, {"texts": [f"goal number {i}"]}) for i in range(4)]
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGTERM)
        for job in jobs:
            job["thread"].join()
            assert job["value"][0] == 200, job["value"]
        assert server.proc.wait(timeout=60) == 0
        assert "Traceback" not in server.proc.stderr.read()


@pytest.mark.parametrize("flags, expected", [
    (["--queue-size", "4", "--max-texts", "8"], "--queue-size 4 is below --max-texts 8"),
    (["--api-key-file", "nowhere.key"], "--api-key-file nowhere.key: cannot be read"),
    (["--port", "70000"], "--port must be at most 65535, got 70000"),
    (["--host", "203.0.113.9"], "--host 203.0.113.9 --port 8000: cannot listen there"),
])
def test_serve_mistakes_are_one_line(flags, expected, trained_dir, capsys):
    from headcls.cli import main

    assert main(["serve", "--model", str(trained_dir), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("headcls: error:") == 1 and expected in err and "Traceback" not in err


def test_a_taken_port_is_one_line(trained_dir, server, capsys):
    from headcls.cli import main

    assert main(["serve", "--model", str(trained_dir), "--port", str(server.port)]) == 2
    assert f"--port {server.port}: cannot listen there (Address already in use)" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_threads_sharing_a_classifier_get_the_serial_results(backend, trained_dir, tmp_path):
    """What the server relies on: concurrent predict calls from several threads give what serial calls give."""
    from conftest import toy_rows

    from headcls import Classifier
    from headcls.cli import main

    folder = trained_dir
    if backend == "onnx":
        folder = tmp_path / "onnx"
        assert main(["-q", "export", "--model", str(trained_dir), "--output", str(folder)]) == 0
    clf = Classifier.from_pretrained(folder, batch_size=4)
    chunks = [toy_rows(40, seed=s)["text"].tolist() for s in range(8)]
    serial = [clf.predict(chunk, top_k=2) for chunk in chunks]
    jobs = [in_thread(clf.predict, chunk, top_k=2) for chunk in chunks]
    for job, expected in zip(jobs, serial):
        job["thread"].join()
        assert job["value"] == expected


def test_a_classifier_changes_no_process_wide_state(trained_dir, tmp_path):
    """Constructing or calling a Classifier leaves thread counts, torch functions, logging and signals alone, so a
    server or a worker can hold one."""
    import logging

    import torch

    from headcls import Classifier

    def state():
        return (torch.get_num_threads(), torch.nn.functional.dropout, list(logging.getLogger().handlers),
                logging.getLogger().level, signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))

    before = state()
    for backend, threads in (("torch", 1), ("torch", None)):
        clf = Classifier.from_pretrained(trained_dir, backend=backend, threads=threads)
        clf.predict(TEXTS, top_k=2)
    assert state() == before
