"""The Ray engine of headcls.inference: batch prediction on Ray Data (`headcls predict --engine ray`,
`headcls.batch.predict_dataset`).

Sharded inputs give every row exactly one prediction, equal to `headcls predict` on the same rows, with every
input column kept; an exported ONNX int8 folder works as the backend; bad input is one line (most of it before
Ray starts). One Ray cluster with 2 CPUs serves the module (`ray start --head --block`, joined with
--ray-address); one test starts its own local cluster, as a user without one does, and checks that it is gone
after the run.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import assert_one_line_error, run, toy_rows

from headcls.cli import main

ray = pytest.importorskip("ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", autouse=True)
def ray_environment():
    """The module's clusters run without token authentication (Ray's default for a new cluster, which writes its
    token to ~/.ray and which Ray reads when it is imported, here at collection) and send no usage stats; each
    lives for a minute at most."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "disabled")
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        yield


@pytest.fixture(scope="module")
def cluster(ray_environment, tmp_path_factory) -> str:
    """The address of a 2-CPU Ray cluster running for the module's tests; stopped (by its pid) after them."""
    port = free_port()
    log = tmp_path_factory.mktemp("ray-head") / "ray-start.log"
    ray_cli = Path(sys.executable).with_name("ray")
    argv = [str(ray_cli), "start", "--head", "--block", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
            "--disable-usage-stats", "--object-store-memory=200000000"]
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while "Ray runtime started" not in log.read_text() and time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        time.sleep(0.2)
    assert "Ray runtime started" in log.read_text(), log.read_text()
    yield f"127.0.0.1:{port}"
    import psutil

    started = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGINT)  # `ray start --block` stops what it started (SIGTERM: after a 30 s drain)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:  # a loaded machine: the stop hung; it is the cluster's, not headcls's
        proc.kill()
        proc.wait(timeout=10)
    _, alive = psutil.wait_procs(started, timeout=30)
    for leftover in alive:
        leftover.kill()
    _, survivors = psutil.wait_procs(alive, timeout=10)
    assert not survivors, f"Ray processes left running: {survivors}"


def labelled_rows(n: int, seed: int) -> pd.DataFrame:
    """Toy texts with an id to join on and columns of other types that must come back unchanged."""
    rows = toy_rows(n, seed).drop(columns="label")
    rows.insert(0, "id", range(n))
    rows["source"] = [f"feed-{i % 4}" for i in range(n)]
    rows["weight"] = [i / 7 for i in range(n)]
    return rows


def write_shards(rows: pd.DataFrame, folder: Path, count: int, fmt: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        part, path = rows.iloc[i::count], folder / f"shard-{i}.{fmt}"
        if fmt == "parquet":
            part.to_parquet(path, index=False, row_group_size=7)  # several row groups per file
        elif fmt == "csv":
            part.to_csv(path, index=False)
        else:
            part.to_json(path, orient="records", lines=True, force_ascii=False)
        paths.append(path)
    return paths


def local_predictions(model: Path, rows: pd.DataFrame, folder: Path, *flags: str) -> pd.DataFrame:
    """`headcls predict` (the local engine) on the same rows, in their order."""
    rows.to_parquet(folder / "all.parquet", index=False)
    assert main(["-q", "predict", "--model", str(model), "--input", str(folder / "all.parquet"),
                 "--output", str(folder / "local.csv"), *flags]) == 0
    return pd.read_csv(folder / "local.csv", keep_default_na=False)


def read_output(folder: Path, fmt: str) -> pd.DataFrame:
    if fmt == "parquet":
        return pd.read_parquet(folder)  # the _headcls.json beside the shards is skipped, as for any reader
    return pd.concat([pd.read_json(p, lines=True) for p in sorted(folder.glob("*.jsonl"))], ignore_index=True)


def assert_one_prediction_per_row(out: pd.DataFrame, rows: pd.DataFrame, local: pd.DataFrame, top_k: int,
                                  score_tolerance: float, kept: pd.DataFrame | None = None) -> None:
    """`out` holds each row of `rows` once (by id), its input columns as `kept` (default: `rows`), and the
    predictions of `local` (the local engine on `rows`, in order)."""
    kept = rows if kept is None else kept
    assert sorted(out["id"]) == list(rows["id"]), "every input row exactly once"
    out = out.sort_values("id").reset_index(drop=True)
    names = ["label", "score"]  # and, as in predict's CSV, label_1, score_1, ... with top-k > 1
    for k in range(1, top_k + 1 if top_k > 1 else 1):
        names += [f"label_{k}", f"score_{k}"]
    assert list(out.columns) == [*rows.columns, *names], "input columns kept, in order, predictions after them"
    pd.testing.assert_frame_equal(out[list(rows.columns)], kept.reset_index(drop=True), check_dtype=False)
    for name in names:
        if name.startswith("label"):
            assert out[name].tolist() == local[name].tolist(), name
        else:
            assert out[name].tolist() == pytest.approx(local[name].tolist(), abs=score_tolerance), name


def test_parquet_shards_on_a_joined_cluster_equal_local_predict(cluster, trained_dir, tmp_path):
    rows = labelled_rows(90, seed=11)
    write_shards(rows, tmp_path / "in", 3, "parquet")
    out = tmp_path / "predictions"
    flags = ["--precision", "fp32", "--top-k", "2"]  # fp32: batches differ, so bf16 rounding would differ too
    code = main(["-q", "predict", "--engine", "ray", "--model", str(trained_dir), "--input",
                 str(tmp_path / "in" / "*.parquet"), "--output", str(out), "--ray-address", cluster,
                 "--workers", "2", "--threads", "1", *flags])
    assert code == 0
    local = local_predictions(trained_dir, rows, tmp_path, *flags)
    assert_one_prediction_per_row(read_output(out, "parquet"), rows, local, top_k=2, score_tolerance=1e-5)
    assert sorted(p.name for p in out.iterdir())[0] == "_headcls.json"
    assert all(p.name.startswith("part-") and p.suffix == ".parquet" for p in out.iterdir() if p.name[0] != "_")
    summary = json.loads((out / "_headcls.json").read_text())
    assert summary["rows"] == 90 and summary["input_files"] == 3 and summary["workers"] == 2
    assert not ray.is_initialized(), "the driver disconnects after the run"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no lock or staging folder left"


# Dynamic int8 quantizes each forward pass with its own activation range: other batch companions, scores other
# in the fourth digit (3e-4 measured on the toy rows); fp32 torch gives the same to the last bit.
INT8_SCORES = 5e-3


@pytest.fixture(scope="module")
def onnx_dir(exported_dirs) -> Path:
    """`headcls export --int8` of the trained model, as the session exported it."""
    return exported_dirs["int8"]


def test_onnx_int8_backend_jsonl_shards_python_api_and_overwrite(cluster, onnx_dir, tmp_path, capsys):
    from headcls.inference.ray_engine import predict_dataset

    rows = labelled_rows(40, seed=12)
    words = rows["text"].str.split()
    rows = rows.drop(columns="text").assign(title=words.str[:3].str.join(" "), body=words.str[3:].str.join(" "))
    write_shards(rows, tmp_path / "in", 4, "jsonl")
    out = tmp_path / "predictions"
    summary = predict_dataset(onnx_dir, tmp_path / "in", out, text_column=["title", "body"], output_format="jsonl",
                              ray_address=cluster, workers=1)
    assert summary["backend"] == "onnx" and summary["rows"] == 40 and summary["output_format"] == "jsonl"
    local = local_predictions(onnx_dir, rows, tmp_path, "--text-column", "title", "body")
    assert_one_prediction_per_row(read_output(out, "jsonl"), rows, local, top_k=1, score_tolerance=INT8_SCORES)

    again = ["predict", "--engine", "ray", "--model", str(onnx_dir), "--input", str(tmp_path / "in"), "--output",
             str(out), "--text-column", "title", "body", "--output-format", "jsonl", "--ray-address", cluster]
    code, err = run(again, capsys)
    assert_one_line_error(code, err, "already holds files; pass --overwrite to replace them")
    assert main(["-q", *again, "--overwrite"]) == 0, "a folder of predictions headcls wrote may be replaced"
    assert len(read_output(out, "jsonl")) == 40


def children() -> set[int]:
    import psutil

    return {p.pid for p in psutil.Process().children(recursive=True)}


def test_without_an_address_a_local_cluster_runs_and_is_stopped(onnx_dir, tmp_path):
    """CSV shards are read as headcls reads CSV: every cell a text (`01` stays `01`, `NA` stays `NA`)."""
    rows = labelled_rows(24, seed=13)
    rows.loc[0, "text"], rows.loc[1, "text"] = "01", "NA"
    shards = write_shards(rows, tmp_path / "in", 2, "csv")
    before = children()
    assert main(["-q", "predict", "--engine", "ray", "--model", str(onnx_dir), "--input",
                 str(tmp_path / "in" / "*.csv"), "--output", str(tmp_path / "predictions"), "--workers", "1"]) == 0
    deadline = time.monotonic() + 30
    while children() - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not children() - before, "the local cluster's processes are gone"
    assert not ray.is_initialized()
    as_text = pd.concat([pd.read_csv(p, dtype=str, keep_default_na=False) for p in shards])
    as_text = as_text.sort_values("id", key=lambda ids: ids.astype(int)).reset_index(drop=True)
    local = local_predictions(onnx_dir, rows, tmp_path)
    out = read_output(tmp_path / "predictions", "parquet")
    assert_one_prediction_per_row(out.astype({"id": int}), rows.astype({"id": int}), local, top_k=1,
                                  score_tolerance=INT8_SCORES, kept=as_text.astype({"id": int}))
    assert out.loc[out["id"] == "0", "text"].item() == "01" and out.loc[out["id"] == "1", "text"].item() == "NA"


def test_a_blank_text_in_a_later_shard_is_refused_with_its_file_and_row(cluster, onnx_dir, tmp_path, capsys):
    rows = labelled_rows(30, seed=14)
    rows.loc[rows.index[3 * 4 + 2], "text"] = "   "  # shard-2.parquet, its 5th row
    write_shards(rows, tmp_path / "in", 3, "parquet")
    code, err = run(["-q", "predict", "--engine", "ray", "--model", str(onnx_dir), "--input", str(tmp_path / "in"),
                     "--output", str(tmp_path / "predictions"), "--ray-address", cluster], capsys)
    expected = f"{tmp_path.resolve() / 'in' / 'shard-2.parquet'}: row 5 has no text in text (empty or only whitespace)"
    assert_one_line_error(code, err, expected)
    assert err.count("\n") == 1, f"nothing of Ray's on stderr: {err}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"], "no output, lock or staging folder left"
    # The same message as the local engine gives for that file.
    shard = tmp_path.resolve() / "in" / "shard-2.parquet"
    code, err = run(["predict", "--model", str(onnx_dir), "--input", str(shard), "--output",
                     str(tmp_path / "local.csv")], capsys)
    assert_one_line_error(code, err, expected)


def bad_cases(folder: Path) -> list[tuple[list[str], str]]:
    """(argv after the model, expected message): each refused before any Ray process starts."""
    rows = labelled_rows(6, seed=15)
    write_shards(rows, folder / "in", 2, "parquet")
    write_shards(rows, folder / "mixed", 1, "parquet")
    write_shards(rows, folder / "mixed", 1, "csv")
    write_shards(rows.rename(columns={"source": "label"}), folder / "gold", 1, "parquet")
    glob = str(folder / "in" / "*.parquet")
    out = str(folder / "predictions")
    return [
        (["--input", str(folder / "none" / "*.csv"), "--output", out], "none/*.csv: matches no files"),
        (["--input", str(folder / "missing"), "--output", out], "missing: no such file or folder"),
        (["--input", glob, "--output", out, "--text-column", "body"],
         "shard-0.parquet: missing text column 'body'; columns found: 'id', 'text', 'source', 'weight'"),
        (["--input", str(folder / "mixed"), "--output", out],
         "holds csv (shard-0.csv) and parquet (shard-0.parquet) files; give shards of one format"),
        (["--input", str(folder / "gold"), "--output", out],
         "has a column 'label', which the predictions would overwrite"),
        (["--input", glob, "--output", str(folder / "predictions.csv")], "--engine ray writes a folder of shards"),
        (["--input", glob, "--output", str(folder / "in")], "holds the input --input"),
        (["--input", glob, "--output", out, "--workers", "0"], "--workers must be at least 1, got 0"),
        (["texts", "--output", out], "--engine ray classifies --input files, not sentences"),
        (["--input", glob, "--output", out, "--ray-address", f"127.0.0.1:{free_port()}"],
         "nothing answers there (Connection refused); is the cluster running (ray start --head)?"),
    ]


def test_bad_input_is_one_line_before_ray_starts(trained_dir, tmp_path, capsys):
    before = children()
    for args, expected in bad_cases(tmp_path):
        code, err = run(["predict", "--engine", "ray", "--model", str(trained_dir), *args], capsys)
        assert_one_line_error(code, err, expected)
        assert err.count("\n") == 1, err
        assert not (tmp_path / "predictions").exists()
    assert not ray.is_initialized() and not children() - before, "no Ray process was started"
    code, err = run(["predict", "--model", str(trained_dir), "--input", "x.csv", "--output", "o.csv", "--workers",
                     "2"], capsys)
    assert_one_line_error(code, err, "--workers is an option of --engine ray")


def test_without_ray_installed_the_error_names_the_extra(trained_dir, tmp_path, capsys, monkeypatch):
    write_shards(labelled_rows(6, seed=16), tmp_path / "in", 2, "parquet")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the ray extra were not installed
    code, err = run(["predict", "--engine", "ray", "--model", str(trained_dir), "--input", str(tmp_path / "in"),
                     "--output", str(tmp_path / "predictions")], capsys)
    assert_one_line_error(code, err, "--engine ray needs Ray Data: pip install 'headcls[ray]'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
