"""Train -> save -> reload with plain transformers -> predict / evaluate / export, on the tiny model."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from headcls import Classifier
from headcls.cli import main


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


def test_metrics_json_has_the_report_fields(trained_dir):
    metrics = json.loads((trained_dir / "metrics.json").read_text())
    for key in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted",
                "recall_weighted", "f1_weighted", "num_examples", "train_seconds", "train_samples_per_second"):
        assert isinstance(metrics[key], (int, float)), key
    assert metrics["num_examples"] == 60
    assert set(metrics["per_class"]) == {"business", "science", "sports"}
    assert metrics["per_class"]["sports"]["support"] == 20
    cm = metrics["confusion_matrix"]
    assert cm["labels"] == ["business", "science", "sports"]
    assert sum(map(sum, cm["matrix"])) == 60
    assert metrics["accuracy"] > 0.8, "the keyword task is easy: the tiny model must learn it"
    assert metrics["baseline"]["name"] == "tfidf+logreg" and metrics["baseline"]["num_examples"] == 60
    assert len(metrics["validation"]) == 20, "one validation entry per epoch"
    predictions = pd.read_csv(trained_dir / "predictions.csv")
    assert list(predictions.columns) == ["text", "label", "predicted", "score"]
    assert len(predictions) == 60
    assert (predictions["label"] == predictions["predicted"]).mean() == pytest.approx(metrics["accuracy"])


def test_plain_transformers_pipeline_returns_label_names(trained_dir):
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(trained_dir))
    results = classify(["the team scored a goal in the match", "bank shares and stock market profit"])
    assert [r["label"] for r in results] == ["sports", "business"]


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


def test_evaluate_cli_writes_the_report(trained_dir, toy_data, tmp_path):
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(trained_dir), "--test-file", str(toy_data / "test.csv"),
                 "--output", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    trained = json.loads((trained_dir / "metrics.json").read_text())
    assert metrics["num_examples"] == 60
    assert metrics["accuracy"] == pytest.approx(trained["accuracy"])
    assert (out / "confusion_matrix.png").stat().st_size > 1000
    assert (out / "predictions.csv").is_file()


def test_same_seed_gives_identical_predictions(tiny_model_dir, toy_data, tmp_path):
    from conftest import TINY_TRAIN

    probs = []
    for run in ("a", "b"):
        out = tmp_path / run
        argv = ["-q", "train", "--data", str(toy_data), "--model", str(tiny_model_dir), "--output", str(out),
                "--no-baseline", "--seed", "7", *TINY_TRAIN]
        assert main(argv) == 0
        probs.append(pd.read_csv(out / "predictions.csv")["score"].tolist())
    assert probs[0] == probs[1]


@pytest.fixture(scope="module")
def exported_dirs(trained_dir, tmp_path_factory):
    folders = {}
    for name, flags in (("fp32", []), ("int8", ["--int8"])):
        out = tmp_path_factory.mktemp("onnx") / name
        assert main(["-q", "export", "--model", str(trained_dir), "--output", str(out), *flags]) == 0
        folders[name] = out
    return folders


def test_export_matches_torch_and_needs_no_weights_file(trained_dir, exported_dirs):
    from conftest import toy_rows

    texts = toy_rows(30, seed=9)["text"].tolist() + ["goal", "the market of stock in bank today shares trade"]
    torch_clf = Classifier.from_pretrained(trained_dir, backend="torch", precision="fp32")
    onnx_clf = Classifier.from_pretrained(exported_dirs["fp32"])
    assert onnx_clf.backend == "onnx" and not list(exported_dirs["fp32"].glob("*.safetensors"))
    expected, got = torch_clf.predict(texts), onnx_clf.predict(texts)
    assert [r["label"] for r in got] == [r["label"] for r in expected]
    assert [r["score"] for r in got] == pytest.approx([r["score"] for r in expected], abs=1e-4)
    size = {name: (folder / "model.onnx").stat().st_size for name, folder in exported_dirs.items()}
    assert size["int8"] < size["fp32"]  # the real encoder: 23.0 MB against 91.0 MB (BENCHMARKS.md)


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
    from conftest import SHARED_DATA
    from transformers import AutoTokenizer

    from headcls.modeling.loading import default_encoder
    from headcls.inference.backends import RustTokenizer

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
