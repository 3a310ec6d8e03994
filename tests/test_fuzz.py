"""Property-based fuzzing of every command: what must hold for any command line and any input file.

Command lines are drawn from the option schemas themselves (every flag of every command, a new flag included the
day it is added), with values from the valid, boundary and invalid ranges of each (NaN and infinities included),
plus YAML config files; input files are random bytes, tables in random encodings (with and without a BOM or the
right --encoding), empty and header-only files, null and empty cells, repeated columns, huge fields and hundreds
of labels. Each example runs `headcls.cli.commands` in a fresh folder holding a tiny model, a trained one, an ONNX
export and data, and checks the invariants:

- the exit status is 0, 2 or 130, and nothing escapes `main` (an exception is a failure: exit 1 is for bugs);
- no "Traceback" on stderr; exit 2 prints exactly one error line, and it names a flag, file, row or key given;
- no file that existed before the run changed, unless --overwrite (or --resume) was in force and the file lies
  in the command's output;
- outputs are complete or absent: after a failure no new file is left anywhere (no lock, staging or partial
  file); after success the output holds what the command writes, and predictions are valid JSON/CSV.

CI runs the "ci" Hypothesis profile: a fixed (derandomized) sample, bounded in count. A longer, randomized run:
    .venv/bin/python -m pytest tests/test_fuzz.py --hypothesis-profile long
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import typing
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import toy_rows
from hypothesis import event, given, note, settings
from hypothesis import strategies as st

from headcls.cli import main
from headcls.cli.parser import build_parser, printable
from headcls.errors import HeadclsError
from headcls.options.commands import COMMAND_CONFIGS
from headcls.options.fields import INT_MAX, Positional
from headcls.options.fields import base_type as _base_type
from headcls.options.loading import build_config

# --- the world each example runs in -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tiny_model_dir, trained_dir, exported_dirs, tmp_path_factory) -> Path:
    """The template every example's folder is copied from."""
    root = tmp_path_factory.mktemp("fuzz-world")
    shutil.copytree(tiny_model_dir, root / "tiny")
    shutil.copytree(trained_dir, root / "trained", ignore=shutil.ignore_patterns("runs"))
    shutil.copytree(exported_dirs["int8"], root / "onnx")  # `headcls export --int8` of the trained model
    (root / "data").mkdir()
    toy_rows(24, seed=5).to_csv(root / "data" / "train.csv", index=False)
    toy_rows(9, seed=6).to_csv(root / "data" / "test.csv", index=False)
    (root / "agdir" / "ag_news").mkdir(parents=True)
    ag = toy_rows(24, seed=7).assign(label=lambda f: f["label"].map({"sports": 1, "business": 2, "science": 3}))
    ag.to_csv(root / "agdir" / "ag_news" / "train.csv", index=False)
    ag.head(8).to_csv(root / "agdir" / "ag_news" / "test.csv", index=False)
    (root / "in.txt").write_text("the team scored a goal\nbank shares rose\n", encoding="utf-8")
    toy_rows(5, seed=8).to_csv(root / "in.csv", index=False)
    (root / "existing.csv").write_text("text,label,score\nold,sports,0.5\n", encoding="utf-8")
    (root / "blocker").write_text("a regular file\n", encoding="utf-8")
    assert main(["-q", "evaluate", "--model", str(root / "trained"), "--test-file", str(root / "data" / "test.csv"),
                 "--output", str(root / "report")]) == 0
    (root / "empty_dir").mkdir()
    (root / "outlink").symlink_to("report", target_is_directory=True)
    (root / "datalink").symlink_to("data", target_is_directory=True)
    return root


@pytest.fixture(scope="module", autouse=True)
def without_ray():
    """`--engine ray` is drawn like every other value, but a Ray cluster per example would take seconds and start
    processes outside the sandbox. The examples run as where the ray extra is not installed: an --engine ray
    command goes through every check up to starting Ray, then ends in the one-line error naming the extra, so
    the invariants still hold for it. tests/test_inference_ray.py runs the engine itself."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "ray", None)
        yield


@contextlib.contextmanager
def sandbox(world: Path):
    """A fresh copy of the world, the working folder while the example runs."""
    base = Path(tempfile.mkdtemp(prefix="headcls-fuzz-"))
    root = base / "w"
    shutil.copytree(world, root, symlinks=True)
    cwd, home = os.getcwd(), os.environ.get("HOME")
    os.chdir(root)
    os.environ["HOME"] = str(root)  # so that ~/x stays in the sandbox
    try:
        yield root
    finally:
        os.chdir(cwd)
        if home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = home
        shutil.rmtree(base, ignore_errors=True)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- values for every option, from its schema -----------------------------------------------------------------

# Per option: the values that make a working command (by command where it matters) and the ones that must not.
GOOD = {
    "model": {"train": ["tiny", "trained"], "export": ["trained"], "*": ["trained", "onnx"]},
    "output": {"train": ["out", "new/deeper/out", "trained", "~/out"],
               "predict": ["out.csv", "out.jsonl", "existing.csv", "~/o.csv", "preds"],  # preds: --engine ray
               "export": ["out", "onnx"], "*": ["report", "new/report", "out", "outlink"]},
    "input": {"*": ["in.txt", "in.csv", "data/test.csv", "~/in.txt"]},
    "train_file": {"*": ["data/train.csv"]},
    "check_file": {"*": ["data/test.csv", "trained/predictions.csv"]},
    "file": {"*": ["data/test.csv"]},
    "data": {"*": ["data", "ag_news", "datalink"]},
    "data_dir": {"*": ["agdir"]},
    "text_column": {"*": ["text"]},
    "label_column": {"*": ["label"]},
    "encoding": {"*": ["utf-8", "UTF8", "latin-1"]},
}
BAD = {
    "model": ["nope", "blocker", "empty_dir", "data", "bert-base-uncased", "tiny", ".", "in.csv",
              "trained/model.safetensors", "~"],
    "output": ["blocker/out", "blocker", "data", "trained", "empty_dir", "existing.csv", "out.txt", ".", "..", "~",
               "in.csv", "data/train.csv", "onnx", "tiny", "datalink", "trained/eval-test"],
    "input": ["nope.csv", "blocker", "empty_dir", "existing.csv", "trained/config.json", "tiny/vocab.txt",
              "in.parquet"],
    "file": ["nope.csv", "blocker", "empty_dir", "in.csv", "in.txt", "trained/predictions.csv", "tiny/vocab.txt"],
    "data": ["empty_dir", "nope", "blocker", "trained", "ag_news"],
    "data_dir": ["nope", "blocker", "data", "empty_dir"],
    "column": ["label", "body", "Text", " text", "score", "predicted"],
    "encoding": ["utf-16", "cp1252", "nope", "rot13", "base64", "ascii"],
}


def role(name: str) -> str:
    if name in BAD:
        return name
    return "column" if name.endswith("_column") else "file"


def good_values(name: str, command: str) -> list[str]:
    table = GOOD.get(name) or GOOD.get("file")
    return table.get(command, table["*"])


# Valid numbers are kept cheap (an example must finish in seconds); everything else is fair game.
CHEAP_VALID = {"epochs": ["0.05", "0.5", "1"], "threads": ["1", "2"], "max_length": ["8", "32"],
               "top_k": ["1", "2", "9"],
               "check_samples": ["1", "5", "500"], "train_samples": ["12", "20"], "test_samples": ["1", "5"],
               "learning_rate": ["1e-3", "3e-3"], "validation_fraction": ["0.2", "0.5"]}
NO_UPPER_BOUND_RUN = {"epochs", "threads"}  # their largest valid value would run for hours
INVALID_NUMBERS = ["nan", "NaN", "inf", "-inf", "+inf", "1e999", "-1e999", "abc", "", " ", "0x10", "1.5.1", "½",
                   "１", "1,000", "--1", "None", "true"]


def bounds(field) -> dict[str, float]:
    metadata = list(field.metadata)
    for arg in typing.get_args(field.annotation):  # Optional[Annotated[int, Field(ge=...)]]
        for inner in typing.get_args(arg)[1:]:
            metadata += getattr(inner, "metadata", [])
    return {k: getattr(m, k) for m in metadata for k in ("ge", "gt", "le", "lt") if hasattr(m, k)}


def number_values(name: str, field) -> tuple[list[str], list[str]]:
    """(valid, boundary and invalid) values of a numeric option."""
    kind = _base_type(field.annotation)
    limits = bounds(field)
    valid = list(CHEAP_VALID.get(name, ["1", "2", "3"] if kind is int else ["0.001", "0.1", "0.5"]))
    other = ["0", "-1", "-0", "1e-320", "-1e-9", str(INT_MAX + 1), str(2**63), "3.0" if kind is int else "3"]
    for key, edge in limits.items():
        for v in (edge - 1, edge, edge + 1) if kind is int else (edge * 0.999, edge, edge * 1.001 + 1e-9):
            if key in ("le", "lt") and name in NO_UPPER_BOUND_RUN and v <= edge:
                continue
            other.append(str(int(v)) if kind is int else repr(float(v)))
    return valid, other + INVALID_NUMBERS


@st.composite
def option_values(draw, name: str, field, command: str) -> list[str]:
    """argv for one option: its flag and a value, mostly a working one, else a boundary or invalid one."""
    flag = "--" + name.replace("_", "-")
    base = _base_type(field.annotation)
    good = draw(st.sampled_from([True, True, True, True, True, False]))  # 5 in 6 (shrinks towards a good one)
    if field.annotation is bool:
        return draw(st.sampled_from([[flag], [f"--no-{flag[2:]}"]]))
    if typing.get_origin(base) is typing.Literal:
        choices = list(typing.get_args(base))
        return [flag, draw(st.sampled_from(choices if good else ["nope", "", "AUTO", "int8"]))]
    if base in (int, float):
        valid, other = number_values(name, field)
        return [flag, draw(st.sampled_from(valid if good else other))]
    if good:
        values = [draw(st.sampled_from(good_values(name, command)))]
    else:
        values = [draw(st.sampled_from(BAD[role(name)]) | st.text(max_size=12))]
    if typing.get_origin(base) is list and draw(st.booleans()):
        values.append(draw(st.sampled_from(["text", "label", "body"])))
    return [flag, *values]


def sentences() -> st.SearchStrategy[list[str]]:
    words = st.sampled_from(["goal", "team", "market", "bank", "nasa", "space", "the", "über", "日本", "🙂", ""])
    sentence = st.lists(words, max_size=6).map(" ".join) | st.text(max_size=30)
    return st.lists(sentence, max_size=3)


def config_values(schema) -> st.SearchStrategy[dict]:
    """A YAML mapping: known keys with values of every YAML type, sometimes an unknown key."""
    keys = st.sampled_from([*schema.model_fields, "learnin_rate", "epoch"])
    scalar = st.none() | st.booleans() | st.integers(-3, 10**12) | st.floats(allow_nan=True, allow_infinity=True) \
        | st.sampled_from(["0.5", "text", "auto", "fp8", "", "data", "trained"])
    value = scalar | st.lists(scalar, max_size=2) | st.dictionaries(st.text(max_size=3), scalar, max_size=1)
    return st.dictionaries(keys, value, max_size=3)


NEEDED = {  # what a command needs to get past its first check; given nearly always, so examples go deep
    "train": {"model": 0.97, "output": 0.9, "data": 0.9, "epochs": 1.0},
    "evaluate": {"model": 0.97, "test_file": 0.8, "output": 0.7},
    "predict": {"model": 0.97, "input": 0.7, "output": 0.75},
    "export": {"model": 0.97, "output": 0.97},
}


@st.composite
def command_lines(draw, commands=tuple(COMMAND_CONFIGS)) -> tuple[str, list[str], dict | None]:
    command = draw(st.sampled_from(commands))
    schema = COMMAND_CONFIGS[command]
    argv = [command]
    for name, field in schema.model_fields.items():
        if any(isinstance(m, Positional) for m in field.metadata):
            continue
        if draw(st.integers(0, 99)) < 100 * NEEDED[command].get(name, 0.1):
            argv += draw(option_values(name, field, command))
    if "ag_news" in argv and "--data-dir" not in argv and draw(st.floats(0, 1)) < 0.9:
        argv += ["--data-dir", "agdir"]  # AG News from the hub is one case; the local copy is the deep one
    if command == "predict" and (draw(st.booleans()) or "--input" not in argv):
        argv += ["--", *draw(sentences())]
    config = draw(config_values(schema)) if draw(st.floats(0, 1)) < 0.15 else None
    return command, argv, config


# --- input files ---------------------------------------------------------------------------------------------

ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "latin-1", "cp1252"]
GOOD_CELLS = ["goal team", "market bank", "nasa space", "sports", "business", "science", "None", "NA", "null", "1",
              "a\nb", 'say "hi"', "x,y", "über 日本 🙂"]
BAD_CELLS = st.text(max_size=15) | st.none() | st.sampled_from(["", " ", "\t", "01", "1.0", " 1", "\r"])


@st.composite
def cell(draw):
    """Mostly a cell that reads fine (so that examples get past the first row), sometimes any text or a null."""
    return draw(st.sampled_from(GOOD_CELLS)) if draw(st.sampled_from([True] * 7 + [False])) else draw(BAD_CELLS)



@st.composite
def input_files(draw) -> tuple[str, bytes, list[str]]:
    """(file name, its bytes, extra flags)."""
    kind = draw(st.sampled_from(["table", "table", "table", "bytes", "empty", "header", "wide", "huge", "labels"]))
    fmt = draw(st.sampled_from(["csv", "tsv", "jsonl", "parquet", "txt"]))
    encoding = draw(st.sampled_from(ENCODINGS))
    flags = ["--encoding", draw(st.sampled_from([encoding, "utf-8", "utf-16"]))] if draw(st.booleans()) else []
    if kind == "bytes":
        return f"fuzz.{fmt}", draw(st.binary(max_size=200)), flags
    if kind == "empty":
        return f"fuzz.{fmt}", b"", flags
    columns = ["text", "label"]
    if kind == "wide":
        columns = draw(st.lists(st.sampled_from(["text", "label", "body", ""]), min_size=1, max_size=4))
    n = draw(st.integers(0 if kind == "header" else 1, 12)) if kind != "labels" else 400
    rows = []
    for i in range(n):
        row = {}
        for c in columns:
            row[c] = draw(cell()) if kind != "labels" else (f"goal team {i}" if c == "text" else f"l{i % 300}")
        if kind == "huge" and i == 0:
            row["text"] = "goal " * 40_000
        rows.append(row)
    if fmt == "parquet":
        frame = pd.DataFrame(rows, columns=list(dict.fromkeys(columns)))
        buffer = io.BytesIO()
        try:
            frame.astype(object).to_parquet(buffer)
        except Exception:  # noqa: BLE001  a frame pyarrow cannot write (mixed types): write it as CSV text
            fmt = "csv"
        else:
            return "fuzz.parquet", buffer.getvalue(), flags
    if fmt == "jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    elif fmt == "txt":
        text = "".join(f"{r.get('text') or ''}\n" for r in rows)
    else:
        sep = "\t" if fmt == "tsv" else ","
        frame = pd.DataFrame([[r.get(c) for c in columns] for r in rows], columns=columns)
        text = frame.to_csv(index=False, sep=sep, lineterminator=draw(st.sampled_from(["\n", "\r\n", "\r"])))
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        data = text.encode("utf-8")
    return f"fuzz.{fmt}", data, flags


# --- running an example and checking the invariants ----------------------------------------------------------------

def outputs_of(command: str, argv: list[str], config: str | None) -> tuple[list[Path], bool]:
    """Where the command may write, and whether it may replace what is there, as the schema resolves it."""
    args = build_parser().parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config", "quiet")}
    try:
        cfg = build_config(COMMAND_CONFIGS[command], config, flags)
    except HeadclsError:
        return [], False
    replace = bool(getattr(cfg, "overwrite", False) or getattr(cfg, "resume", False))
    if command == "evaluate" and not cfg.output:
        return [Path(cfg.model).resolve() / "eval-test", Path(cfg.model).resolve() / "eval-validation"], replace
    if command == "predict" and not cfg.input:
        return [], replace
    return [Path(cfg.output).resolve()], replace


def within(path: Path, folders: list[Path]) -> bool:
    return any(path == f or f in path.parents for f in folders)


def check_example(root: Path, command: str, argv: list[str], config: dict | None, files: dict[str, bytes]) -> None:
    import torch

    for name, data in files.items():
        (root / name).write_bytes(data)
    config_file = None
    if config is not None:
        (root / "fuzz.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        config_file = "fuzz.yaml"
        argv = [argv[0], "--config", config_file, *argv[1:]]
    note(f"argv: {argv}")
    before = snapshot(root)
    threads = torch.get_num_threads()
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["-q", *argv])
    finally:
        torch.set_num_threads(threads)
    stderr = err.getvalue()
    note(f"exit {code}; stderr: {stderr[-2000:]}")
    event(f"{command} exit {code}")  # --hypothesis-show-statistics: how deep the examples go
    if os.environ.get("HEADCLS_FUZZ_EVENTS"):
        event(stderr.strip().splitlines()[-1][:90] if stderr.strip() else "-")
    assert code in (0, 2, 130), stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("headcls: error:")]
    if code == 2:
        assert len(errors) == 1, stderr
        given_values = argv[1:]
        flags = {"--" + n.replace("_", "-") for n in COMMAND_CONFIGS[command].model_fields}  # a missing one
        named = {*given_values, *(Path(a).name for a in given_values), *(config or {}), *flags, "sentence", "fuzz.yaml"}
        named = {printable(n) for n in named}  # as the CLI shows them: control characters escaped
        named = {n for n in named if n.strip()}
        assert any(n in errors[0] for n in named), f"the error names nothing given: {errors[0]}"
    else:
        assert not errors, stderr

    after = snapshot(root)
    targets, replace = outputs_of(command, argv, config_file) if code == 0 else ([], False)
    for name, data in before.items():
        if after.get(name) != data:
            assert replace and within((root / name).resolve(), targets), f"{name} changed or vanished"
    new = [name for name in after if name not in before]
    leftovers = [n for n in new if any(s in n for s in (".lock", ".staging-", ".partial-", ".old-"))]
    assert not leftovers, leftovers
    # A training run stopped by an interrupt or a NaN loss keeps its checkpoints, and says so.
    kept = code == 130 or (code == 2 and "checkpoint" in errors[0])
    new = [n for n in new if not (kept and ".checkpoints/" in n)]
    if code != 0:
        assert not new, f"a failed run left {new}"
        return
    for name in new:
        assert within((root / name).resolve(), targets), f"{name} written outside the output {targets}"
    check_outputs(command, targets, out.getvalue())


def check_outputs(command: str, targets: list[Path], stdout: str) -> None:
    for line in stdout.splitlines() if command == "predict" else []:
        record = json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in the output"))
        assert 0 <= record["score"] <= 1
    written = [t for t in targets if t.exists()]
    if command == "train":
        [folder] = written
        for name in ("config.json", "model.safetensors", "metrics.json", "predictions.csv", "tokenizer.json"):
            assert (folder / name).is_file(), name
    elif command == "evaluate":
        [folder] = written
        assert (folder / "metrics.json").is_file() and (folder / "predictions.csv").is_file()
    elif command == "export":
        [folder] = written
        assert (folder / "model.onnx").is_file() and (folder / "config.json").is_file()
    elif command == "predict" and written:
        [path] = written
        if path.suffix == ".jsonl":
            for line in path.read_text(encoding="utf-8").splitlines():
                assert 0 <= json.loads(line, parse_constant=lambda c: pytest.fail(c))["score"] <= 1
        else:
            frame = pd.read_csv(path, keep_default_na=False)
            assert list(frame.columns[:3]) == ["text", "label", "score"]
            assert frame["score"].between(0, 1).all()


def budget(share: float) -> int:
    """A share of the profile's example count (the ci profile keeps the whole file to a few minutes)."""
    return max(1, int(settings.default.max_examples * share))


# --- the properties ------------------------------------------------------------------------------------------------

@settings(max_examples=budget(1.0))
@given(example=command_lines(("predict", "evaluate", "export")))
def test_any_command_line_of_the_cheap_commands(world, example):
    command, argv, config = example
    with sandbox(world) as root:
        check_example(root, command, argv, config, {})


@settings(max_examples=budget(0.75))
@given(example=command_lines(("train",)))
def test_any_train_command_line(world, example):
    command, argv, config = example
    with sandbox(world) as root:
        check_example(root, command, argv, config, {})


@settings(max_examples=budget(1.0))
@given(file=input_files(), command=st.sampled_from(["predict", "evaluate", "train"]), overwrite=st.booleans())
def test_any_input_file(world, file, command, overwrite):
    name, data, flags = file
    # With --overwrite the output exists already (it must be replaced whole); without, it is new.
    if command == "predict":
        argv = ["predict", "--model", "trained", "--input", name, "--output", "existing.csv" if overwrite else "o.csv"]
    elif command == "evaluate":
        argv = ["evaluate", "--model", "trained", "--test-file", name, "--output", "report" if overwrite else "new"]
    else:
        argv = ["train", "--model", "tiny", "--train-file", name, "--test-file", "data/test.csv", "--output",
                "trained" if overwrite else "out", "--epochs", "0.5", "--no-baseline"]
    argv += flags + (["--overwrite"] if overwrite else [])
    with sandbox(world) as root:
        check_example(root, argv[0], argv, None, {name: data})
