"""Models on disk and in memory (headcls.modeling): the saved folder's checks (weights, config, tokenizer, labels,
corrupt files as one line naming the file), loading encoders and trained classifiers, and the exact fast paths:
same logits and gradients with a [CLS]-only last layer, and fast dropout masks that drop at the asked rate, keep
the expected value, and are reproducible.

A test whose docstring starts "Was:" pins down a case a new user hit (the hardening issue), and failed on the code
before its fix; tests/test_fuzz.py checks the rules behind them for every flag and many inputs."""

from __future__ import annotations

import copy
import logging
import shutil

import pytest
import torch
from helpers import GOOD, assert_one_line_error, run, tiny_classifier, toy_rows, write
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

from headcls.modeling import fast
from headcls.modeling.fast import CLS_HEAD_MODEL_TYPES, cls_only_last_layer, cpu_dropout

# --- the fast paths ----------------------------------------------------------------------------------------------

TEXTS = ["market stock profit", "the match of the season in the league today", "space", "nasa chip research week"]


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
    """Where this fails, run these tests under the new version and widen the range in headcls.modeling.fast if they
    pass."""
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


# --- the saved folder: what a model folder must hold ----------------------------------------------------------------

def test_model_folder_without_weights(tmp_path, tiny_model_dir, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").unlink()
    code, err = run(["train", "--train-file", write(tmp_path, "t.csv", GOOD), "--model", str(broken)], capsys)
    assert_one_line_error(code, err, "broken: no model weights (model.safetensors) in the folder")


def test_pickle_weights_are_refused(tmp_path, tiny_model_dir, capsys):
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    code, err = run(["predict", "--model", str(pickled), "some text"], capsys)
    assert_one_line_error(code, err, "holds only pickle weights (pytorch_model.bin), which can run code when loaded")


def test_model_folder_without_config(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    code, err = run(["predict", "--model", str(tmp_path / "m"), "text"], capsys)
    assert_one_line_error(code, err, "m: no config.json; not a Hugging Face model folder")


def test_model_config_that_does_not_match_weights(tmp_path, trained_dir, capsys):
    import json

    broken = tmp_path / "mismatch"
    shutil.copytree(trained_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    config["hidden_size"] = 48
    config["num_attention_heads"] = 4
    (broken / "config.json").write_text(json.dumps(config))
    code, err = run(["predict", "--model", str(broken), "text"], capsys)
    assert_one_line_error(code, err, "mismatch: config.json does not match model.safetensors")


def test_a_model_folder_without_its_tokenizer_is_refused(trained_dir, tmp_path, capsys):
    """Without tokenizer files transformers builds an empty default tokenizer: every word [UNK], one label for all."""
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(trained_dir / name, bare / name)
    for argv in (["predict", "--model", str(bare), "goal"], ["export", "--model", str(bare), "--output",
                                                                   str(tmp_path / "x")]):
        code, err = run(argv, capsys)
        assert_one_line_error(code, err, f"{bare}: no tokenizer (tokenizer.json or a vocabulary file)")


# --- corrupt or inconsistent files are one line naming the file ------------------------------------------------------

@pytest.fixture(scope="module")
def onnx_dir(exported_dirs):
    """`headcls export` of the trained model (fp32), as the session exported it."""
    return exported_dirs["fp32"]


@pytest.mark.parametrize(
    "kind, file, damage, expected",
    [
        ("torch", "tokenizer.json", b"{not json", "cannot load its tokenizer"),
        ("torch", "model.safetensors", b"\x00" * 64, "the weights do not load"),
        ("torch", "config.json", b'{"model_type": "bert", "id2label": {"0": "a", "2": "b"}}',
         "config.json: id2label has no label for id 1; ids must run 0..1"),
        ("torch", "config.json", b'{"model_type": "bert", "id2label": {"0": "a", "1": "b", "3": "c"}}',
         "config.json: id2label has no label for id 2; ids must run 0..2"),
        ("torch", "config.json", b"[1, 2]", "config.json: holds a JSON list, not an object"),
        ("onnx", "model.onnx", b"garbage", "model.onnx: not a loadable ONNX model"),
        ("onnx", "tokenizer.json", b"{}", "tokenizer.json: not a readable tokenizer"),
        ("onnx", "tokenizer_config.json", b"\xff\xfe", "tokenizer_config.json: not valid JSON"),
    ],
)
def test_corrupt_model_files(kind, file, damage, expected, trained_dir, onnx_dir, tmp_path, capsys):
    """Was: a traceback for a corrupt tokenizer.json, model.safetensors or model.onnx, or an id2label with a gap."""
    broken = tmp_path / "broken"
    shutil.copytree(trained_dir if kind == "torch" else onnx_dir, broken)
    (broken / file).write_bytes(damage)
    code, err = run(["predict", "--model", str(broken), "goal"], capsys)
    assert_one_line_error(code, err, expected)
    assert str(broken) in err


# --- loading: an encoder is not a classifier, and its limits hold ---------------------------------------------------

def test_a_bare_encoder_is_not_a_classifier(tiny_model_dir, capsys):
    """An encoder folder has no trained head: predicting with it would give noise, so it is refused."""
    code, err = run(["predict", "--model", str(tiny_model_dir), "goal"], capsys)
    assert_one_line_error(code, err, "the weights lack classifier.")


@pytest.mark.parametrize("value, expected", [("2", "the tokenizer adds 2 special tokens; use at least 3"),
                                             ("65", "the encoder has 64 positions; use at most 64")])
def test_max_length_out_of_the_encoders_range(value, expected, tiny_model_dir, tmp_path, capsys):
    """Was: --max-length below the special tokens or above the encoder's positions ended in a traceback (texts
    longer than the encoder's 64 positions: a tensor-size error in the middle of training)."""
    long = toy_rows(60, seed=3)
    long["text"] = (long["text"] + " ") * 12  # 84 words: past the 64 positions when not cut to them
    long.to_csv(tmp_path / "train.csv", index=False)
    out = tmp_path / "out"
    code, err = run(["train", "--train-file", str(tmp_path / "train.csv"), "--model", str(tiny_model_dir),
                     "--output", str(out), "--max-length", value, "--no-baseline"], capsys)
    assert_one_line_error(code, err, f"--max-length {value}: {expected}")
    assert not out.with_name("out.checkpoints").exists(), "refused before training"
