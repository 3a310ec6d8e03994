"""Ray Data batch prediction (`headcls predict --engine ray`) against plain `headcls predict`, same rows, same model.

    python bench/ray_predict.py [--model outputs/ag_news_tutorial] [--rows 4000] [--shards 8] [--repeats 3]
                                [--workers 1 2]

The model is exported to ONNX int8 first (the fastest backend here, as in bench/load_test.py) unless it is an
exported folder already. The first --rows AG News test texts (with an id column) are written as --shards Parquet
shards for Ray and as one Parquet file for plain `headcls predict`. Every run is a whole command in a child
process; each Ray run starts its own local cluster and stops it (no --ray-address), as a user's first run does.
Per configuration, medians over --repeats:
- command_rows_per_second: rows / wall time of the whole command (imports, model loads, cluster start included);
- steady_rows_per_second: the rows a full run has beyond a run on half the shards, over the extra wall time it
  takes: the rate once everything has started, for both engines alike (the fixed costs cancel);
- for Ray, the seconds to start (and join) the cluster and the run's own rate, from OUTPUT/_headcls.json;
- the ratios of each Ray configuration to plain `headcls predict`.
Results go to bench/results/ray_predict.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from common import DEFAULT_DATA_DIR, machine, run_child, table, write_json  # noqa: E402


def write_inputs(data: str, rows: int, shards: int, work: Path) -> dict[str, dict]:
    """{"full"|"half": {"local": one Parquet file, "ray": a glob of shards, "rows": N}}; half: the first shards."""
    import pandas as pd

    frame = pd.read_csv(data, usecols=["text"]).head(rows)  # the label column would clash with the predictions
    frame.insert(0, "id", range(len(frame)))
    parts = [frame.iloc[i * len(frame) // shards : (i + 1) * len(frame) // shards] for i in range(shards)]
    inputs = {}
    for name, chosen in (("full", parts), ("half", parts[: shards // 2])):
        folder = work / name
        folder.mkdir()
        for i, part in enumerate(chosen):
            part.to_parquet(folder / f"shard-{i:03d}.parquet", index=False)
        pd.concat(chosen).to_parquet(work / f"{name}.parquet", index=False)
        inputs[name] = {"local": str(work / f"{name}.parquet"), "ray": str(folder / "*.parquet"),
                        "rows": sum(len(p) for p in chosen)}
    return inputs


def command(model: str, engine: str, workers: int | None, source: dict, out: Path) -> list[str]:
    argv = [sys.executable, "-m", "headcls", "-q", "predict", "--model", model, "--overwrite"]
    if engine == "local":
        return [*argv, "--input", source["local"], "--output", str(out / "local.csv")]
    return [*argv, "--engine", "ray", "--workers", str(workers), "--input", source["ray"], "--output",
            str(out / f"ray-{workers}")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "outputs" / "ag_news_tutorial"))
    parser.add_argument("--data", default=str(Path(DEFAULT_DATA_DIR) / "ag_news" / "test.csv"))
    parser.add_argument("--rows", type=int, default=4000, help="AG News test texts classified per full run")
    parser.add_argument("--shards", type=int, default=8, help="Parquet files the rows are split into (even)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray worker counts to run")
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "ray_predict.json"))
    args = parser.parse_args()
    if args.shards < 2 or args.shards % 2:
        raise SystemExit("--shards must be even (the half runs take the first half of the shards)")

    work = Path(tempfile.mkdtemp(prefix="headcls-ray-bench-"))
    try:
        model = args.model
        if not (Path(model) / "model.onnx").is_file():
            model = str(work / "int8")
            subprocess.run([sys.executable, "-m", "headcls", "-q", "export", "--model", args.model, "--output", model,
                            "--int8"], check=True)
        inputs = write_inputs(args.data, args.rows, args.shards, work)
        configs = [("local", None)] + [("ray", w) for w in args.workers]
        runs: dict[tuple, dict[str, list]] = {c: {"full": [], "half": [], "summaries": []} for c in configs}
        for repeat in range(args.repeats):
            for engine, workers in configs:  # interleaved, so that a slow spell of the machine hits every engine
                for size in ("half", "full"):
                    argv = command(model, engine, workers, inputs[size], work)
                    runs[(engine, workers)][size].append(run_child(argv)["seconds"])
                    if engine == "ray" and size == "full":
                        summary = json.loads((work / f"ray-{workers}" / "_headcls.json").read_text())
                        assert summary["rows"] == inputs["full"]["rows"], summary
                        runs[(engine, workers)]["summaries"].append(summary)
                print(f"repeat {repeat + 1}: {engine} {workers or ''} full {runs[(engine, workers)]['full'][-1]:.1f} s",
                      flush=True)
        full_rows, half_rows = inputs["full"]["rows"], inputs["half"]["rows"]
        results = []
        for (engine, workers), timed in runs.items():
            full, half = statistics.median(timed["full"]), statistics.median(timed["half"])
            row = {"engine": engine, "workers": workers, "command_seconds": round(full, 2),
                   "command_rows_per_second": round(full_rows / full, 1),
                   "steady_rows_per_second": round((full_rows - half_rows) / (full - half), 1) if full > half else None,
                   "runs_full_seconds": [round(t, 2) for t in timed["full"]],
                   "runs_half_seconds": [round(t, 2) for t in timed["half"]]}
            if timed["summaries"]:
                row["threads_per_worker"] = timed["summaries"][0]["threads_per_worker"]
                row["cluster_start_seconds"] = statistics.median(s["seconds"]["start"] for s in timed["summaries"])
                row["in_run_rows_per_second"] = statistics.median(s["rows_per_second"] for s in timed["summaries"])
            results.append(row)
        plain = results[0]
        for row in results[1:]:
            row["command_vs_plain"] = round(row["command_rows_per_second"] / plain["command_rows_per_second"], 2)
            if row["steady_rows_per_second"] and plain["steady_rows_per_second"]:
                row["steady_vs_plain"] = round(row["steady_rows_per_second"] / plain["steady_rows_per_second"], 2)
        report = {"machine": machine(), "model": args.model, "backend": "onnx int8", "rows": full_rows,
                  "half_rows": half_rows, "shards": args.shards, "repeats": args.repeats, "results": results}
        write_json(Path(args.json), report)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(results, [("engine", "engine", ""), ("workers", "workers", ""), ("threads_per_worker", "threads", ""),
                          ("command_seconds", "command s", ".2f"), ("command_rows_per_second", "command rows/s", ".1f"),
                          ("steady_rows_per_second", "steady rows/s", ".1f"),
                          ("cluster_start_seconds", "cluster start s", ".2f"),
                          ("command_vs_plain", "command vs plain", ".2f"),
                          ("steady_vs_plain", "steady vs plain", ".2f")]))
    print(f"-> {args.json}")


if __name__ == "__main__":
    main()
