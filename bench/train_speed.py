"""Training speed: the AG News tutorial's recipe against `headcls train`, same encoder, same rows, one run.

    python bench/train_speed.py [--rows 1024] [--repeats 3] [--data-dir ../shared/data]

The rows: a seeded random sample of --rows of the tutorial protocol's training rows (the first 6,000 of train.csv).
(a) tutorial: slow BertTokenizer, `tokenizer(padding=True, truncation=True)` inside `dataset.map(batched=True)`
    over the protocol's 6,000 rows (so every row is padded to the longest of its 1,000-row block, as in the
    tutorial), DataCollatorWithPadding, fp32 Trainer, batch 32, weight decay 0.01, the encoder's own dropout
    and attention; then trained on the sampled rows.
(b) headcls: `headcls.train` (src/headcls/training/run.py) with its defaults (dynamic padding, length-grouped
    batches, bf16 autocast where supported, fused AdamW, the encoder's own dropout with fast masks, [CLS]-only
    last layer, plain attention on CPU), on the same sampled rows, validating on 64 test rows after the epoch.
Both train one epoch with the same learning-rate schedule (5e-5, warmup 10%), each run in a fresh process.
Samples/s is measured the same way for both: rows over the seconds from the start to the end of the epoch's
training loop (batches, steps, logging), by the same Trainer callback (`epoch_clock`; headcls takes it through
`headcls.train(..., callbacks=[...])`); the recipe has no validation or checkpoint, so headcls's per-epoch
validation and checkpoint, which follow the loop, are reported apart: the Trainer's own figure
(`train_samples_per_second`, which counts them for headcls) is the "Trainer figure" column.
Useful GFLOP/s counts the stock model's work on the real (unpadded) tokens (`common.useful_gflop`: dense layers
and attention, forward and backward).
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
from common import DEFAULT_DATA_DIR, REPO, child_json, gemm_peak, machine, table, useful_gflop, write_json

LEARNING_RATE = 5e-5
VARIANTS = ("tutorial", "headcls", "headcls-protocol")
PROTOCOL_ROWS = 6000  # the tutorial trains on the first 6,000 rows of the training set


def protocol_rows(data_dir: str):
    """The tutorial protocol's training rows, in file order."""
    import pandas as pd

    return pd.read_csv(Path(data_dir) / "ag_news" / "train.csv").head(PROTOCOL_ROWS)


def sample_positions(rows: int) -> list[int]:
    """Which of the protocol rows both recipes train on: a seeded random sample (the file's first rows hold
    only two classes), in random order."""
    import numpy as np

    return np.random.default_rng(0).permutation(PROTOCOL_ROWS)[:rows].tolist()


def epoch_clock():
    """A Trainer callback whose `seconds` add up the time inside the epochs' training loops, not what follows
    each epoch (validation, checkpoint)."""
    from transformers import TrainerCallback

    class EpochClock(TrainerCallback):
        seconds = 0.0

        def on_epoch_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_epoch_end(self, args, state, control, **kwargs):
            self.seconds += time.perf_counter() - self.started

    return EpochClock()


def run_tutorial(rows: int, data_dir: str) -> dict:
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        BertTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from headcls.modeling.loading import default_encoder

    encoder = default_encoder()
    tokenizer = BertTokenizer.from_pretrained(encoder)
    dataset = Dataset.from_pandas(protocol_rows(data_dir)).map(
        lambda b: tokenizer(b["text"], padding=True, truncation=True), batched=True
    )
    dataset = dataset.select(sample_positions(rows))
    model = AutoModelForSequenceClassification.from_pretrained(encoder, num_labels=4)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            num_train_epochs=1,
            per_device_train_batch_size=32,
            learning_rate=LEARNING_RATE,
            warmup_steps=0.1,
            weight_decay=0.01,
            logging_steps=10,
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            use_cpu=True,
            seed=42,
            disable_tqdm=True,
        )
        clock = epoch_clock()
        trainer = Trainer(model=model, args=args, train_dataset=dataset, callbacks=[clock],
                          data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer)
        result = trainer.train()
    real_tokens = [sum(mask) for mask in dataset["attention_mask"]]
    return {
        "samples_per_second": rows / clock.seconds,
        "trainer_samples_per_second": result.metrics["train_samples_per_second"],
        "train_loss": result.training_loss,
        "padded_tokens_per_sample": statistics.mean(len(ids) for ids in dataset["input_ids"]),
        "real_tokens_per_sample": statistics.mean(real_tokens),
        "useful_gflop_per_sample": useful_gflop(model.config, real_tokens, training=True),
    }


def run_headcls(rows: int, data_dir: str, protocol: bool = False) -> dict:
    """headcls on the sampled rows, validating on 64 test rows; or (protocol) on all 6,000 protocol rows with
    the protocol's own stratified 10 % validation split, one epoch."""
    import pandas as pd
    from transformers import AutoConfig, AutoTokenizer

    import headcls
    from headcls.modeling.loading import default_encoder

    clock = epoch_clock()
    train_rows = protocol_rows(data_dir) if protocol else protocol_rows(data_dir).iloc[sample_positions(rows)]
    check_rows = pd.read_csv(Path(data_dir) / "ag_news" / "test.csv").head(64)
    with tempfile.TemporaryDirectory() as tmp:
        train_rows.to_csv(Path(tmp) / "train.csv", index=False)
        check_rows.to_csv(Path(tmp) / "check.csv", index=False)
        cfg = headcls.TrainConfig(
            train_file=f"{tmp}/train.csv",
            validation_file=None if protocol else f"{tmp}/check.csv",
            test_file=f"{tmp}/check.csv",
            output=f"{tmp}/model",
            epochs=1,
            learning_rate=LEARNING_RATE,
            warmup_steps=10_000,  # capped to max_warmup_fraction (10%) of the run, as for the tutorial
            baseline=False,
        )
        metrics = headcls.train(cfg, callbacks=[clock], echo=lambda *a: None)
    encoder = default_encoder()
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    real_tokens = [len(ids) for ids in tokenizer(train_rows["text"].tolist(), truncation=True, max_length=128)["input_ids"]]
    return {
        "samples_per_second": len(train_rows) / clock.seconds,
        "trainer_samples_per_second": metrics["train_samples_per_second"],
        "train_loss": metrics["train_loss"],
        "real_tokens_per_sample": statistics.mean(real_tokens),
        "useful_gflop_per_sample": useful_gflop(AutoConfig.from_pretrained(encoder), real_tokens, training=True),
    }


def summarise(runs: dict[str, list[dict]], peaks: dict[str, float]) -> list[dict]:
    """Per recipe: the medians over the repeats, useful GFLOP/s against the GEMM peaks, and the ratios to the
    tutorial (of the medians, and repeat by repeat)."""
    summary = []
    for name, results in runs.items():
        keys = ("samples_per_second", "trainer_samples_per_second", "train_loss", "peak_rss_mb")
        med = {k: statistics.median(r[k] for r in results) for k in keys}
        gflops = med["samples_per_second"] * results[0]["useful_gflop_per_sample"]
        peak = peaks["float32"] if name == "tutorial" else peaks["bfloat16"]
        summary.append({
            "recipe": name,
            **med,
            "useful_gflop_per_sample": results[0]["useful_gflop_per_sample"],
            "real_tokens_per_sample": results[0]["real_tokens_per_sample"],
            "padded_tokens_per_sample": results[0].get("padded_tokens_per_sample"),
            "useful_gflops": gflops,
            "gemm_peak_gflops": peak,
            "fraction_of_peak": gflops / peak,
            "fraction_of_bf16_peak": gflops / peaks["bfloat16"],
        })
    for entry in summary:
        entry["ratio"] = entry["samples_per_second"] / summary[0]["samples_per_second"]
        entry["trainer_ratio"] = entry["trainer_samples_per_second"] / summary[0]["trainer_samples_per_second"]
        entry["repeat_ratios"] = [r["samples_per_second"] / t["samples_per_second"]
                                  for r, t in zip(runs[entry["recipe"]], runs["tutorial"])]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "train_speed.json"))
    parser.add_argument("--protocol", action="store_true",
                        help="also time headcls over all 6,000 protocol rows (one epoch, about 2 min a repeat)")
    parser.add_argument("--one", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        import logging

        logging.disable(logging.WARNING)
        if args.one == "tutorial":
            result = run_tutorial(args.rows, args.data_dir)
        else:
            result = run_headcls(args.rows, args.data_dir, protocol=args.one == "headcls-protocol")
        print(json.dumps(result))
        return

    peaks = {name: gemm_peak(name) for name in ("float32", "bfloat16")}
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS[: 3 if args.protocol else 2]}
    for repeat in range(args.repeats):  # interleaved, so slow phases of a shared machine hit both
        for name, results in runs.items():
            result = child_json([__file__, "--one", name, "--rows", str(args.rows), "--data-dir", args.data_dir])
            results.append(result)
            print(f"repeat {repeat + 1} {name}: {result['samples_per_second']:.1f} samples/s", file=sys.stderr)

    summary = summarise(runs, peaks)
    ratio = summary[1]["ratio"]
    print(table(summary, [
        ("recipe", "recipe", "s"), ("samples_per_second", "samples/s (median)", ".1f"), ("ratio", "x tutorial", ".1f"),
        ("trainer_samples_per_second", "Trainer figure", ".1f"), ("trainer_ratio", "x tutorial", ".1f"),
        ("train_loss", "train loss", ".3f"), ("peak_rss_mb", "peak RSS MB", ".0f"),
        ("real_tokens_per_sample", "real tokens", ".1f"), ("padded_tokens_per_sample", "padded tokens", ".0f"),
        ("useful_gflops", "useful GFLOP/s", ".0f"), ("gemm_peak_gflops", "GEMM peak (own dtype)", ".0f"),
        ("fraction_of_peak", "of own peak", ".0%"), ("fraction_of_bf16_peak", "of bf16 peak", ".0%"),
    ]))
    print(f"\nheadcls / tutorial on the same {args.rows} rows: {ratio:.1f}x"
          + (f"; headcls over all {PROTOCOL_ROWS} protocol rows / tutorial: {summary[2]['ratio']:.1f}x"
             if len(summary) > 2 else "")
          + "; per repeat: " + ", ".join(f"{r:.1f}x" for r in summary[1]["repeat_ratios"])
          + f"  ({args.repeats} repeats; GEMM peak fp32 {peaks['float32']:.0f}, bf16 {peaks['bfloat16']:.0f} GFLOP/s)")
    write_json(Path(args.json), {"machine": machine(), "rows": args.rows, "repeats": args.repeats,
                                 "gemm_peak_gflops": peaks, "summary": summary, "ratio": ratio, "runs": runs})


if __name__ == "__main__":
    main()
