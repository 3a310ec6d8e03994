"""Fine-tuning (headcls.training): what a run saves, reproducible runs, the recipe (label smoothing, a head
learning rate, layer-wise learning-rate decay, class weights), label shapes at training (multi-label, texts longer
than the encoder), checkpoints and --resume, and interrupted runs: SIGKILL then --resume ends where an uninterrupted
run ends; Ctrl-C saves a checkpoint; a run killed while writing its final folder leaves the previous folder in
place; a diverging run stops with its last good checkpoint.

A test whose docstring starts "Was:" pins down a case a new user hit (the hardening issue), and failed on the code
before its fix; tests/test_fuzz.py checks the rules behind them for every flag and many inputs."""

from __future__ import annotations

import json
import re
import shutil
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import (
    FILLER,
    GOOD,
    KEYWORDS,
    TOPICS,
    TRAINED,
    assert_one_line_error,
    long_texts,
    multi_rows,
    run,
    same_results,
    start_child,
    tiny_classifier,
    train_argv,
    wait_for_checkpoint,
    write,
)
from transformers import AutoTokenizer

from headcls.cli import main

# --- what a run saves -------------------------------------------------------------------------------------------

def test_output_folder_is_a_complete_hf_model_folder(trained_dir):
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "metrics.json",
        "confusion_matrix.png",
        "predictions.csv",
        "training_config.yaml",
        "README.md",
    ):
        assert (trained_dir / name).is_file(), name
    assert not list(trained_dir.glob("*.bin")), "no pickle files in the model folder"
    assert any((trained_dir / "runs").rglob("events.out.tfevents.*")), "TensorBoard logs"
    assert not trained_dir.with_name(trained_dir.name + ".checkpoints").exists(), "checkpoints cleaned up"
    config = json.loads((trained_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "business", "1": "science", "2": "sports"}


def test_plain_transformers_pipeline_returns_label_names(trained_dir):
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(trained_dir))
    results = classify(["the team scored a goal in the match", "bank shares and stock market profit"])
    assert [r["label"] for r in results] == ["sports", "business"]


def test_same_seed_gives_identical_predictions(tiny_model_dir, toy_data, tmp_path):
    probs = []
    for name in ("a", "b"):
        out = tmp_path / name
        argv = ["-q", "train", "--data", str(toy_data), "--model", str(tiny_model_dir), "--output", str(out),
                "--no-baseline", "--seed", "7", *TRAINED]
        assert main(argv) == 0
        probs.append(pd.read_csv(out / "predictions.csv")["score"].tolist())
    assert probs[0] == probs[1]


def test_evaluation_batches_follow_the_length_sorted_order(tmp_path, tiny_model_dir):
    """Stock group_by_length would shuffle a small evaluation set into random batches, padded to their longest."""
    import random

    from transformers import DataCollatorWithPadding

    from headcls.data.tokenize import tokenize
    from headcls.options.commands import TrainConfig
    from headcls.training.trainer import make_trainer, training_arguments

    rng = random.Random(0)
    words = ["market", "stock", "goal", "team", "space", "nasa", "the", "of"]
    frame = pd.DataFrame(
        {"text": [" ".join(rng.choices(words, k=rng.randint(1, 30))) for _ in range(100)], "label": ["a"] * 100}
    )
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    dataset = tokenize(frame, tokenizer, {"a": 0}, 64, sort_by_length=True)
    args = training_arguments(TrainConfig(eval_batch_size=8), tmp_path, bf16=False, warmup=0)
    trainer = make_trainer(model=tiny_classifier(tiny_model_dir), args=args, eval_dataset=dataset,
                           data_collator=DataCollatorWithPadding(tokenizer))
    widths = [batch["input_ids"].shape[1] for batch in trainer.get_eval_dataloader()]
    assert len(widths) == 13 and widths == sorted(widths) and widths[0] < widths[-1]


# --- the recipe ------------------------------------------------------------------------------------------------

def test_label_smoothing_matches_the_stock_label_smoother_and_the_formula():
    import torch
    from transformers.trainer_pt_utils import LabelSmoother

    from headcls.training.recipe import weighted_loss

    logits = 3 * torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 3, 1, 1, 2, 0])
    ours = weighted_loss(None, multi_label=False, label_smoothing=0.1)({"logits": logits}, labels,
                                                                       num_items_in_batch=6)
    stock = LabelSmoother(epsilon=0.1)({"logits": logits}, labels)
    log_p = torch.log_softmax(logits, dim=1)
    by_hand = -(0.9 * log_p[torch.arange(6), labels] + 0.1 * log_p.mean(dim=1)).mean()
    assert float(ours) == pytest.approx(float(stock), rel=1e-6)
    assert float(ours) == pytest.approx(float(by_hand), rel=1e-6)
    plain = weighted_loss(None, multi_label=False)({"logits": logits}, labels, num_items_in_batch=6)
    assert float(plain) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, labels)), rel=1e-6)
    assert abs(float(ours) - float(plain)) > 1e-3
    # With class weights too: each row's smoothed loss weighted by its class, over the step's rows.
    weights = [1.0, 2.0, 0.5, 3.0]
    both = weighted_loss(weights, multi_label=False, label_smoothing=0.1)({"logits": logits}, labels,
                                                                          num_items_in_batch=6)
    w = torch.tensor(weights)
    rows = -(0.9 * w[labels] * log_p[torch.arange(6), labels] + 0.1 * (w * log_p).mean(dim=1))
    assert float(both) == pytest.approx(float(rows.sum() / 6), rel=1e-6)
    # Multi-label: targets 1 and 0 move to 0.95 and 0.05.
    targets = torch.tensor([[1.0, 0.0, 0.0, 1.0]] * 6)
    ml = weighted_loss(None, multi_label=True, label_smoothing=0.1)({"logits": logits}, targets,
                                                                    num_items_in_batch=24)
    soft = torch.tensor([[0.95, 0.05, 0.05, 0.95]] * 6)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, soft)
    assert float(ml) == pytest.approx(float(expected), rel=1e-6)


def test_layer_decay_and_head_rate_give_each_parameter_its_peak_rate(tiny_model_dir, tmp_path):
    from transformers import TrainingArguments

    from headcls.modeling.loading import build_classifier
    from headcls.options.commands import TrainConfig
    from headcls.training.recipe import learning_rates, rate_summary, rates_said
    from headcls.training.trainer import make_trainer

    model = build_classifier(str(tiny_model_dir), ["a", "b", "c"])
    layers = model.config.num_hidden_layers
    cfg = TrainConfig(train_file="t.csv", learning_rate=1e-4, layer_lr_decay=0.5, head_learning_rate=1e-3)
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=cfg.learning_rate, weight_decay=0.01,
                             warmup_steps=2, use_cpu=True, report_to=[])
    trainer = make_trainer(rates=learning_rates(cfg, model), model=model, args=args)
    optimizer = trainer.create_optimizer()
    given = {id(p): (group["lr"], group["weight_decay"]) for group in optimizer.param_groups for p in group["params"]}
    names = dict(model.named_parameters())
    assert len(given) == len(names)  # every parameter, once
    for name, p in names.items():
        lr, decay = given[id(p)]
        if name.startswith("classifier."):
            expected = 1e-3
        elif ".embeddings." in name:
            expected = 1e-4 * 0.5**layers
        elif found := re.search(r"\.encoder\.layer\.(\d+)\.", name):
            expected = 1e-4 * 0.5 ** (layers - 1 - int(found.group(1)))
        else:
            assert ".pooler." in name
            expected = 1e-4
        assert lr == pytest.approx(expected), name
        assert decay == (0.0 if "bias" in name or "LayerNorm" in name else 0.01), name
    # The schedule scales every group alike: after warmup the rates keep their ratios.
    scheduler = trainer.create_scheduler(num_training_steps=10, optimizer=optimizer)
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    factor = {group["lr"] / group["initial_lr"] for group in optimizer.param_groups}
    assert len({round(f, 9) for f in factor}) == 1 and 0 < factor.pop() < 1
    summary = rate_summary(learning_rates(cfg, model), model)
    assert sorted(summary) == sorted(["head", *(f"layer {i}" for i in range(1, layers + 1)), "embeddings"])
    assert rates_said(dict(sorted(summary.items()))).startswith(f"head 0.001, layer {layers} 0.0001, ")
    # The default: one rate for all, the Trainer's own optimizer.
    assert learning_rates(TrainConfig(train_file="t.csv"), model) is None


def test_recipe_options_reach_the_run_and_its_records(tiny_model_dir, toy_data, tmp_path, capsys):
    def run(out, *flags):
        argv = ["train", "--data", str(toy_data), "--model", str(tiny_model_dir), "--output", str(out),
                "--epochs", "1", "--batch-size", "16", "--learning-rate", "3e-3", "--no-baseline", *flags]
        assert main(argv) == 0
        return json.loads((out / "metrics.json").read_text())

    plain = run(tmp_path / "plain")
    capsys.readouterr()
    tuned = run(tmp_path / "tuned", "--label-smoothing", "0.1", "--layer-lr-decay", "0.8",
                "--head-learning-rate", "5e-3")
    said = capsys.readouterr().out
    assert "Learning rates: head 0.005, layer 2 0.003, layer 1 0.0024, embeddings 0.00192" in said
    assert tuned["learning_rates"]["head"] == 5e-3 and tuned["label_smoothing"] == 0.1
    assert tuned["train_loss"] != plain["train_loss"]  # same seed, same batches: the loss and rates differ
    options = yaml.safe_load((tmp_path / "tuned" / "training_config.yaml").read_text())
    assert (options["label_smoothing"], options["layer_lr_decay"], options["head_learning_rate"]) == (0.1, 0.8, 5e-3)
    card = (tmp_path / "tuned" / "README.md").read_text()
    assert "Peak learning rates: head 0.005" in card and "Label smoothing 0.1." in card
    assert "learning_rates" not in plain and "Peak learning rates" not in (tmp_path / "plain" / "README.md").read_text()


def test_balanced_class_weights_change_the_loss_as_computed_by_hand(tmp_path):
    import torch

    from headcls.data.splits import Splits
    from headcls.options.commands import TrainConfig
    from headcls.training.recipe import class_weights, weighted_loss

    train = pd.DataFrame({"text": ["x"] * 8, "label": ["a"] * 6 + ["b"] * 2})
    splits = Splits(train, None, None, ["a", "b"], {})
    cfg = TrainConfig(train_file="t.csv", class_weights="balanced")
    weights = class_weights(cfg, splits)
    assert weights == [8 / (2 * 6), 8 / (2 * 2)]  # rows / (classes x rows of the class)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 0])
    loss = weighted_loss(weights, multi_label=False)({"logits": logits}, labels, num_items_in_batch=3)
    log_p = torch.log_softmax(logits, dim=1)
    by_hand = -(weights[0] * log_p[0, 0] + weights[1] * log_p[1, 1] + weights[0] * log_p[2, 0]) / 3
    assert float(loss) == pytest.approx(float(by_hand), rel=1e-6)
    plain = torch.nn.functional.cross_entropy(logits, labels)
    assert abs(float(loss) - float(plain)) > 0.01
    # Multi-label: pos_weight = rows without the label / rows with it.
    multi = Splits(pd.DataFrame({"text": ["x"] * 4, "label": [("a",), ("a", "b"), ("a",), ()]}), None, None,
                   ["a", "b"], {}, multi_label=True)
    pos = class_weights(cfg, multi)
    assert pos == [1 / 3, 3 / 1]
    targets = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    ml = weighted_loss(pos, multi_label=True)({"logits": logits[:2]}, targets, num_items_in_batch=4)
    x, y = logits[:2], targets
    w = torch.tensor(pos)
    cells = -(w * y * torch.nn.functional.logsigmoid(x) + (1 - y) * torch.nn.functional.logsigmoid(-x))
    assert float(ml) == pytest.approx(float(cells.sum() / 4), rel=1e-6)


def test_class_weights_from_a_file_are_used_and_recorded(tiny_model_dir, toy_data, tmp_path, capsys):
    weights = tmp_path / "weights.yaml"
    weights.write_text("sports: 1\nbusiness: 2.5\nscience: 1\n")
    out = tmp_path / "model"
    assert main(["train", "--data", str(toy_data), "--model", str(tiny_model_dir), "--output", str(out),
                 "--class-weights", str(weights), "--epochs", "1", "--batch-size", "16"]) == 0
    assert "business 2.5" in capsys.readouterr().out
    assert yaml.safe_load((out / "training_config.yaml").read_text())["class_weights"] == str(weights)
    assert "business: 2.5" in (out / "training_config.yaml").read_text()  # the weights used, as a comment
    assert "business 2.5" in (out / "README.md").read_text()
    assert json.loads((out / "metrics.json").read_text())["class_weights"]["business"] == 2.5
    # A file that leaves out a label, or names one the data lacks, is one line and exit 2.
    weights.write_text("sports: 1\nbusiness: 2\n")
    assert main(["-q", "train", "--data", str(toy_data), "--model", str(tiny_model_dir), "--output",
                 str(tmp_path / "m2"), "--class-weights", str(weights)]) == 2
    assert "no weight for label 'science'" in capsys.readouterr().err
    # A number too large for a float, and one label named twice (1 and "1"), are one line too.
    for text, message in (("sports: 1\nbusiness: 2\nscience: 1" + "0" * 400 + "\n",
                           "the weight of 'science' must be a positive number"),
                          ("sports: 1\nbusiness: 2\nscience: 1\n1: 1\n'1': 2\n", "label '1' is named twice")):
        weights.write_text(text)
        assert main(["-q", "train", "--data", str(toy_data), "--model", str(tiny_model_dir), "--output",
                     str(tmp_path / "m2"), "--class-weights", str(weights)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


# --- label shapes at training: multi-label data, texts longer than the encoder ------------------------------------

def test_multi_label_from_a_list_column_trains_a_sigmoid_head(multi_model):
    config = json.loads((multi_model / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert sorted(config["id2label"].values()) == sorted(TOPICS)
    metrics = json.loads((multi_model / "metrics.json").read_text())
    assert metrics["multi_label"] is True
    for key in ("f1_micro", "f1_macro", "subset_accuracy", "hamming_loss"):
        assert key in metrics
    assert set(metrics["per_class"]) == set(TOPICS)
    assert sum(m["support"] for m in metrics["per_class"].values()) == sum(
        len(labels) for labels in multi_rows(70, seed=2)["label"])
    print(f"tiny multi-label model: micro-F1 {metrics['f1_micro']:.3f}, subset accuracy {metrics['accuracy']:.3f}")
    assert metrics["f1_micro"] > 0.9, metrics  # keywords per topic: learnable; a broken head stays near 0.5
    assert (multi_model / "per_label.png").stat().st_size > 1000
    predictions = pd.read_csv(multi_model / "predictions.csv")
    assert json.loads(predictions["label"][0]) == multi_rows(70, seed=2)["label"][0]
    assert "class 'list'" not in (multi_model / "README.md").read_text()
    assert "Multi-label" in (multi_model / "README.md").read_text()


def test_multi_label_from_a_separated_string_column(tiny_model_dir, tmp_path):
    from headcls.inference.classifier import Classifier

    for split, n, seed in (("train", 140, 3), ("test", 35, 4)):
        frame = multi_rows(n, seed)
        frame["label"] = [" | ".join(labels) for labels in frame["label"]]  # spaces around: stripped
        frame.to_csv(tmp_path / f"{split}.csv", index=False)
    out = tmp_path / "model"
    assert main(["-q", "train", "--data", str(tmp_path), "--model", str(tiny_model_dir), "--output", str(out),
                 "--label-separator", "|", "--epochs", "2", "--batch-size", "16", "--warmup-steps", "0"]) == 0
    clf = Classifier.from_pretrained(out)
    assert clf.multi_label and sorted(clf.labels) == sorted(TOPICS)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_examples"] == 35 and metrics["multi_label"]
    # Without the separator the same file is one label per row: "business | sports" is a class of its own.
    assert main(["-q", "evaluate", "--model", str(out), "--test-file", str(tmp_path / "test.csv"),
                 "--output", str(tmp_path / "eval")]) == 2


def test_texts_longer_than_the_model_train_and_evaluate_per_text(tiny_model_dir, toy_data, tmp_path):
    for mode in ("chunks", "head-tail"):
        out = tmp_path / mode
        folder = tmp_path / f"data-{mode}"
        folder.mkdir()
        for split, n, seed in (("train", 90, 7), ("test", 30, 8)):
            frame = pd.DataFrame({"text": long_texts(n, seed)})
            frame["label"] = [max(KEYWORDS, key=lambda t: sum(w in KEYWORDS[t] for w in text.split()))
                              for text in frame["text"]]
            frame.to_csv(folder / f"{split}.csv", index=False)
        flags = ["--long-text", mode, "--max-length", "16"] + (["--pooling", "max"] if mode == "chunks" else [])
        assert main(["-q", "train", "--data", str(folder), "--model", str(tiny_model_dir), "--output", str(out),
                     "--epochs", "1", "--batch-size", "16", *flags]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["num_examples"] == 30  # per text, never per window
        assert len(pd.read_csv(out / "predictions.csv")) == 30
        saved = json.loads((out / "config.json").read_text())["headcls"]["long_text"]
        assert saved["mode"] == mode and (saved["pooling"] == "max" or mode != "chunks")
        assert mode in (out / "README.md").read_text()
        # The validation the Trainer logged is per text too: its rows are the held-out texts.
        assert metrics["validation"], metrics


# --- checkpoints and --resume ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def killed_run(tmp_path_factory, tiny_model_dir, toy_data) -> Path:
    """The first checkpoint of a run (train_argv) killed with SIGKILL once it had saved one. The tests that only
    need an interrupted run to --resume copy its checkpoints (`interrupted_run`): one child run for them all. The
    tests of the kill itself interrupt runs of their own."""
    out = tmp_path_factory.mktemp("killed") / "model"
    proc = start_child(train_argv(toy_data, tiny_model_dir, out))
    checkpoint = wait_for_checkpoint(out.with_name("model.checkpoints"), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return checkpoint


def interrupted_run(killed_run: Path, out: Path) -> Path:
    """`killed_run`'s checkpoints copied to where a run to `out` keeps them; its first checkpoint there."""
    checkpoints = out.with_name(out.name + ".checkpoints")
    shutil.copytree(killed_run.parent, checkpoints)
    return checkpoints / killed_run.name


def test_resume_without_checkpoint(tmp_path, tiny_model_dir, capsys):
    code, err = run(["train", "--train-file", write(tmp_path, "t.csv", GOOD), "--model", str(tiny_model_dir),
                     "--output", str(tmp_path / "out"), "--resume"], capsys)
    assert_one_line_error(code, err, "--resume: no checkpoint in")


@pytest.mark.parametrize("renamed, now", [
    ({"science": "tech"}, "business, sports, tech"),  # was: resumed silently with the old label names
    ({"science": "tech", "sports": ["sports", "golf"]}, "business, golf, sports, tech"),  # was: a traceback
])
def test_resume_after_the_labels_changed(renamed, now, tmp_path, tiny_model_dir, toy_data, capsys, killed_run):
    """Was: --resume after the training data's labels changed ended in a traceback, or went on under the old
    label names."""
    out = tmp_path / "model"
    interrupted_run(killed_run, out)  # a run of train_argv killed after its first checkpoint
    changed = tmp_path / "data"
    changed.mkdir()
    rows = pd.read_csv(toy_data / "train.csv")
    for old, new in renamed.items():
        names = [new] if isinstance(new, str) else new
        where = rows.index[rows["label"] == old]
        rows.loc[where, "label"] = [names[i % len(names)] for i in range(len(where))]
    rows.to_csv(changed / "train.csv", index=False)
    code, err = run(train_argv(changed, tiny_model_dir, out, "--resume"), capsys)
    assert_one_line_error(code, err, f"was trained on labels business, science, sports, but the training data now "
                                     f"has {now}; start over with --overwrite")


def test_resume_needs_the_same_encoder_and_epochs_left(tmp_path, tiny_model_dir, toy_data, capsys, killed_run):
    from headcls.testing import tiny_bert

    out = tmp_path / "model"
    checkpoint = interrupted_run(killed_run, out)  # a run of train_argv killed after its first checkpoint
    words = [w for ws in KEYWORDS.values() for w in ws] + FILLER + ["unseen", "words"]  # conftest's vocabulary
    other = tiny_bert(tmp_path / "other", words, max_positions=128)
    code, err = run(train_argv(toy_data, other, out, "--resume"), capsys)
    assert_one_line_error(code, err, "was trained from another encoder (max_position_embeddings 64 against 128)")
    done = json.loads((checkpoint / "trainer_state.json").read_text())["epoch"]
    code, err = run(train_argv(toy_data, tiny_model_dir, out, "--resume", "--epochs", str(done / 2)), capsys)
    assert_one_line_error(code, err, f"is at epoch {done:g}, past --epochs {done / 2:g}; nothing is left to train")


def test_resume_with_other_learning_rates_refuses_and_with_the_same_continues(tiny_model_dir, toy_data, tmp_path,
                                                                              capsys):
    """The optimizer's saved state holds one group per rate: a resume with other rates would not fit it."""
    out = tmp_path / "model"
    epochs = ["--epochs", "4"]  # killed after its first: a resume has 3 to train, enough to see it continue
    proc = start_child(train_argv(toy_data, tiny_model_dir, out, *epochs, "--layer-lr-decay", "0.8"))
    wait_for_checkpoint(out.with_name("model.checkpoints"), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    code, err = run(train_argv(toy_data, tiny_model_dir, out, *epochs, "--resume"), capsys)
    assert_one_line_error(code, err, "trained with learning rates head 0.003, layer 2 0.003, layer 1 0.0024, "
                                     "embeddings 0.00192, this run one rate for all; give the interrupted run's")
    assert main(train_argv(toy_data, tiny_model_dir, out, *epochs, "--resume", "--layer-lr-decay", "0.8")) == 0
    assert json.loads((out / "metrics.json").read_text())["learning_rates"]["layer 1"] == pytest.approx(0.0024)


# --- interrupted runs: SIGKILL, Ctrl-C, a kill while writing the final folder ----------------------------------

def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, tiny_model_dir, toy_data, trained_dir):
    out = tmp_path / "model"
    checkpoints = out.with_name("model.checkpoints")
    proc = start_child(train_argv(toy_data, tiny_model_dir, out, "--no-baseline"))
    first = wait_for_checkpoint(checkpoints, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "a killed run leaves no output folder"
    assert first.is_dir()

    assert main(train_argv(toy_data, tiny_model_dir, out, "--no-baseline", "--resume")) == 0
    same_results(out, trained_dir)  # trained_dir: the same command, never interrupted
    assert not checkpoints.exists()


def test_incomplete_checkpoint_is_skipped_on_resume(tmp_path, tiny_model_dir, toy_data, trained_dir):
    out = tmp_path / "model"
    checkpoints = out.with_name("model.checkpoints")
    proc = start_child(train_argv(toy_data, tiny_model_dir, out, "--no-baseline"))
    wait_for_checkpoint(checkpoints, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    newest = max(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    cut = checkpoints / f"checkpoint-{int(newest.name.split('-')[1]) + 10_000}"
    shutil.copytree(newest, cut)
    (cut / "trainer_state.json").unlink()  # as if killed while the Trainer was saving it

    assert main(train_argv(toy_data, tiny_model_dir, out, "--no-baseline", "--resume")) == 0
    same_results(out, trained_dir)


def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path, tiny_model_dir, toy_data, trained_dir):
    out = tmp_path / "model"
    checkpoints = out.with_name("model.checkpoints")
    proc = start_child(train_argv(toy_data, tiny_model_dir, out))
    first = wait_for_checkpoint(checkpoints, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "add --resume to the same command to continue" in err
    assert not out.exists()
    steps = [json.loads(p.read_text())["global_step"] for p in checkpoints.glob("checkpoint-*/trainer_state.json")]
    assert max(steps) > int(first.name.split("-")[1]), "a checkpoint saved at the interrupt"

    code = main(train_argv(toy_data, tiny_model_dir, out))
    assert code == 2, "an unfinished run is not silently discarded"
    assert main(train_argv(toy_data, tiny_model_dir, out, "--resume")) == 0
    same_results(out, trained_dir)  # resumed mid-epoch: no batch skipped or repeated


def test_kill_while_writing_the_final_folder_keeps_the_previous_one(tmp_path, tiny_model_dir, toy_data, trained_dir):
    from transformers import pipeline

    out = tmp_path / "model"
    shutil.copytree(trained_dir, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    argv = train_argv(toy_data, tiny_model_dir, out, "--overwrite", "--seed", "3", "--epochs", "1")  # any run will do
    proc = start_child(argv, "--kill-in-final-write", "--step-seconds", "0")  # killed on cue: no need to slow it
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert pipeline("text-classification", model=str(out))("goal goal goal")[0]["label"] == "sports"
    assert list(tmp_path.glob(".model.staging-*")), "the killed run's staging folder is what is left"

    assert main(argv) == 0
    assert not list(tmp_path.glob(".model.staging-*")), "stale staging folders are cleaned up"
    assert (out / "metrics.json").read_bytes() != before["metrics.json"]


# --- diverging runs ----------------------------------------------------------------------------------------------

def poison_after_first_checkpoint(monkeypatch) -> None:
    """Every weight turns NaN once the first checkpoint is saved, as a diverging run's would."""
    import torch
    import transformers

    save = transformers.Trainer._save_checkpoint

    def save_then_poison(self, model, trial):
        result = save(self, model, trial)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.fill_(float("nan"))
        return result

    monkeypatch.setattr(transformers.Trainer, "_save_checkpoint", save_then_poison)


def test_a_diverging_run_stops_keeps_the_last_good_checkpoint_and_saves_nothing(tmp_path, tiny_model_dir, toy_data,
                                                                                 capsys, monkeypatch):
    """A finite but huge step still diverges: the run stops at the first NaN/inf loss with a clear error, and the
    checkpoint saved before it stays (finite), the output is never written."""
    out = tmp_path / "model"
    poison_after_first_checkpoint(monkeypatch)
    code, err = run(train_argv(toy_data, tiny_model_dir, out, "--epochs", "3"), capsys)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("headcls: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "the training loss became nan at step" in lines[0] and "No model was saved" in lines[0], lines[0]
    assert "the last good checkpoint is" in lines[0], lines[0]
    assert not out.exists()
    [checkpoint] = out.with_name("model.checkpoints").glob("checkpoint-*")
    from safetensors.numpy import load_file

    weights = load_file(checkpoint / "model.safetensors")
    assert all(np.isfinite(w).all() for w in weights.values()), "the kept checkpoint is a good one"


def test_a_diverged_start_leaves_nothing_that_blocks_a_rerun(tmp_path, tiny_model_dir, toy_data, capsys):
    """A NaN before the first checkpoint: the error starts its own line (not after a progress bar), and the same
    command with a sane learning rate simply runs again, without --overwrite or --resume."""
    out = tmp_path / "model"
    argv = ["train", "--data", str(toy_data), "--model", str(tiny_model_dir), "--output", str(out),
            "--learning-rate", "1e30", "--epochs", "1", "--no-baseline"]
    code, err = run(argv, capsys)  # in-process: the progress bar goes to the captured stderr as to a pipe
    assert code == 2, err
    assert any(line.startswith("headcls: error: the training loss became") for line in err.splitlines())
    assert "no checkpoint had been saved" in err
    assert not out.with_name("model.checkpoints").exists()
    code, err = run([*argv[:-5], "--epochs", "1", "--no-baseline", "-q"], capsys)
    assert code == 0, err
