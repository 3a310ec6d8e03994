"""The exact speed-ups of headcls.fast: same logits and gradients with a [CLS]-only last layer, and fast dropout
masks that drop at the asked rate, keep the expected value, and are reproducible."""

from __future__ import annotations

import copy
import logging

import pandas as pd
import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

from headcls.modeling import fast
from headcls.modeling.fast import CLS_HEAD_MODEL_TYPES, cls_only_last_layer, cpu_dropout

TEXTS = ["market stock profit", "the match of the season in the league today", "space", "nasa chip research week"]


def tiny_classifier(folder, attention: str = "eager", dropout: float = 0.0):
    torch.manual_seed(3)
    return AutoModelForSequenceClassification.from_pretrained(
        folder, num_labels=3, attn_implementation=attention,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
    )


def tiny_random_classifier(model_type: str, attention: str):
    """A 2-layer, 32-wide random sequence classifier of the type, built from its config (no download)."""
    config = AutoConfig.for_model(
        model_type, vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=3,
        **({"embedding_size": 16} if model_type == "electra" else {}),  # its projection into the encoder too
    )
    torch.manual_seed(3)
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation=attention)
    assert model.config._attn_implementation == attention
    return model


def padded_batch(pad: int):
    torch.manual_seed(4)
    lengths = [9, 3, 6, 1]
    ids = torch.full((len(lengths), max(lengths)), pad)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(3, 60, (n,))
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("model_type", CLS_HEAD_MODEL_TYPES)
def test_cls_only_last_layer_keeps_logits_and_gradients(model_type, attention, caplog):
    full = tiny_random_classifier(model_type, attention)
    patched = copy.deepcopy(full)
    with caplog.at_level(logging.INFO, logger="headcls.modeling.fast"):
        assert cls_only_last_layer(patched)
    assert caplog.messages == [f"fast path cls-only-last-layer: applied ({model_type})"]
    batch, labels = padded_batch(full.config.pad_token_id), torch.tensor([0, 1, 2, 2])
    results = []
    for model in (full, patched):
        model.train()  # dropout 0: training mode, deterministic
        out = model(**batch, labels=labels)
        out.loss.backward()
        results.append((out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (full_logits, full_grads), (fast_logits, fast_grads) = results
    torch.testing.assert_close(fast_logits, full_logits, atol=1e-5, rtol=1e-5)
    assert full_grads.keys() == fast_grads.keys()
    for name in full_grads:
        torch.testing.assert_close(fast_grads[name], full_grads[name], atol=1e-5, rtol=1e-4, msg=name)
    # The last layer's unused outputs are really skipped: its feed-forward sees one position per row.
    seen = []
    patched.base_model.encoder.layer[-1].intermediate.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    patched(**batch)
    assert seen == [torch.Size([4, 1, 37])]
    assert full.state_dict().keys() == patched.state_dict().keys(), "saved weights keep their stock names"


def test_cls_only_last_layer_from_a_saved_folder(tiny_model_dir):
    """The way headcls loads models: from_pretrained, a real tokenizer's padded batch."""
    batch = AutoTokenizer.from_pretrained(tiny_model_dir)(TEXTS, padding=True, return_tensors="pt")
    assert batch["attention_mask"].min() == 0
    full, patched = tiny_classifier(tiny_model_dir), tiny_classifier(tiny_model_dir)
    assert cls_only_last_layer(patched)
    torch.testing.assert_close(patched(**batch).logits, full(**batch).logits, atol=1e-5, rtol=1e-5)


def is_stock(model) -> bool:
    return all("forward" not in vars(layer) for layer in model.base_model.encoder.layer)


def test_cls_only_last_layer_leaves_other_models_alone(caplog):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig(vocab_size=50, dim=32, n_layers=1, n_heads=4, hidden_dim=37, max_position_embeddings=16)
    model = DistilBertForSequenceClassification(config)
    with caplog.at_level(logging.INFO, logger="headcls.modeling.fast"):
        assert not cls_only_last_layer(model)
    assert model(input_ids=torch.tensor([[1, 2, 3]])).logits.shape == (1, 2)
    token_classifier = AutoModelForTokenClassification.from_config(tiny_random_classifier("bert", "eager").config)
    flex = tiny_random_classifier("bert", "eager")
    flex.config._attn_implementation = "flex_attention"
    decoder = tiny_random_classifier("bert", "eager")
    decoder.config.is_decoder = True
    with caplog.at_level(logging.INFO, logger="headcls.modeling.fast"):
        for other in (token_classifier, flex, decoder):
            assert not cls_only_last_layer(other) and is_stock(other)
    assert caplog.messages == [
        "fast path cls-only-last-layer: not applied: model type distilbert is not one it was verified for",
        "fast path cls-only-last-layer: not applied: BertForTokenClassification is not a sequence classifier",
        "fast path cls-only-last-layer: not applied: attention flex_attention is not one it was verified for",
        "fast path cls-only-last-layer: not applied: the model is a decoder",
    ]


def test_cls_only_last_layer_off_or_outside_the_verified_versions(monkeypatch, caplog):
    model = tiny_random_classifier("bert", "eager")
    monkeypatch.setattr(fast, "_installed_version", lambda package: {"transformers": "5.99.0"}.get(package, "0"))
    with caplog.at_level(logging.INFO, logger="headcls.modeling.fast"):
        assert not cls_only_last_layer(model)
        assert not cls_only_last_layer(model, enabled=False)
    assert is_stock(model)
    assert caplog.messages == [
        "fast path cls-only-last-layer: not applied: transformers 5.99.0 is outside the verified range "
        + fast.VERIFIED_TRANSFORMERS,
        "fast path cls-only-last-layer: off (--no-fast-paths)",
    ]


def test_the_installed_versions_are_verified():
    """Where this fails, run these tests under the new version and widen the range in headcls.fast if they pass."""
    from packaging.specifiers import SpecifierSet

    assert SpecifierSet(fast.VERIFIED_TRANSFORMERS).contains(fast._installed_version("transformers"))
    assert SpecifierSet(fast.VERIFIED_TORCH).contains(fast._installed_version("torch"))


def test_cpu_dropout_rate_scale_and_reproducibility():
    x = torch.ones(1000, 1000, requires_grad=True)
    original = torch.nn.functional.dropout
    with cpu_dropout():
        assert torch.nn.functional.dropout is not original
        torch.manual_seed(0)
        y = torch.nn.functional.dropout(x, p=0.1, training=True)
        torch.manual_seed(0)
        again = torch.nn.functional.dropout(x, p=0.1, training=True)
        other = torch.nn.functional.dropout(x, p=0.1, training=True)
        assert torch.equal(torch.nn.functional.dropout(x, p=0.1, training=False), x)
        module = torch.nn.Dropout(0.3).train()
        module_out = module(torch.ones(500, 1000))
    assert torch.nn.functional.dropout is original
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.1) < 0.003
    assert abs((module_out == 0).float().mean().item() - 0.3) < 0.004
    assert torch.allclose(y[y != 0], torch.tensor(1 / 0.9))
    assert abs(y.mean().item() - 1.0) < 0.005  # the expected value is kept
    assert torch.equal(y, again) and not torch.equal(y, other)
    y.sum().backward()
    assert torch.equal(x.grad, y.detach()), "the gradient is the same mask and scale"


def test_cpu_dropout_in_bf16_and_in_place():
    with cpu_dropout():
        h = torch.ones(64, 64, dtype=torch.bfloat16)
        out = torch.nn.functional.dropout(h, p=0.5, training=True)
        assert out.dtype == torch.bfloat16
        assert set(out.unique().tolist()) == {0.0, 2.0}
        inplace = torch.ones(64, 64)
        result = torch.nn.functional.dropout(inplace, p=0.5, training=True, inplace=True)
        assert result.data_ptr() == inplace.data_ptr() and (inplace == 0).any()


def test_cpu_dropout_off_outside_the_verified_versions_and_after_an_error(monkeypatch, caplog):
    original = torch.nn.functional.dropout
    with caplog.at_level(logging.INFO, logger="headcls.modeling.fast"):
        with cpu_dropout(enabled=False):
            assert torch.nn.functional.dropout is original
        with pytest.raises(ValueError), cpu_dropout():
            assert torch.nn.functional.dropout is not original
            raise ValueError
        assert torch.nn.functional.dropout is original
        monkeypatch.setattr(fast, "_installed_version", lambda package: {"torch": "2.99.0"}.get(package, "0"))
        with cpu_dropout():
            assert torch.nn.functional.dropout is original
    assert caplog.messages == [
        "fast path cpu-dropout: off (--no-fast-paths)",
        "fast path cpu-dropout: applied (CPU tensors)",
        f"fast path cpu-dropout: not applied: torch 2.99.0 is outside the verified range {fast.VERIFIED_TORCH}",
    ]


def test_evaluation_batches_follow_the_length_sorted_order(tmp_path, tiny_model_dir):
    """Stock group_by_length would shuffle a small evaluation set into random batches, padded to their longest."""
    import random

    from transformers import DataCollatorWithPadding

    from headcls.options.commands import TrainConfig
    from headcls.data.tokenize import tokenize
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
