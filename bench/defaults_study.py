"""Variants of the default recipe on the tutorial protocol, several seeds each, side by side in one run.

    python bench/defaults_study.py [--data-dir ../shared/data] [--seeds 42 1 2]
                                   [--variant NAME='FLAGS' ...] [--json bench/results/defaults_study.json]

Each run is `headcls train --config configs/ag_news_tutorial.yaml --seed S FLAGS` in a child process (the first
6,000 AG News training rows, 600 of them held out for validation, all 7,600 test rows; `--config
configs/ag_news_full.yaml` for all 15,197 training rows), runs interleaved seed by
seed so that a slow spell of the machine hits every variant. Per variant: test accuracy (mean and spread over the
seeds), macro-F1, Business recall (the class the skewed first 6,000 rows have least of) and training seconds
(the Trainer's own, validation included) with its ratio to the first variant. Every finished run is written to the
JSON at once, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_DATA_DIR, REPO, machine, table, write_json

# Relative to configs/ag_news_tutorial.yaml (which trains with class weights balanced since this study): its own
# settings, the unweighted loss it had before, then one change each.
VARIANTS = {
    "tutorial config": "",
    "unweighted cross-entropy": "--class-weights none",
    "warmup 20 %": "--max-warmup-fraction 0.2",
    "label smoothing 0.1": "--label-smoothing 0.1",
    "layer-wise decay 0.9": "--layer-lr-decay 0.9",
    "head learning rate 3e-4": "--head-learning-rate 3e-4",
    "warmup 20 % + decay 0.9 + smoothing 0.1": "--max-warmup-fraction 0.2 --layer-lr-decay 0.9 --label-smoothing 0.1",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--config", default=str(REPO / "configs" / "ag_news_tutorial.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--variant", action="append", metavar="NAME=FLAGS",
                        help="a variant to run (repeatable); default: " + "; ".join(VARIANTS))
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "defaults_study.json"))
    args = parser.parse_args()
    variants = dict(v.split("=", 1) for v in args.variant) if args.variant else VARIANTS

    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="headcls-defaults-") as work:
        for seed in args.seeds:
            for name, flags in variants.items():
                out = Path(work) / "model"
                argv = [sys.executable, "-m", "headcls", "-q", "train", "--config", args.config, "--data-dir",
                        args.data_dir, "--seed", str(seed), "--output", str(out), "--overwrite", "--no-baseline",
                        *shlex.split(flags)]
                subprocess.run(argv, check=True)
                m = json.loads((out / "metrics.json").read_text())
                runs.append({"variant": name, "flags": flags, "seed": seed, "accuracy": m["accuracy"],
                             "f1_macro": m["f1_macro"], "business_recall": m["per_class"]["Business"]["recall"],
                             "train_seconds": m["train_seconds"], "epochs": m["epochs"]})
                print(f"seed {seed}: {name}: accuracy {m['accuracy']:.4f}, Business recall "
                      f"{m['per_class']['Business']['recall']:.4f}, {m['train_seconds']:.0f} s", flush=True)
                write_json(Path(args.json), {"machine": machine(), "config": args.config, "runs": runs})
    rows = []
    for name in variants:
        mine = [r for r in runs if r["variant"] == name]
        acc = [r["accuracy"] for r in mine]
        rows.append({"variant": name, "flags": variants[name] or "-", "seeds": len(mine),
                     "accuracy_mean": statistics.mean(acc), "accuracy_spread": max(acc) - min(acc),
                     "f1_macro_mean": statistics.mean(r["f1_macro"] for r in mine),
                     "business_recall_mean": statistics.mean(r["business_recall"] for r in mine),
                     "train_seconds_median": statistics.median(r["train_seconds"] for r in mine)})
    for row in rows:
        row["time_vs_first"] = round(row["train_seconds_median"] / rows[0]["train_seconds_median"], 3)
    write_json(Path(args.json), {"machine": machine(), "config": args.config, "runs": runs, "summary": rows})
    print(table(rows, [("variant", "variant", ""), ("flags", "flags", ""), ("seeds", "seeds", ""),
                       ("accuracy_mean", "test accuracy (mean)", ".4f"), ("accuracy_spread", "spread", ".4f"),
                       ("f1_macro_mean", "macro-F1", ".4f"), ("business_recall_mean", "Business recall", ".4f"),
                       ("train_seconds_median", "training s", ".0f"), ("time_vs_first", "time vs first", ".2f")]))
    print(f"-> {args.json}")


if __name__ == "__main__":
    main()
