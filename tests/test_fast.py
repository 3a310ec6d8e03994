"""The exact speed-ups of headcls.fast: same logits and gradients with a [CLS]-only last layer, and fast dropout
masks that drop at the asked rate, keep the expected value, and are reproducible."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from headcls.fast import cls_only_last_layer, cpu_dropout

TEXTS = ["market stock profit", "the match of the season in the league today", "space", "nasa chip research week"]


def tiny_classifier(folder, attention: str = "eager", dropout: float = 0.0):
    torch.manual_seed(3)
    return AutoModelForSequenceClassification.from_pretrained(
        folder, num_labels=3, attn_implementation=attention,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
    )


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_cls_only_last_layer_keeps_logits_and_gradients(tiny_model_dir, attention):
    batch = AutoTokenizer.from_pretrained(tiny_model_dir)(TEXTS, padding=True, return_tensors="pt")
    assert batch["attention_mask"].min() == 0, "the batch has padding, so the mask slicing is exercised"
    labels = torch.tensor([0, 1, 2, 2])
    full, fast = tiny_classifier(tiny_model_dir, attention), tiny_classifier(tiny_model_dir, attention)
    assert cls_only_last_layer(fast)
    results = []
    for model in (full, fast):
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
    fast.bert.encoder.layer[-1].intermediate.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    fast(**batch)
    assert seen == [torch.Size([4, 1, 37])]
    assert full.state_dict().keys() == fast.state_dict().keys(), "saved weights keep their stock names"


def test_cls_only_last_layer_leaves_other_models_alone():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig(vocab_size=50, dim=32, n_layers=1, n_heads=4, hidden_dim=37, max_position_embeddings=16)
    model = DistilBertForSequenceClassification(config)
    assert not cls_only_last_layer(model)
    assert model(input_ids=torch.tensor([[1, 2, 3]])).logits.shape == (1, 2)


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


def test_evaluation_batches_follow_the_length_sorted_order(tmp_path, tiny_model_dir):
    """Stock group_by_length would shuffle a small evaluation set into random batches, padded to their longest."""
    import random

    from transformers import DataCollatorWithPadding

    from headcls.config import TrainConfig
    from headcls.data import tokenize
    from headcls.train import make_trainer, training_arguments

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
