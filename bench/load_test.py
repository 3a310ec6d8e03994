"""Load test of `headcls serve` with wrk (Debian's `wrk`, a Lua script), on 127.0.0.1 only, bounded in time.

    python bench/load_test.py --model outputs/ag_news_tutorial [--duration 60] [--concurrency 1 8 32 256]

The model is exported to ONNX int8 first (the fastest backend here) unless it is an exported folder already.
In one run:
- offline: `headcls predict` on the same texts and backend, whole command and steady state (texts/s);
- for each request size (1 and 32 texts) and concurrency: requests/s, texts/s, p50/p95/p99 latency, the status
  codes seen, errors, and the server's peak RSS;
- overload: 256 clients against a small queue (--overload-queue texts): only 200s and 503s are expected, RSS
  bounded; then one client for a few seconds to check full service is back.
Results go to bench/results/load_test.json. Why wrk and not Locust: see BENCHMARKS.md (measured: the client's
own CPU use, which on a 2-core machine is taken from the server).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from common import machine

LUA = r"""
local texts = {%(texts)s}
local per_request = %(size)d
local counter = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  counter = math.random(#texts)
end

function request()
  local parts = {}
  for i = 1, per_request do
    counter = counter %% #texts + 1
    parts[i] = texts[counter]
  end
  local body = '{"texts": [' .. table.concat(parts, ",") .. ']}'
  return wrk.format("POST", "/v1/classify", {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[tostring(status)] = (counts[tostring(status)] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do table.insert(parts, string.format('"%%s": %%d', status, n)) end
  io.write(string.format('WRKJSON {"requests": %%d, "duration_us": %%d, "connect_errors": %%d, "read_errors": %%d, ' ..
    '"write_errors": %%d, "timeouts": %%d, "p50_ms": %%.2f, "p95_ms": %%.2f, "p99_ms": %%.2f, "max_ms": %%.2f, ' ..
    '"statuses": {%%s}}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, table.concat(parts, ", ")))
end
"""


def lua_string(text: str) -> str:
    return "[==[" + json.dumps(text) + "]==]"  # a JSON string literal inside a Lua long string


def start_server(model: str, port_flags: list[str]) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "headcls", "-q", "serve", "--model", model, "--port", "0",
                             *port_flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not match:
        raise SystemExit(line + proc.stderr.read())
    port = int(match.group(1))
    import urllib.request

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                if r.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the server did not become ready")


def stop_server(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=120)


class PeakRss:
    """The peak resident memory of a process, sampled every 0.2 s while the block runs."""

    def __init__(self, pid: int):
        import psutil

        self.process, self.peak, self.running = psutil.Process(pid), 0, True
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.2)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()


def wrk(port: int, texts: list[str], size: int, clients: int, seconds: float, pid: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA % {"texts": ",".join(lua_string(t) for t in texts), "size": size})
    command = ["wrk", "-t1", f"-c{clients}", f"-d{int(seconds)}s", "--timeout", "30s", "-s", script.name,
               f"http://127.0.0.1:{port}/v1/classify"]
    with PeakRss(pid) as rss:
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    Path(script.name).unlink()
    result = json.loads(out.split("WRKJSON ", 1)[1])
    seconds = result["duration_us"] / 1e6
    ok = result["statuses"].get("200", 0)
    result.update({"clients": clients, "texts_per_request": size, "seconds": round(seconds, 2),
                   "requests_per_second": round(result["requests"] / seconds, 1),
                   "texts_per_second": round(ok * size / seconds, 1), "server_peak_rss_mb": round(rss.peak / 2**20),
                   "errors": sum(n for s, n in result["statuses"].items() if s not in ("200", "503"))
                   + result["connect_errors"] + result["read_errors"] + result["write_errors"] + result["timeouts"]})
    return result


def offline(model: str, texts: list[str], repeats: int = 3) -> dict:
    """`headcls predict` on the same texts: the whole command (load included), and the model alone (steady)."""
    from headcls import Classifier

    work = Path(tempfile.mkdtemp())
    (work / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    walls = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "headcls", "-q", "predict", "--model", model, "--input",
                        str(work / "in.txt"), "--output", str(work / "out.csv"), "--overwrite"], check=True)
        walls.append(time.perf_counter() - started)
    clf = Classifier.from_pretrained(model)
    clf.predict(texts[:64])
    steady = []
    for _ in range(repeats):
        started = time.perf_counter()
        clf.predict(texts)
        steady.append(time.perf_counter() - started)
    shutil.rmtree(work)
    return {"texts": len(texts), "command_texts_per_second": round(len(texts) / statistics.median(walls), 1),
            "steady_texts_per_second": round(len(texts) / statistics.median(steady), 1), "backend": clf.backend}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "outputs" / "ag_news_tutorial"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "ag_news" / "test.csv"))
    parser.add_argument("--texts", type=int, default=2000, help="distinct AG News test texts the clients send")
    parser.add_argument("--duration", type=int, default=60, help="seconds per run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 256])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--overload-queue", type=int, default=64, help="queue (texts) of the overload run")
    parser.add_argument("--serve-flags", default="", help="more flags for headcls serve, one string: '--threads 1'")
    parser.add_argument("--skip-overload", action="store_true")
    parser.add_argument("--only-overload", action="store_true", help="the overload run alone (and offline)")
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "load_test.json"))
    args = parser.parse_args()
    args.serve_flags = shlex.split(args.serve_flags)
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    import pandas as pd

    texts = pd.read_csv(args.data)["text"].head(args.texts).tolist()
    model, tmp = args.model, None
    if not (Path(model) / "model.onnx").is_file():
        tmp = tempfile.mkdtemp()
        model = f"{tmp}/int8"
        subprocess.run([sys.executable, "-m", "headcls", "-q", "export", "--model", args.model, "--output", model,
                        "--int8"], check=True)
    report = {"machine": machine(), "model": args.model, "served": "onnx int8", "duration_s": args.duration,
              "offline": offline(model, texts), "runs": []}
    print(f"offline headcls predict: {report['offline']}", flush=True)
    proc, port = start_server(model, args.serve_flags)
    try:
        for size in [] if args.only_overload else args.sizes:
            for clients in args.concurrency:
                result = wrk(port, texts, size, clients, args.duration, proc.pid)
                report["runs"].append(result)
                print(json.dumps(result), flush=True)
    finally:
        report["exit_status_after_sigterm"] = stop_server(proc)
    if args.skip_overload:
        print(json.dumps(report["runs"]))
        return
    proc, port = start_server(model, [*args.serve_flags, "--queue-size", str(args.overload_queue), "--max-texts",
                                      str(min(args.overload_queue, 256))])
    try:
        report["overload"] = wrk(port, texts, 1, 256, args.duration, proc.pid)
        print("overload:", json.dumps(report["overload"]), flush=True)
        report["after_overload"] = wrk(port, texts, 1, 1, 5, proc.pid)
        print("after:", json.dumps(report["after_overload"]), flush=True)
    finally:
        report["overload_exit_status_after_sigterm"] = stop_server(proc)
    if tmp:
        shutil.rmtree(tmp)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    steady = report["offline"]["steady_texts_per_second"]
    print(f"\n{'texts/req':>9} {'clients':>7} {'req/s':>8} {'texts/s':>8} {'vs offline':>10} {'p50 ms':>8} "
          f"{'p95 ms':>8} {'p99 ms':>8} {'errors':>6} {'503':>6} {'RSS MB':>7}")
    for r in [*report["runs"], report["overload"]]:
        print(f"{r['texts_per_request']:>9} {r['clients']:>7} {r['requests_per_second']:>8} {r['texts_per_second']:>8} "
              f"{r['texts_per_second'] / steady:>10.2f} {r['p50_ms']:>8} {r['p95_ms']:>8} {r['p99_ms']:>8} "
              f"{r['errors']:>6} {r['statuses'].get('503', 0):>6} {r['server_peak_rss_mb']:>7}")


if __name__ == "__main__":
    main()
