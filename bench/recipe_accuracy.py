"""Test accuracy of the tutorial's recipe with the default encoder: the figure `headcls train` must not fall below.

    python bench/recipe_accuracy.py [--data-dir ../shared/data] [--seed 42]

The tutorial's protocol and recipe: the first 6,000 rows of train.csv, slow `BertTokenizer` with truncation,
`AutoModelForSequenceClassification` with the encoder's own settings, fp32 Trainer, 3 epochs, batch 32, warmup
500 steps, weight decay 0.01, the Trainer's default learning rate and seed; then all 7,600 test rows.
One departure, for time only: rows are padded per batch (`DataCollatorWithPadding`) instead of to the longest
of each 1,000-row `map` block. Padded positions are masked out of attention, so the real tokens, the loss and
the gradients are the same up to float rounding, and the batches are the same (same sampler, same seed); the
block padding only multiplies the work (the full recipe would take about 2 hours here, this about 25 minutes).
Prints accuracy and macro-F1 and writes bench/results/recipe_accuracy.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_DATA_DIR, REPO, machine, write_json
from train_speed import protocol_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "recipe_accuracy.json"))
    args = parser.parse_args()

    import numpy as np
    import pandas as pd
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        BertTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from headcls.data.agnews import AG_NEWS_LABELS
    from headcls.modeling.loading import default_encoder
    from headcls.evaluation.metrics import compute_metrics

    encoder = default_encoder()
    tokenizer = BertTokenizer.from_pretrained(encoder)
    tokenize = lambda b: tokenizer(b["text"], truncation=True)
    train = Dataset.from_pandas(protocol_rows(args.data_dir)).map(tokenize, batched=True)
    test_rows = pd.read_csv(Path(args.data_dir) / "ag_news" / "test.csv")
    test = Dataset.from_pandas(test_rows).map(tokenize, batched=True)
    model = AutoModelForSequenceClassification.from_pretrained(encoder, num_labels=len(AG_NEWS_LABELS))
    with tempfile.TemporaryDirectory() as tmp:
        training_args = TrainingArguments(
            output_dir=tmp,
            num_train_epochs=3,
            per_device_train_batch_size=32,
            per_device_eval_batch_size=64,
            warmup_steps=500,
            weight_decay=0.01,
            logging_steps=50,
            save_strategy="no",
            eval_strategy="no",  # evaluation draws no random numbers: training is the same without it
            report_to="none",
            use_cpu=True,
            seed=args.seed,
            disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=training_args, train_dataset=train,
                          data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer)
        started = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - started
        logits = trainer.predict(test.remove_columns(["label"])).predictions
    predicted = np.argmax(logits, axis=-1).tolist()
    metrics = compute_metrics(test_rows["label"].tolist(), predicted, AG_NEWS_LABELS)
    summary = {
        "accuracy": metrics["accuracy"],
        "f1_macro": metrics["f1_macro"],
        "train_loss": result.training_loss,
        "train_seconds": seconds,
        "train_rows": len(train),
        "test_rows": len(test_rows),
        "seed": args.seed,
    }
    print(f"tutorial recipe, default encoder, seed {args.seed}: test accuracy {summary['accuracy']:.4f}, "
          f"macro-F1 {summary['f1_macro']:.4f} ({len(test_rows)} rows); trained in {seconds:.0f} s")
    write_json(Path(args.json), {"machine": machine(), "summary": summary, "per_class": metrics["per_class"]})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
