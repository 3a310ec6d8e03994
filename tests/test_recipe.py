"""Recipe options of `headcls train`: label smoothing, a head learning rate, layer-wise learning-rate decay."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from headcls.cli import main


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

    from headcls.options.commands import TrainConfig
    from headcls.modeling.loading import build_classifier
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


@pytest.mark.parametrize("flag", [["--layer-lr-decay", "0"], ["--layer-lr-decay", "1.5"],
                                  ["--label-smoothing", "1"], ["--head-learning-rate", "-1"]])
def test_recipe_options_out_of_range_are_one_line_and_exit_2(flag, toy_data, tmp_path, capsys):
    assert main(["-q", "train", "--data", str(toy_data), "--output", str(tmp_path / "m"), *flag]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag[0] in err


def test_resume_with_other_learning_rates_refuses_and_with_the_same_continues(tiny_model_dir, toy_data, tmp_path,
                                                                              capsys):
    """The optimizer's saved state holds one group per rate: a resume with other rates would not fit it."""
    import signal

    from test_bad_input import assert_one_line_error, run
    from test_reliability import start_child, train_argv, wait_for_checkpoint

    out = tmp_path / "model"
    proc = start_child(train_argv(toy_data, tiny_model_dir, out, "--layer-lr-decay", "0.8"))
    wait_for_checkpoint(out.with_name("model.checkpoints"), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    code, err = run(train_argv(toy_data, tiny_model_dir, out, "--resume"), capsys)
    assert_one_line_error(code, err, "trained with learning rates head 0.003, layer 2 0.003, layer 1 0.0024, "
                                     "embeddings 0.00192, this run one rate for all; give the interrupted run's")
    assert main(train_argv(toy_data, tiny_model_dir, out, "--resume", "--layer-lr-decay", "0.8")) == 0
    assert json.loads((out / "metrics.json").read_text())["learning_rates"]["layer 1"] == pytest.approx(0.0024)
