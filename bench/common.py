"""Shared pieces of the benchmarks: timing a child process with its own peak memory, GEMM peak, tables."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = os.environ.get("HEADCLS_DATA_DIR", str(REPO.parent / "shared" / "data"))


def run_child(argv: list[str], env: dict | None = None) -> dict:
    """Run a command; return its wall time, stdout, stderr and its own peak RSS in MB (from wait4)."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{stderr[-3000:]}")
    return {"seconds": wall, "stdout": stdout, "stderr": stderr, "peak_rss_mb": usage.ru_maxrss / 1024}


def child_json(argv: list[str]) -> dict:
    """Run a Python child that prints one JSON object as its last stdout line; add wall time and peak RSS."""
    result = run_child([sys.executable, *argv])
    line = [ln for ln in result["stdout"].splitlines() if ln.startswith("{")][-1]
    data = json.loads(line)
    data["wall_seconds"] = result["seconds"]
    data["peak_rss_mb"] = result["peak_rss_mb"]
    return data


def useful_gflop(config, token_counts: list[int], training: bool = False) -> float:
    """Useful GFLOP per text of a BERT-style encoder on its real (unpadded) tokens: the dense layers
    (2 x their parameters per token) and the attention scores and mixing (2 x 2 x hidden per token pair) in each
    layer; training (forward + backward) is 3x that. Embedding lookups and the head are left out."""
    h, layers = config.hidden_size, config.num_hidden_layers
    dense = layers * (4 * h * h + 2 * h * config.intermediate_size)  # attention projections + feed-forward
    mean_t = statistics.mean(token_counts)
    mean_t2 = statistics.mean(t * t for t in token_counts)
    forward = 2 * dense * mean_t + 2 * 2 * layers * h * mean_t2
    return (3 if training else 1) * forward / 1e9


def gemm_peak(dtype_name: str, m: int = 2048, k: int = 384, n: int = 1536, repeats: int = 20) -> float:
    """Measured GFLOP/s of one matrix product of the encoder's shape (tokens x hidden @ hidden x 4*hidden)."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * m * k * n / statistics.median(times) / 1e9


def int8_gemm_peak(m: int = 2048, k: int = 384, n: int = 1536, repeats: int = 20) -> float:
    """Measured GOP/s of one int8 matrix product of the same shape through ONNX Runtime (`MatMulInteger`, uint8
    activations x int8 weights, as in its dynamically quantized models)."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.integers(-128, 128, size=(k, n), dtype=np.int8), "B")
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "int8_gemm",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [m, n])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"A": rng.integers(0, 256, size=(m, k), dtype=np.uint8)}
    for _ in range(3):
        session.run(None, feed)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - t)
    return 2 * m * k * n / statistics.median(times) / 1e9


def machine() -> dict:
    import torch

    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Columns as (key, header, format)."""
    head = " | ".join(h for _, h, _ in columns)
    lines = [f"| {head} |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        cells = [format(row[k], f) if row.get(k) is not None else "-" for k, _, f in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
