"""Classifying text (headcls.inference): the Classifier (label names, scores, top-k, input order, thresholds,
long texts read whole in bounded memory, thread safety, no process-wide state), its torch and ONNX backends (the
torch-free ONNX path and its Rust tokenizer), and `headcls predict` on sentences and files (read and written
chunk by chunk; bad input is one line). The Ray engine is in tests/test_inference_ray.py.

A test whose docstring starts "Was:" pins down a case a new user hit (the hardening issue), and failed on the code
before its fix; tests/test_fuzz.py checks the rules behind them for every flag and many inputs."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess

import numpy as np
import pandas as pd
import pytest
from helpers import (
    FILLER,
    KEYWORDS,
    SHARED_DATA,
    TEXTS,
    TOPICS,
    assert_one_line_error,
    fill,
    headcls,
    in_thread,
    long_texts,
    multi_rows,
    run,
    toy_rows,
    write,
)

from headcls import Classifier
from headcls.cli import main

# --- the Classifier -----------------------------------------------------------------------------------------------

def test_classifier_predicts_names_scores_and_top_k(trained_dir):
    clf = Classifier.from_pretrained(trained_dir)
    assert clf.predict([]) == []
    [result] = clf.predict(["nasa space research chip"], top_k=3)
    assert result["label"] == "science"
    assert 0 < result["score"] <= 1
    assert result["top_k"][0]["label"] == "science"
    assert sum(item["score"] for item in result["top_k"]) == pytest.approx(1.0, abs=1e-4)


def test_length_sorting_keeps_input_order(trained_dir):
    clf = Classifier.from_pretrained(trained_dir, batch_size=2)
    texts = ["goal", "the market of stock in bank today shares trade", "space",
             "the team coach in the league after the week", "bank"]
    batched = [r["label"] for r in clf.predict(texts)]
    one_by_one = [clf.predict([t])[0]["label"] for t in texts]
    assert batched == one_by_one
    assert batched[0] == "sports" and batched[1] == "business" and batched[2] == "science"


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_threads_sharing_a_classifier_get_the_serial_results(backend, trained_dir, tmp_path):
    """What the server relies on: concurrent predict calls from several threads give what serial calls give."""
    from headcls import Classifier
    from headcls.cli import main

    folder = trained_dir
    if backend == "onnx":
        folder = tmp_path / "onnx"
        assert main(["-q", "export", "--model", str(trained_dir), "--output", str(folder)]) == 0
    clf = Classifier.from_pretrained(folder, batch_size=4)
    chunks = [toy_rows(40, seed=s)["text"].tolist() for s in range(8)]
    serial = [clf.predict(chunk, top_k=2) for chunk in chunks]
    jobs = [in_thread(clf.predict, chunk, top_k=2) for chunk in chunks]
    for job, expected in zip(jobs, serial):
        job["thread"].join()
        assert job["value"] == expected


def test_a_classifier_changes_no_process_wide_state(trained_dir, tmp_path):
    """Constructing or calling a Classifier leaves thread counts, torch functions, logging and signals alone, so a
    server or a worker can hold one."""
    import logging

    import torch

    from headcls import Classifier

    def state():
        return (torch.get_num_threads(), torch.nn.functional.dropout, list(logging.getLogger().handlers),
                logging.getLogger().level, signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))

    before = state()
    for backend, threads in (("torch", 1), ("torch", None)):
        clf = Classifier.from_pretrained(trained_dir, backend=backend, threads=threads)
        clf.predict(TEXTS, top_k=2)
    assert state() == before


def test_a_model_with_nan_weights_is_refused_by_predict(trained_dir, tmp_path, capsys):
    """Was: predict printed NaN scores (invalid JSON) for a NaN model."""
    from safetensors.numpy import load_file, save_file

    broken = tmp_path / "nan-model"
    shutil.copytree(trained_dir, broken)
    weights = load_file(broken / "model.safetensors")
    weights["classifier.bias"] = np.full_like(weights["classifier.bias"], np.nan)
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    code, err = run(["predict", "--model", str(broken), "goal"], capsys)
    assert_one_line_error(code, err, "nan-model: the model gives non-finite scores (NaN or infinity) for text 1 of 1")
    assert capsys.readouterr().out == ""


# --- multi-label models: sigmoid scores and tuned thresholds ---------------------------------------------------

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


# --- long texts: head-tail and chunks, in bounded memory -------------------------------------------------------

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


def test_long_text_options_at_prediction_are_checked_against_the_model(trained_dir, capsys):
    assert main(["-q", "predict", "--model", str(trained_dir), "--stride", "4", "goal team"]) == 2
    assert "--stride is an option of --long-text chunks" in capsys.readouterr().err
    assert main(["-q", "predict", "--model", str(trained_dir), "--long-text", "chunks", "--stride", "500",
                 "goal team"]) == 2
    assert "must be below the window" in capsys.readouterr().err
    assert main(["-q", "predict", "--model", str(trained_dir), "--long-text", "head-tail", "goal team"]) == 0


@pytest.mark.parametrize("reading", [{"mode": "head-tail", "head_fraction": None}, {"mode": None},
                                     {"mode": "chunks", "pooling": None}, {"mode": "chunks", "stride": "four"}])
def test_a_corrupt_long_text_setting_is_one_line(reading, trained_dir, tmp_path, capsys):
    """Was: an unset head_fraction gave a TypeError on the first long text; an unset mode read texts as chunks."""
    broken = tmp_path / "broken"
    shutil.copytree(trained_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    config["headcls"] = {"long_text": reading}
    (broken / "config.json").write_text(json.dumps(config))
    code, err = run(["predict", "--model", str(broken), "goal " * 100], capsys)
    assert_one_line_error(code, err, "config.json: headcls.long_text is not valid")


# --- backends: torch and ONNX -----------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8"])
def test_every_backend_keeps_input_order_and_label_names(backend, trained_dir, exported_dirs):
    kind, variant = backend.split("-")
    if kind == "torch":
        from headcls.runtime.hardware import bf16_supported

        if variant == "bf16" and not bf16_supported():
            pytest.skip("no bf16 on this machine")
        clf = Classifier.from_pretrained(trained_dir, backend="torch", precision=variant, batch_size=2)
    else:
        clf = Classifier.from_pretrained(exported_dirs[variant], batch_size=2)
    texts = ["the coach of the team after the match", "bank", "nasa space research chip software internet",
             "goal", "the stock market shares and trade profit today"]
    batched = clf.predict(texts)
    assert [r["label"] for r in batched] == [clf.predict([t])[0]["label"] for t in texts]
    assert {r["label"] for r in batched} <= {"business", "science", "sports"}
    assert [r["label"] for r in batched][:2] == ["sports", "business"]


def test_onnx_prediction_imports_neither_torch_nor_transformers(exported_dirs):
    """The exported folder predicts through tokenizers + ONNX Runtime alone: a cold start of about 0.3 s."""
    import subprocess
    import sys

    code = (
        "import sys; from headcls import Classifier; "
        "clf = Classifier.from_pretrained(sys.argv[1]); print(clf.predict(['market stock bank'])[0]['label']); "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(exported_dirs["int8"])], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[:2] == ["business", "[]"]


@pytest.mark.parametrize("which", ["tiny", "default-encoder"])
def test_rust_tokenizer_gives_the_transformers_ids(which, exported_dirs):
    """The torch-free tokenizer of the ONNX path matches AutoTokenizer, ids and padding, on real AG News rows
    and on awkward strings (accents, CJK, emoji, control and zero-width characters, truncation)."""
    import numpy as np
    from transformers import AutoTokenizer

    from headcls.inference.backends import RustTokenizer
    from headcls.modeling.loading import default_encoder

    folder = str(exported_dirs["int8"]) if which == "tiny" else default_encoder()
    reference, rust = AutoTokenizer.from_pretrained(folder), RustTokenizer.from_folder(folder)
    assert rust is not None and rust.model_max_length == reference.model_max_length
    texts = pd.read_csv(SHARED_DATA / "ag_news" / "test.csv")["text"].head(500).tolist()
    texts += ["", "  ", "Ça va? ÉCOLE naïve — “quotes” 日本語 🙂", "market " * 300, "\t\n", "a\u00a0b\u200bc"]
    expected, got = reference(texts, truncation=True, max_length=64), rust(texts, truncation=True, max_length=64)
    for key in got:
        assert got[key] == expected[key], key
    rows = [{k: got[k][i] for k in got} for i in (0, 500, 503)]
    padded, padded_ref = rust.pad(rows), reference.pad(rows, return_tensors="np")
    for key in padded:
        assert np.array_equal(padded[key], padded_ref[key]), key


# --- headcls predict: sentences and files ------------------------------------------------------------------------

def test_predict_cli_sentences_and_files(trained_dir, tmp_path, capsys):
    assert main(["predict", "--model", str(trained_dir), "the coach and the team", "stock profit"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["label"] for line in lines] == ["sports", "business"]

    (tmp_path / "in.txt").write_text("space internet software\r\nmarket trade bank\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    assert main(["predict", "--model", str(trained_dir), "--input", str(tmp_path / "in.txt"),
                 "--output", str(out), "--top-k", "2"]) == 0
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["text", "label", "score", "label_1", "score_1", "label_2", "score_2"]
    assert frame["label"].tolist() == ["science", "business"]

    pd.DataFrame({"body": ["league season goal"]}).to_json(tmp_path / "in.jsonl", orient="records", lines=True)
    out = tmp_path / "out.jsonl"
    assert main(["predict", "--model", str(trained_dir), "--input", str(tmp_path / "in.jsonl"),
                 "--text-column", "body", "--output", str(out)]) == 0
    assert json.loads(out.read_text().splitlines()[0])["label"] == "sports"


def test_a_file_is_predicted_chunk_by_chunk_as_it_is_read(trained_dir, tmp_path, monkeypatch):
    from headcls.inference import files as predict

    (tmp_path / "in.txt").write_text("".join(f"market trade bank {i}\n" for i in range(10)), encoding="utf-8")
    read = []  # chunks the reader has given when each prediction starts
    real = predict.read_texts

    def counted(*args, **kwargs):
        for chunk in real(*args, **kwargs):
            read.append(len(chunk))
            yield chunk

    clf = Classifier.from_pretrained(trained_dir, backend="torch", precision="fp32")
    calls = []
    monkeypatch.setattr(predict, "read_texts", counted)
    monkeypatch.setattr(clf, "predict", lambda texts, top_k=1: calls.append(len(read)) or Classifier.predict(
        clf, texts, top_k))
    predict.predict_file(clf, tmp_path / "in.txt", tmp_path / "out.jsonl", chunk_rows=3)
    assert read == [3, 3, 3, 1] and calls == [1, 2, 3, 4]  # never a chunk read ahead of its prediction
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 10


@pytest.mark.parametrize(
    "args, expected",
    [
        ([], "predict needs sentences as arguments or --input FILE"),
        (["x", "--top-k", "0"], "--top-k must be at least 1, got 0"),
        (["--input", "{in.csv}", "--output", "{out.csv}"], "in.csv: missing text column 'text'; columns found: 'body'"),
        (["--input", "{in.bin}", "--output", "{out.csv}"], "unsupported file type"),
        (["--input", "{in.txt}", "--output", "{out.xml}"], "--output {out.xml}: write .csv or .jsonl"),
        (["--input", "{in.txt}"], "--input needs --output FILE (.csv or .jsonl)"),
        (["--input", "{nul.txt}", "--output", "{out.csv}"], "nul.txt: contains a NUL character"),
        (["--input", "{latin.csv}", "--output", "{out.csv}"], "is not utf-8 text"),
        (["--backend", "onnx", "x"], "no model.onnx; create one with: headcls export"),
    ],
)
def test_predict_bad_input(args, expected, tmp_path, trained_dir, capsys):
    paths = {
        "in.csv": write(tmp_path, "in.csv", "body\nx\n"),
        "in.bin": write(tmp_path, "in.bin", "x"),
        "in.txt": write(tmp_path, "in.txt", "goal\n"),
        "nul.txt": write(tmp_path, "nul.txt", b"goal\n\x00\x01\n"),
        "latin.csv": write(tmp_path, "latin.csv", "text\ncaf\xe9\n".encode("latin-1")),
        "out.csv": str(tmp_path / "out.csv"),
        "out.xml": str(tmp_path / "out.xml"),
    }
    args = [fill(a, paths) for a in args]
    code, err = run(["predict", "--model", str(trained_dir), *args], capsys)
    assert_one_line_error(code, err, fill(expected, paths))
    assert not (tmp_path / "out.csv").exists(), "no half-written output"


def test_standard_output_that_cannot_be_written(trained_dir):
    with open("/dev/full", "w") as full:
        proc = headcls("-q", "predict", "--model", str(trained_dir), "goal", stdout=full, stderr=subprocess.PIPE)
    assert proc.returncode == 2
    assert "headcls: error: cannot write the predictions to standard output (No space left on device)" in proc.stderr
