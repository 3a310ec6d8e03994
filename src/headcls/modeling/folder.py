"""The saved model folder, read and written here only: file names, config.json checks, labels, and the
`headcls` section of config.json (how the model reads long texts, its thresholds, the learning rates it was
trained with)."""

from __future__ import annotations

import json
from pathlib import Path

from headcls.errors import HeadclsError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ONNX_FILE = "model.onnx"
METRICS_FILE = "metrics.json"
# Files an ONNX export copies beside model.onnx: the config (labels) and the tokenizer, nothing with weights.
ONNX_COPIED = (CONFIG_FILE, "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
MULTI_LABEL = "multi_label_classification"  # transformers' problem_type: sigmoid + BCE, and sigmoid in pipeline


def is_multi_label(config) -> bool:
    """Whether a model config (a transformers config, or config.json read as a dict) has a sigmoid per label."""
    kind = config.get("problem_type") if isinstance(config, dict) else getattr(config, "problem_type", None)
    return kind == MULTI_LABEL


def checkpoint_dir(output: Path) -> Path:
    """Where a run writing `output` keeps its checkpoints and TensorBoard logs while it trains."""
    return output.with_name(output.name + ".checkpoints")


def written_by_headcls(folder: Path) -> bool:
    """A report (metrics.json: train, evaluate) or a model folder (config.json beside weights: train, export)."""
    has = {p.name for p in folder.iterdir()}
    return METRICS_FILE in has or (CONFIG_FILE in has and bool(has & {WEIGHTS_FILE, ONNX_FILE}))


def read_json(path: Path) -> dict:
    """A JSON object from a model folder, or a one-line error naming the file."""
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise HeadclsError(f"{path}: not valid JSON ({str(e).splitlines()[0]}); the file is corrupt") from None
    if not isinstance(value, dict):
        raise HeadclsError(f"{path}: holds a JSON {type(value).__name__}, not an object; the file is corrupt")
    return value


def check_model_folder(folder: Path) -> dict:
    """Refuse folders that cannot be loaded safely, with the reason; return the parsed config.json."""
    if not (folder / "config.json").is_file():
        raise HeadclsError(f"{folder}: no config.json; not a Hugging Face model folder")
    config = read_json(folder / "config.json")
    if not isinstance(config.get("model_type"), str):
        raise HeadclsError(f"{folder}/config.json: has no model_type; not a Hugging Face model config")
    positions = config.get("max_position_embeddings", 512)
    if isinstance(positions, bool) or not isinstance(positions, int) or positions < 1:
        raise HeadclsError(f"{folder}/config.json: max_position_embeddings must be a positive whole number")
    has_safetensors = any(folder.glob("*.safetensors")) or (folder / "model.onnx").is_file()
    if not has_safetensors:
        if any(folder.glob("pytorch_model*.bin")):
            raise HeadclsError(
                f"{folder}: holds only pickle weights (pytorch_model.bin), which can run code when loaded; "
                "convert them to safetensors first"
            )
        raise HeadclsError(f"{folder}: no model weights (model.safetensors) in the folder")
    return config


def config_labels(config: dict, folder: Path) -> list[str]:
    """The label names of a classifier's config.json, in id order: ids 0..n-1 with no gap, names unique."""
    where = f"{folder}/config.json"
    id2label = config.get("id2label")
    if id2label is None:
        count = config.get("num_labels", 2)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise HeadclsError(f"{where}: num_labels must be a positive whole number, got {count!r}")
        return [f"LABEL_{i}" for i in range(count)]
    if not isinstance(id2label, dict) or not id2label:
        raise HeadclsError(f"{where}: id2label must map ids 0..n-1 to label names")
    try:
        ids = {int(k): v for k, v in id2label.items()}
    except (TypeError, ValueError):
        raise HeadclsError(f"{where}: id2label has a key that is not a whole number") from None
    gaps = sorted(set(range(len(ids))) - set(ids))
    if gaps:
        raise HeadclsError(f"{where}: id2label has no label for id {gaps[0]}; ids must run 0..{len(ids) - 1}")
    names = [ids[i] for i in range(len(ids))]
    if not all(isinstance(n, str) and n for n in names):
        raise HeadclsError(f"{where}: id2label names must be non-empty strings")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise HeadclsError(f"{where}: id2label names {repeated[0]!r} more than once; each label needs its own name")
    count = config.get("num_labels", len(names))
    if count != len(names):
        raise HeadclsError(f"{where}: num_labels is {count!r} but id2label names {len(names)} labels")
    return names


def check_model_path(name: str) -> None:
    """A local --model must be a folder (not a file inside it)."""
    path = Path(name)
    if path.is_file():
        raise HeadclsError(f"--model {name}: is a file; give the model folder (e.g. {path.parent})")
    if not path.is_dir():
        raise HeadclsError(f"--model {name}: no such folder")


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")


def check_tokenizer_files(folder: Path) -> None:
    """A model folder must carry its tokenizer: without one, transformers builds an empty default tokenizer that
    reads every word as [UNK], and the model predicts one label for everything."""
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise HeadclsError(
            f"{folder}: no tokenizer (tokenizer.json or a vocabulary file); copy the tokenizer files saved with the "
            "model into the folder"
        )



SETTINGS = "headcls"  # the section of config.json that holds headcls's own settings


def write_settings(config, *, long_text: dict, learning_rates: dict | None = None) -> None:
    """Set the `headcls` section of a transformers config, saved with it into config.json: how the model reads
    long texts (read by `Classifier`) and, where they differ by part, the peak learning rates it was trained with
    (both checked by --resume)."""
    section = {"long_text": long_text}
    if learning_rates is not None:
        section["learning_rates"] = learning_rates
    setattr(config, SETTINGS, section)


def write_thresholds(folder: Path, thresholds: dict[str, float]) -> None:
    """Add a multi-label model's per-label thresholds to the `headcls` section of its saved config.json."""
    path = folder / CONFIG_FILE
    config = json.loads(path.read_text(encoding="utf-8"))
    config.setdefault(SETTINGS, {})["thresholds"] = thresholds
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def saved_settings(config) -> dict:
    """The `headcls` section of a transformers config or of a config.json read as a dict, as saved ({} if none)."""
    value = config.get(SETTINGS) if isinstance(config, dict) else getattr(config, SETTINGS, None)
    return value or {}


def settings(config: dict, folder: Path) -> dict:
    """The `headcls` entry of a model's config.json: thresholds and how long texts are read (absent: none); it
    may also hold the learning rates per part the model was trained with (checked by --resume, unused here)."""
    value = saved_settings(config)
    if not isinstance(value, dict):
        raise HeadclsError(f"{folder}/config.json: 'headcls' must be an object; the file is corrupt")
    thresholds = value.get("thresholds")
    if thresholds is not None and not (
        isinstance(thresholds, dict)
        and all(isinstance(t, (int, float)) and not isinstance(t, bool) and 0 <= t <= 1 for t in thresholds.values())
    ):
        raise HeadclsError(f"{folder}/config.json: headcls.thresholds must map labels to numbers in [0, 1]")
    if not isinstance(value.get("long_text") or {}, dict):
        raise HeadclsError(f"{folder}/config.json: headcls.long_text must be an object; the file is corrupt")
    return value
