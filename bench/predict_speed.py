"""Prediction speed: the tutorial's `pipeline(list)` against `headcls predict` with each backend, one run.

    python bench/predict_speed.py --model outputs/ag_news_tutorial [--rows 2000] [--repeats 3]

Every variant classifies the same first --rows AG News test rows, each in a fresh process:
- pipeline: `transformers.pipeline("text-classification", model=DIR)(list_of_sentences)`, as in the tutorial;
- headcls-torch / -onnx / -onnx-int8: the whole command `headcls predict --model M --input rows.csv
  --output X.csv --backend B`, load included (ONNX folders are exported first, outside the timing).
Reports sentences/s over the whole command (and model time alone for the pipeline), cold start (a fresh process
to its first prediction of one sentence, imports included), peak RSS, accuracy on those rows, and the ratio to
the pipeline. Useful GFLOP/s counts the encoder's work on the real tokens (`common.useful_gflop`), against GEMM peaks
measured in the same run on the encoder's shape: fp32 and bf16 through torch, int8 through ONNX Runtime; each
variant against the peak of the arithmetic it runs in ("own peak"), and the ceiling that the int8 peak puts on
any backend of this model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    DEFAULT_DATA_DIR,
    REPO,
    child_json,
    gemm_peak,
    int8_gemm_peak,
    machine,
    run_child,
    table,
    useful_gflop,
    write_json,
)

ARITHMETIC = {"pipeline": "float32", "headcls-torch": "bfloat16", "headcls-onnx": "float32", "headcls-onnx-int8": "int8"}


def run_pipeline(model: str, rows_csv: str) -> dict:
    import pandas as pd
    from transformers import pipeline

    texts = pd.read_csv(rows_csv)["text"].tolist()
    classify = pipeline("text-classification", model=model)
    started = time.perf_counter()
    results = classify(texts)
    seconds = time.perf_counter() - started
    return {"model_seconds": seconds, "labels": [r["label"] for r in results]}


PIPELINE_COLD = (
    "import sys; from transformers import pipeline; "
    "pipeline('text-classification', model=sys.argv[1])('The stock market is reaching new heights.')"
)


def headcls_command(model: str, rows_csv: str, out_csv: str, backend: str) -> list[str]:
    return [sys.executable, "-m", "headcls", "-q", "predict", "--model", model, "--input", rows_csv,
            "--output", out_csv, "--backend", backend, "--overwrite"]


def cold_start(model: str, backend: str) -> float:
    """Seconds from process start (imports included) to the first prediction of one sentence."""
    if backend == "pipeline":
        return run_child([sys.executable, "-c", PIPELINE_COLD, model])["seconds"]
    result = run_child([sys.executable, "-m", "headcls", "-q", "predict", "--model", model, "--backend", backend,
                        "The stock market is reaching new heights."])
    return result["seconds"]


def useful_gflop_per_sentence(model_dir: str, texts: list[str]) -> float:
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokens = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=128)["input_ids"]]
    return useful_gflop(AutoConfig.from_pretrained(model_dir), tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a folder written by headcls train")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--skip-pipeline", action="store_true", help="the slow tutorial pipeline (about 100 s)")
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "predict_speed.json"))
    parser.add_argument("--one-pipeline", metavar="ROWS_CSV", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_pipeline:
        print(json.dumps(run_pipeline(args.model, args.one_pipeline)))
        return

    import pandas as pd

    from headcls.data.agnews import AG_NEWS_LABELS

    work = Path(tempfile.mkdtemp(prefix="headcls-bench-"))
    rows = pd.read_csv(Path(args.data_dir) / "ag_news" / "test.csv").head(args.rows)
    truth = [AG_NEWS_LABELS[i] for i in rows["label"]]
    rows_csv = str(work / "rows.csv")
    rows[["text"]].to_csv(rows_csv, index=False)

    models = {"headcls-torch": (args.model, "torch")}
    for name, flags in (("headcls-onnx", []), ("headcls-onnx-int8", ["--int8"])):
        folder = str(work / name)
        run_child([sys.executable, "-m", "headcls", "-q", "export", "--model", args.model, "--output", folder, *flags])
        models[name] = (folder, "onnx")
    sizes = {name: sum(p.stat().st_size for p in Path(folder).glob("*.onnx")) or
             sum(p.stat().st_size for p in Path(folder).glob("*.safetensors")) for name, (folder, _) in models.items()}

    runs: dict[str, list[dict]] = {name: [] for name in (["pipeline"] if not args.skip_pipeline else []) + list(models)}
    for repeat in range(args.repeats):
        for name in runs:
            if name == "pipeline":
                result = child_json([__file__, "--model", args.model, "--one-pipeline", rows_csv])
                result["seconds"] = result["wall_seconds"]
                result["cold_start_seconds"] = cold_start(args.model, "pipeline")
            else:
                folder, backend = models[name]
                out_csv = str(work / f"{name}.csv")
                result = run_child(headcls_command(folder, rows_csv, out_csv, backend))
                result["labels"] = pd.read_csv(out_csv)["label"].tolist()
                result["cold_start_seconds"] = cold_start(folder, backend)
            result["accuracy"] = sum(a == b for a, b in zip(result.pop("labels"), truth)) / len(truth)
            result.pop("stdout", None), result.pop("stderr", None)
            runs[name].append(result)
            print(f"repeat {repeat + 1} {name}: {args.rows / result['seconds']:.1f} sentences/s (whole command)",
                  file=sys.stderr)

    gflop = useful_gflop_per_sentence(args.model, rows["text"].tolist())
    peaks = {name: gemm_peak(name) for name in ("float32", "bfloat16")} | {"int8": int8_gemm_peak()}
    summary = []
    for name, results in runs.items():
        seconds = statistics.median(r["seconds"] for r in results)
        entry = {
            "variant": name,
            "sentences_per_second": args.rows / seconds,
            "cold_start_seconds": statistics.median(r["cold_start_seconds"] for r in results),
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in results),
            "accuracy": results[0]["accuracy"],
            "size_mb": sizes.get(name, sizes["headcls-torch"]) / 1e6,
        }
        if name == "pipeline":
            entry["model_sentences_per_second"] = args.rows / statistics.median(r["model_seconds"] for r in results)
        entry["useful_gflops"] = entry["sentences_per_second"] * gflop
        entry["fraction_of_bf16_peak"] = entry["useful_gflops"] / peaks["bfloat16"]
        entry["own_peak"] = peaks[ARITHMETIC[name]]
        entry["fraction_of_own_peak"] = entry["useful_gflops"] / entry["own_peak"]
        summary.append(entry)
    base = summary[0]["sentences_per_second"]
    for entry in summary:
        entry["ratio"] = entry["sentences_per_second"] / base
    print(table(summary, [
        ("variant", "variant", "s"), ("sentences_per_second", "sentences/s (whole command)", ".1f"),
        ("ratio", f"x {summary[0]['variant']}", ".1f"), ("model_sentences_per_second", "model-only /s", ".1f"),
        ("cold_start_seconds", "cold start s", ".1f"),
        ("peak_rss_mb", "peak RSS MB", ".0f"), ("accuracy", "accuracy", ".4f"), ("size_mb", "model MB", ".1f"),
        ("useful_gflops", "useful GFLOP/s", ".0f"), ("own_peak", "own GEMM peak", ".0f"),
        ("fraction_of_own_peak", "of own peak", ".0%"), ("fraction_of_bf16_peak", "of bf16 peak", ".0%"),
    ]))
    ceiling = peaks["int8"] / gflop
    print(f"\n{args.rows} AG News test rows, {args.repeats} repeats, medians; GEMM peak fp32 {peaks['float32']:.0f}, "
          f"bf16 {peaks['bfloat16']:.0f} GFLOP/s, int8 {peaks['int8']:.0f} GOP/s; {gflop:.2f} useful GFLOP per sentence"
          f"\nCeiling: matrix products alone at the int8 peak allow {ceiling:.0f} sentences/s with this model "
          f"({ceiling / base:.1f}x {summary[0]['variant']}; 25x would be {25 * base:.0f}/s)")
    write_json(Path(args.json), {"machine": machine(), "rows": args.rows, "repeats": args.repeats,
                                 "gemm_peak_gflops": peaks, "int8_ceiling_sentences_per_second": ceiling,
                                 "summary": summary, "runs": runs})


if __name__ == "__main__":
    main()
