"""Streaming: `headcls predict` over a large input file keeps its memory bounded.

    python bench/predict_memory.py [--gigabytes 1.0] [--work DIR]

Builds a CSV of AG News test texts repeated to the requested size, then runs the whole command
`headcls predict --input BIG.csv --output OUT.jsonl` and, for comparison, the same on a 10 MB file, and
reports each run's peak RSS. The model is a tiny random BERT with the real bert-base-uncased WordPiece
vocabulary (so tokenization is real), truncating at 32 tokens, with almost no compute: the question here is
memory, and the model's own memory does not depend on the input size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_DATA_DIR, REPO, machine, run_child, table, write_json

MAX_TOKENS = 32  # texts are read whole but truncated to 32 tokens: a 1 GB run then takes minutes, not an hour


def make_model(folder: Path) -> Path:
    from transformers import AutoTokenizer

    from headcls.data.agnews import AG_NEWS_LABELS
    from headcls.modeling.loading import build_classifier, default_encoder
    from headcls.testing import tiny_bert

    vocab = (Path(default_encoder()) / "vocab.txt").read_text(encoding="utf-8").split("\n")
    encoder = tiny_bert(folder / "encoder", [w for w in vocab if w], max_positions=MAX_TOKENS)
    model = build_classifier(str(encoder), AG_NEWS_LABELS)
    model.save_pretrained(folder / "model")
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    tokenizer.model_max_length = MAX_TOKENS
    tokenizer.save_pretrained(folder / "model")
    return folder / "model"


def make_input(source: Path, target: Path, size_bytes: int) -> int:
    """Repeat the texts of `source` into `target` until it holds `size_bytes`; return the row count."""
    import pandas as pd

    block = pd.read_csv(source)[["text"]].to_csv(index=False, header=False)
    rows_per_block = block.count("\n")
    with target.open("w", encoding="utf-8") as f:
        f.write("text\n")
        written, rows = 0, 0
        while written < size_bytes:
            f.write(block)
            written += len(block)
            rows += rows_per_block
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--work", help="folder for the big files (default: a temporary folder)")
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "predict_memory.json"))
    args = parser.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="headcls-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    model = make_model(work)
    source = Path(args.data_dir) / "ag_news" / "test.csv"
    results = []
    for name, size in (("10 MB", 10 * 2**20), (f"{args.gigabytes:g} GB", int(args.gigabytes * 2**30))):
        big = work / "input.csv"
        rows = make_input(source, big, size)
        out = work / "output.jsonl"
        # fp32: bf16 kernels are slow at this tiny width (32), and speed is not the question here
        run = run_child([sys.executable, "-m", "headcls", "-q", "predict", "--model", str(model),
                         "--input", str(big), "--output", str(out), "--precision", "fp32", "--batch-size", "256",
                         "--overwrite"])
        written = sum(1 for _ in out.open(encoding="utf-8"))
        assert written == rows, f"{written} predictions for {rows} rows"
        results.append({"input": name, "input_mb": big.stat().st_size / 2**20, "rows": rows,
                        "seconds": run["seconds"], "rows_per_second": rows / run["seconds"],
                        "peak_rss_mb": run["peak_rss_mb"]})
        print(f"{name}: {rows} rows in {run['seconds']:.0f} s, peak RSS {run['peak_rss_mb']:.0f} MB", file=sys.stderr)
        big.unlink()
        out.unlink()
    print(table(results, [("input", "input", "s"), ("input_mb", "MB", ".0f"), ("rows", "rows", "d"),
                          ("seconds", "seconds", ".0f"), ("rows_per_second", "rows/s", ".0f"),
                          ("peak_rss_mb", "peak RSS MB", ".0f")]))
    write_json(Path(args.json), {"machine": machine(), "results": results})


if __name__ == "__main__":
    main()
