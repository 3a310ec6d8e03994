"""Label shapes beyond one label per row: multi-label data, texts longer than the encoder, class weights.

Tiny random BERTs on toy corpora whose topics have their own keywords: the real code paths (the CLI, the Trainer,
the saved folder, `transformers.pipeline`), in seconds.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import FILLER, KEYWORDS, TINY_TRAIN

from headcls.cli import main

TOPICS = list(KEYWORDS)


def multi_rows(n: int, seed: int) -> pd.DataFrame:
    """Rows with one or two topics each (and a few with none): the keywords of each of its topics, and filler."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        kind = i % 7
        topics = [] if kind == 6 else [TOPICS[kind % 3]] if kind < 3 else rng.sample(TOPICS, 2)
        words = [w for t in topics for w in rng.sample(KEYWORDS[t], 2)] + rng.sample(FILLER, 3)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": sorted(topics)})
    return pd.DataFrame(rows)


def write_jsonl(frame: pd.DataFrame, path) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in frame.to_dict("records")), encoding="utf-8")


@pytest.fixture(scope="module")
def multi_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multi-data")
    write_jsonl(multi_rows(280, seed=1), folder / "train.jsonl")
    write_jsonl(multi_rows(70, seed=2), folder / "test.jsonl")
    return folder


@pytest.fixture(scope="module")
def multi_model(tmp_path_factory, tiny_model_dir, multi_data):
    out = tmp_path_factory.mktemp("multi") / "model"
    argv = ["-q", "train", "--data", str(multi_data), "--model", str(tiny_model_dir), "--output", str(out),
            "--tune-thresholds", *TINY_TRAIN]
    assert main(argv) == 0
    return out


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


def test_a_plain_pipeline_applies_a_sigmoid_to_a_multi_label_model(multi_model):
    from transformers import pipeline

    from headcls.inference.classifier import Classifier

    held_out = multi_rows(70, seed=2)
    two = held_out[held_out["label"].map(len) == 2].iloc[0]  # a row like those it trained on, of two topics
    text = two["text"]
    classify = pipeline("text-classification", model=str(multi_model), top_k=None)
    scores = {r["label"]: r["score"] for r in classify([text])[0]}
    assert sum(scores.values()) > 1.2  # independent sigmoids, not a softmax summing to 1
    clf = Classifier.from_pretrained(multi_model, backend="torch", precision="fp32")
    expected = dict(zip(clf.labels, clf.scores([text])[0]))
    for name in TOPICS:
        assert scores[name] == pytest.approx(float(expected[name]), abs=1e-5)
    result = clf.predict([text])[0]
    assert sorted(result["labels"]) == two["label"]


def test_thresholds_are_saved_and_used_by_predict(multi_model, tmp_path, capsys):
    import shutil

    config = json.loads((multi_model / "config.json").read_text())
    tuned = config["headcls"]["thresholds"]
    assert set(tuned) == set(TOPICS) and all(0 < t < 1 for t in tuned.values())
    training = (multi_model / "training_config.yaml").read_text()
    assert "thresholds" in training
    # The same model with the science threshold at 0 (always chosen) and the sports one at 1 (never).
    changed = tmp_path / "changed"
    shutil.copytree(multi_model, changed)
    config["headcls"]["thresholds"].update({"science": 0.0, "sports": 1.0})
    (changed / "config.json").write_text(json.dumps(config))
    text = "goal team coach the"
    for folder, science, sports in ((multi_model, False, True), (changed, True, False)):
        capsys.readouterr()
        assert main(["-q", "predict", "--model", str(folder), text]) == 0
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert ("science" in result["labels"]) is science
        assert ("sports" in result["labels"]) is sports
        assert len(result["scores"]) == len(result["labels"])
    # A file: labels and scores as JSON lists in CSV cells, and the top-k on request.
    (tmp_path / "in.txt").write_text("goal team\nmarket stock space nasa\n")
    assert main(["-q", "predict", "--model", str(multi_model), "--input", str(tmp_path / "in.txt"), "--output",
                 str(tmp_path / "out.csv"), "--top-k", "3"]) == 0
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns[:3]) == ["text", "labels", "scores"]
    assert json.loads(out["labels"][0]) == ["sports"]
    assert set(json.loads(out["labels"][1])) == {"business", "science"}
    assert {out["label_1"][0], out["label_2"][0], out["label_3"][0]} == set(TOPICS)


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


def test_tuned_thresholds_beat_half_where_the_scores_are_low():
    from headcls.evaluation.metrics import compute_multilabel_metrics
    from headcls.evaluation.metrics import tune_thresholds

    rng = np.random.default_rng(0)
    truth = (rng.random((200, 2)) < 0.4).astype(int)
    # Label 0: positives score 0.30-0.45, negatives 0.00-0.20 (ranked perfectly, all under 0.5);
    # label 1: well calibrated around 0.5.
    scores = np.where(truth == 1, rng.uniform(0.30, 0.45, truth.shape), rng.uniform(0.0, 0.20, truth.shape))
    scores[:, 1] = np.where(truth[:, 1] == 1, rng.uniform(0.6, 1.0, 200), rng.uniform(0.0, 0.4, 200))
    tuned = tune_thresholds(scores, truth)
    assert 0.20 < tuned[0] <= 0.30 and 0.4 <= tuned[1] <= 0.6
    at_half = compute_multilabel_metrics(truth, (scores >= 0.5).astype(int), ["a", "b"])
    at_tuned = compute_multilabel_metrics(truth, (scores >= np.array(tuned)).astype(int), ["a", "b"])
    assert at_half["per_class"]["a"]["f1"] == 0.0 and at_tuned["per_class"]["a"]["f1"] == 1.0
    assert at_tuned["f1_macro"] > at_half["f1_macro"] + 0.4
    # A label no validation row carries keeps 0.5.
    assert tune_thresholds(scores, np.zeros_like(truth)) == [0.5, 0.5]


def test_multi_label_metrics_against_hand_computed_values():
    from headcls.evaluation.metrics import compute_multilabel_metrics

    truth = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    guess = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 0, 0]])
    m = compute_multilabel_metrics(truth, guess, ["a", "b", "c"])
    # Rows right in every label: rows 2 and 4 of 4. Wrong cells: (1,c), (3,b), (3,c): 3 of 12.
    assert m["subset_accuracy"] == m["accuracy"] == 0.5
    assert m["hamming_loss"] == 3 / 12
    # a: tp 2, fp 0, fn 0 -> P 1, R 1; b: tp 1, fp 0, fn 1 -> P 1, R 1/2, F1 2/3; c: tp 0, fp 1, fn 1 -> 0.
    assert m["per_class"]["a"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert m["per_class"]["b"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    # micro: tp 3, fp 1, fn 2 -> P 3/4, R 3/5, F1 2PR/(P+R) = 2/3; macro F1: (1 + 2/3 + 0) / 3.
    assert m["precision_micro"] == 0.75 and m["recall_micro"] == 0.6
    assert m["f1_micro"] == pytest.approx(2 / 3)
    assert m["f1_macro"] == pytest.approx((1 + 2 / 3 + 0) / 3)


def long_texts(n: int, seed: int) -> list[str]:
    """Texts of 3 to 40 words: many past the tiny model's 64 positions."""
    rng = random.Random(seed)
    words = [w for ws in KEYWORDS.values() for w in ws] + FILLER
    return [" ".join(rng.choices(words, k=rng.randint(3, 40))) for _ in range(n)]


def test_chunks_pool_the_windows_of_each_text_into_one_prediction_in_input_order(trained_dir):
    from headcls.data.longtext import Pieces, encode_whole, pool, special_layout
    from headcls.inference.classifier import Classifier

    clf = Classifier.from_pretrained(trained_dir, backend="torch", precision="fp32", long_text="chunks", stride=4)
    clf.max_length = 16  # windows of 14 tokens: the long texts have several
    texts = long_texts(30, seed=5)
    logits = clf.logits(texts)
    assert logits.shape == (30, len(clf.labels))
    pieces = Pieces(encode_whole(clf.tokenizer, texts), clf.long_text, 16, special_layout(clf.tokenizer))
    assert len(pieces) > 45 and len(set(pieces.doc)) == 30
    # By hand: every window alone through the model, then the mean per text.
    window_logits = np.concatenate([
        clf.runner(dict(clf.tokenizer.pad([pieces.features(p)], return_tensors="np"))) for p in range(len(pieces))
    ])
    expected = np.stack([window_logits[np.array(pieces.doc) == i].mean(axis=0) for i in range(30)])
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(pool(window_logits, pieces.doc, 30, "max")[3],
                               window_logits[np.array(pieces.doc) == 3].max(axis=0))
    # One result per text, in input order: each text alone gets the same result.
    results = clf.predict(texts)
    assert len(results) == 30
    for i in (0, 7, 29):
        assert clf.predict([texts[i]])[0]["label"] == results[i]["label"]
        np.testing.assert_allclose(clf.logits([texts[i]])[0], logits[i], rtol=1e-4, atol=1e-5)


def test_head_tail_keeps_the_first_and_last_tokens(trained_dir):
    from headcls.data.longtext import LongText, Pieces, encode_whole, special_layout
    from headcls.inference.classifier import Classifier

    clf = Classifier.from_pretrained(trained_dir, backend="torch", precision="fp32")
    tokenizer = clf.tokenizer
    text = " ".join(["match"] * 5 + FILLER * 3 + ["market"] * 5)
    whole = tokenizer([text])["input_ids"][0]
    pieces = Pieces(encode_whole(tokenizer, [text]), LongText(mode="head-tail", head_fraction=0.25), 18,
                    special_layout(tokenizer))
    ids = pieces.features(0)["input_ids"]
    # 16 tokens beside [CLS] and [SEP]: the first 4 of the text and its last 12.
    assert ids == whole[:1] + whole[1:5] + whole[-13:-1] + whole[-1:]
    assert pieces.features(0)["attention_mask"] == [1] * 18


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


def test_a_megabyte_text_is_read_in_bounded_memory(trained_dir):
    import tracemalloc

    from headcls.inference.classifier import Classifier

    clf = Classifier.from_pretrained(trained_dir, backend="torch", precision="fp32", long_text="chunks")
    text = " ".join(random.Random(0).choices(FILLER + KEYWORDS["sports"], k=200_000))  # about 1 MB
    assert len(text) > 900_000
    tracemalloc.start()
    result = clf.predict([text, "market stock"])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(result) == 2 and result[0]["label"] == "sports" and result[1]["label"] == "business"
    assert peak < 400 << 20, peak  # token ids and one batch of windows, not every window padded at once


def test_many_long_texts_are_tokenized_a_bounded_group_at_a_time(trained_dir, monkeypatch):
    from headcls.data import longtext
    from headcls.inference import classifier as predict

    clf = predict.Classifier.from_pretrained(trained_dir, backend="torch", precision="fp32", long_text="chunks",
                                             stride=4)
    clf.max_length = 16
    texts = long_texts(30, seed=9)
    at_once = clf.logits(texts)
    groups = []
    real = longtext.encode_whole
    monkeypatch.setattr(longtext, "encode_whole", lambda tok, group: groups.append(group) or real(tok, group))
    monkeypatch.setattr(predict, "WHOLE_TEXT_CHARS", 600)
    np.testing.assert_allclose(clf.logits(texts), at_once, rtol=1e-4, atol=1e-5)  # same rows, in input order
    assert len(groups) > 3 and [t for g in groups for t in g] == texts
    assert all(sum(map(len, g)) <= 600 for g in groups if len(g) > 1)


def test_balanced_class_weights_change_the_loss_as_computed_by_hand(tmp_path):
    import torch

    from headcls.options.commands import TrainConfig
    from headcls.data.splits import Splits
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


@pytest.mark.parametrize("argv, message", [
    (["--tune-thresholds"], "one per row"),
    (["--stride", "8"], "--stride is an option of --long-text chunks"),
    (["--long-text", "chunks", "--head-fraction", "0.5"], "--head-fraction is an option of --long-text head-tail"),
    (["--long-text", "chunks", "--stride", "200"], "--stride 200 must be below the window"),
    (["--long-text", "sliding"], "--long-text must be one of truncate, head-tail, chunks"),
    (["--class-weights", "missing.yaml"], "missing.yaml"),
])
def test_label_shape_options_are_checked(tiny_model_dir, toy_data, tmp_path, capsys, argv, message):
    code = main(["-q", "train", "--data", str(toy_data), "--model", str(tiny_model_dir), "--output",
                 str(tmp_path / "m"), "--epochs", "1", *argv])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_multi_label_model_exports_to_onnx_with_the_same_labels(multi_model, tmp_path, capsys):
    from headcls.inference.classifier import Classifier

    out = tmp_path / "onnx"
    assert main(["export", "--model", str(multi_model), "--output", str(out)]) == 0
    assert "agreement" in capsys.readouterr().out.lower()
    texts = ["goal team market", "space nasa chip", "the a of"]
    torch_results = Classifier.from_pretrained(multi_model, backend="torch", precision="fp32").predict(texts)
    onnx = Classifier.from_pretrained(out)
    assert onnx.backend == "onnx" and onnx.multi_label
    assert [r["labels"] for r in onnx.predict(texts)] == [r["labels"] for r in torch_results]


def test_export_reads_a_check_file_with_its_own_columns_and_label_separator(multi_model, tmp_path, capsys):
    held_out = multi_rows(70, seed=2)  # the rows train scored the model on
    check = pd.DataFrame({"body": held_out["text"], "topics": ["|".join(t) for t in held_out["label"]]})
    check.to_csv(tmp_path / "check.csv", index=False)
    assert main(["export", "--model", str(multi_model), "--output", str(tmp_path / "onnx"), "--check-file",
                 str(tmp_path / "check.csv"), "--text-column", "body", "--label-column", "topics",
                 "--label-separator", "|"]) == 0
    out = capsys.readouterr().out
    subset_accuracy = json.loads((multi_model / "metrics.json").read_text())["subset_accuracy"]
    assert f"Self-check on 70 held-out rows of {tmp_path / 'check.csv'}" in out
    assert f"accuracy torch {subset_accuracy:.4f}" in out


def test_a_held_out_row_with_a_label_seen_nowhere_else_goes_back_to_training():
    from headcls.data.splits import _hold_out

    rows = [("a",), ("b",)] * 20 + [("a", "rare")]
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(len(rows))], "label": rows})
    for seed in range(10):
        train, validation = _hold_out(frame, 0.3, seed)
        assert ("a", "rare") in set(train["label"]) and len(train) + len(validation) == len(frame)


@pytest.mark.parametrize("train_labels, other, message", [
    ([[]] * 12, None, "no training row carries a label"),
    (["sports", "business"] * 6, [["sports"]] * 4, "holds several labels per row"),
])
def test_label_shapes_that_cannot_train_are_one_line(tiny_model_dir, tmp_path, capsys, train_labels, other, message):
    write_jsonl(pd.DataFrame({"text": ["goal team"] * len(train_labels), "label": train_labels}),
                tmp_path / "train.jsonl")
    argv = ["-q", "train", "--train-file", str(tmp_path / "train.jsonl"), "--model", str(tiny_model_dir),
            "--output", str(tmp_path / "m"), "--epochs", "1"]
    if other is not None:
        write_jsonl(pd.DataFrame({"text": ["goal"] * len(other), "label": other}), tmp_path / "val.jsonl")
        argv += ["--validation-file", str(tmp_path / "val.jsonl")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_long_text_options_at_prediction_are_checked_against_the_model(trained_dir, capsys):
    assert main(["-q", "predict", "--model", str(trained_dir), "--stride", "4", "goal team"]) == 2
    assert "--stride is an option of --long-text chunks" in capsys.readouterr().err
    assert main(["-q", "predict", "--model", str(trained_dir), "--long-text", "chunks", "--stride", "500",
                 "goal team"]) == 2
    assert "must be below the window" in capsys.readouterr().err
    assert main(["-q", "predict", "--model", str(trained_dir), "--long-text", "head-tail", "goal team"]) == 0
