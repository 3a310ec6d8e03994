"""Training throughput of one process against `torchrun --nproc_per_node 2` on this machine, same rows, one run.

    python bench/scale_train.py [--rows 512] [--repeats 2] [--data-dir ../shared/data]

Both run `headcls train` with its defaults on the first --rows AG News training rows for one epoch (64 held-out
validation rows, 64 test rows, no baseline), each in a fresh process group: (a) one process with torch's default
threads (one per core), (b) torchrun with 2 processes (1 thread each, torchrun's default) and the same per-process
batch of 32, so the effective batch is 64 and the optimizer takes half the steps. Samples/s is the Trainer's
`train_samples_per_second` (rows x epochs over the training loop, per-epoch validation and checkpoint included)
read from metrics.json; the wall time of the whole command is beside it. Medians over --repeats, interleaved.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_DATA_DIR, REPO, machine, run_child, table, write_json

VARIANTS = {
    "1 process": [sys.executable, "-m", "headcls"],
    "torchrun, 2 processes": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                              "-m", "headcls"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "scale_train.json"))
    args = parser.parse_args()
    import pandas as pd

    work = Path(tempfile.mkdtemp(prefix="headcls-scale-"))
    train = pd.read_csv(Path(args.data_dir) / "ag_news" / "train.csv")
    test = pd.read_csv(Path(args.data_dir) / "ag_news" / "test.csv")
    train.head(args.rows).to_csv(work / "train.csv", index=False)
    train.iloc[args.rows : args.rows + 64].to_csv(work / "validation.csv", index=False)
    test.head(64).to_csv(work / "test.csv", index=False)
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for repeat in range(args.repeats):
        for name, launcher in VARIANTS.items():
            out = work / f"out-{repeat}-{len(runs[name])}-{name[0]}"
            result = run_child([*launcher, "-q", "train", "--data", str(work), "--output", str(out), "--epochs", "1",
                                "--no-baseline"])
            metrics = json.loads((out / "metrics.json").read_text())
            runs[name].append({"samples_per_second": metrics["train_samples_per_second"],
                               "train_seconds": metrics["train_seconds"], "wall_seconds": result["seconds"],
                               "effective_batch_size": metrics["schedule"]["effective_batch_size"],
                               "steps": metrics["schedule"]["steps"]})
            print(name, runs[name][-1], flush=True)
    summary = {name: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for name, rs in runs.items()}
    base = summary["1 process"]["samples_per_second"]
    rows = [{"variant": name, **s, "ratio": s["samples_per_second"] / base} for name, s in summary.items()]
    print(table(rows, [("variant", "variant", "s"), ("effective_batch_size", "effective batch", "g"),
                       ("steps", "steps", "g"), ("samples_per_second", "samples/s", ".1f"), ("ratio", "ratio", ".2f"),
                       ("train_seconds", "train s", ".1f"), ("wall_seconds", "command s", ".1f")]))
    write_json(Path(args.json), {"machine": machine(), "rows": args.rows, "repeats": args.repeats, "runs": runs,
                           "medians": summary})


if __name__ == "__main__":
    main()
