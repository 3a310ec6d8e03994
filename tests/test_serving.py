"""`headcls serve` (headcls.serving) over real HTTP: the real server in a child process on 127.0.0.1 (a free port)
with the tiny model: the API, its limits and errors, API keys and CORS, the micro-batcher under load (a full queue,
a client that left, SIGTERM with requests in flight), its mistakes as one line, and the page in a real browser:
headless Chromium from Debian's `chromium` package, driven by Selenium through Debian's `chromium-driver` (.ci/run
installs both; no browser is downloaded). The page's screenshot is kept in test-artifacts/serve_page.png."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import time
from pathlib import Path

import pytest
from helpers import TEXTS, in_thread, serving

pytest.importorskip("fastapi")

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="module")
def server(trained_dir):
    with serving(trained_dir, "--max-texts", "8", "--max-chars", "100", "--max-body-bytes", "2000") as running:
        yield running


# --- the API -------------------------------------------------------------------------------------------------------

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


# --- the micro-batcher under load, and stopping ----------------------------------------------------------------

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


# --- mistakes are one line -------------------------------------------------------------------------------------

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


# --- the page in a real browser --------------------------------------------------------------------------------

@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM and DRIVER):
        if os.environ.get("HEADCLS_REQUIRE_BROWSER"):
            pytest.fail("chromium and chromedriver are required (Debian packages chromium, chromium-driver)")
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not try to download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1000,800", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_page_classifies_a_sentence_and_shows_a_bar_per_label(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # the module's server: its limits (8 texts of 100 characters) are far above what the page sends
    browser.get(f"http://127.0.0.1:{server.port}/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: "labels:" in d.find_element(By.ID, "model").text)
    assert browser.find_element(By.ID, "model").text == "Model: model (torch) — labels: business, science, sports"

    browser.find_element(By.ID, "classify").click()  # an empty box: the server refuses, the page says why
    wait.until(lambda d: d.find_element(By.ID, "message").is_displayed())
    assert "The server refused the request (422): text 1 is empty" in browser.find_element(By.ID, "message").text

    browser.find_element(By.ID, "text").send_keys("the team scored a goal in the match")
    browser.find_element(By.ID, "classify").click()
    wait.until(lambda d: d.find_element(By.ID, "label").text)
    assert browser.find_element(By.ID, "label").text == "sports"
    assert not browser.find_element(By.ID, "message").is_displayed()
    bars = browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
    assert sorted(bar.get_attribute("data-label") for bar in bars) == ["business", "science", "sports"]
    shares = [float(bar.find_element(By.CSS_SELECTOR, ".score").text.rstrip("%")) for bar in bars]
    assert sum(shares) == pytest.approx(100, abs=0.3) and shares == sorted(shares, reverse=True)
    assert "best" in bars[0].get_attribute("class") and bars[0].get_attribute("data-label") == "sports"
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "serve_page.png"))
