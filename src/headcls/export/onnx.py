"""`headcls export`: an ONNX Runtime model folder (fp32 or dynamic int8) that predicts without torch.

The export checks itself: both models predict the same held-out rows, and the agreement and accuracy
difference are printed.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path

from headcls.errors import HeadclsError
from headcls.modeling.folder import CONFIG_FILE, ONNX_COPIED, ONNX_FILE
from headcls.options.commands import ExportConfig
from headcls.options.loading import options_for

logger = logging.getLogger(__name__)



def _export_onnx(folder: str, path: Path, fast_paths: bool = True) -> None:
    import torch

    from headcls.modeling.loading import load_classifier, load_tokenizer

    model = load_classifier(folder, fast_paths=fast_paths).eval()
    tokenizer = load_tokenizer(folder)
    sample = tokenizer(["an example sentence", "and a second, somewhat longer one"], padding=True, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *inputs):
            return self.inner(**dict(zip(names, inputs))).logits

    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch"}
    with torch.inference_mode(), warnings.catch_warnings():
        # The tracer's warnings are about Python branches on shapes that this graph keeps dynamic: not the user's.
        warnings.simplefilter("ignore")
        # The TorchScript exporter: dynamic batch and sequence axes, and no extra dependency (onnxscript).
        torch.onnx.export(
            Logits(model),
            tuple(sample[n] for n in names),
            str(path),
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


def _check_rows(model: Path, cfg: ExportConfig, labels: list[str], multi_label: bool = False):
    """Held-out labelled rows: --check-file (read with --text-column, --label-column, --label-separator), else the
    test predictions that `headcls train` saved (a multi-label model's: its label cells are JSON lists)."""
    import json

    from headcls.data.splits import read_labelled
    from headcls.files.columns import is_multi_label, label_set
    from headcls.options.fields import Columns

    path = Path(cfg.check_file) if cfg.check_file else model / "predictions.csv"
    if not cfg.check_file and not path.is_file():
        return None, None
    # --check-file is read with this command's column options; predictions.csv has the columns headcls writes
    frame = read_labelled(path, cfg if cfg.check_file else Columns())
    if multi_label:
        try:
            frame["label"] = [n if isinstance(n, tuple) else tuple(json.loads(n)) if not cfg.check_file else (n,)
                              for n in frame["label"]]
        except (json.JSONDecodeError, TypeError):
            raise HeadclsError(f"{path}: the label cells are not the JSON lists headcls writes") from None
    elif is_multi_label(frame["label"]):  # an accuracy of lists against single labels would be 0, said as a score
        raise HeadclsError(f"{path}: its labels are lists (several per row) but the model gives one label per text")
    unknown = sorted(label_set(frame["label"]) - set(labels))
    if unknown:  # an accuracy against labels the model cannot give would say nothing
        raise HeadclsError(f"{path}: label {unknown[0]!r} is not one the model knows; its labels are: "
                           f"{', '.join(labels)}")
    return frame.head(cfg.check_samples), path


def export_onnx(cfg: ExportConfig | None = None, /, *, echo=print, **options) -> dict:
    """Export MODEL to OUTPUT/model.onnx (+ config and tokenizer); return the self-check figures. The options are
    those of `headcls export` (an `ExportConfig`, or keyword arguments named like its flags, checked by the same
    schema).

    Example:
        >>> import headcls
        >>> headcls.export_onnx(model="outputs/ag", output="outputs/ag-int8", int8=True)
    """
    cfg = options_for(ExportConfig, cfg, options)
    from headcls.files.outputs import check_replaceable, output_lock, target
    from headcls.modeling.folder import check_model_folder, check_model_path, check_tokenizer_files, config_labels

    check_model_path(cfg.model)
    source, out = Path(cfg.model), target(cfg.output)
    labels = config_labels(check_model_folder(source), source)
    if not any(source.glob("*.safetensors")):
        raise HeadclsError(f"--model {cfg.model}: export needs a model folder with model.safetensors")
    check_tokenizer_files(source)
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise HeadclsError("export needs ONNX Runtime: pip install 'headcls[onnx]'") from None
    with output_lock(out):
        check_replaceable(out, cfg.overwrite)
        return _export(cfg, source, out, labels, echo)


def _export(cfg: ExportConfig, source: Path, out: Path, labels: list[str], echo) -> dict:
    from headcls.files.outputs import staged_folder
    from headcls.modeling.folder import is_multi_label, read_json

    int8 = cfg.int8
    multi_label = is_multi_label(read_json(source / CONFIG_FILE))
    rows, check_path = _check_rows(source, cfg, labels, multi_label)
    report: dict = {}
    with staged_folder(out) as staging:
        for name in ONNX_COPIED:
            if (source / name).is_file():
                shutil.copy2(source / name, staging / name)
        fp32 = staging / ONNX_FILE
        _export_onnx(str(source), fp32, cfg.fast_paths)
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantized = staging / "model.int8.onnx"
            # Per-channel weight scales: as fast as per-tensor here and closer to fp32 (AG News test rows:
            # -0.2 points against -0.55 on the first 2,000, +0.02 against -0.21 on all 7,600).
            quantize_dynamic(str(fp32), str(quantized), weight_type=QuantType.QInt8, per_channel=True)
            quantized.replace(fp32)
        report["onnx_bytes"] = fp32.stat().st_size
        report["source_bytes"] = sum(p.stat().st_size for p in source.glob("*.safetensors"))
        if rows is not None:
            report |= _compare(source, staging, rows)
            report["check_file"] = str(check_path)
    kind = "int8" if int8 else "fp32"
    echo(
        f"Exported {source} -> {out}/model.onnx ({kind}, {report['onnx_bytes'] / 1e6:.1f} MB; "
        f"safetensors {report['source_bytes'] / 1e6:.1f} MB)"
    )
    if "agreement" in report:
        echo(
            f"Self-check on {report['rows']} held-out rows of {report['check_file']}: agreement "
            f"{report['agreement']:.4f}; accuracy torch {report['accuracy_torch']:.4f}, "
            f"onnx {report['accuracy_onnx']:.4f} (difference {report['accuracy_onnx'] - report['accuracy_torch']:+.4f})"
        )
    else:
        echo("No held-out rows to check against (pass --check-file FILE with text,label columns)")
    return report


def _compare(source: Path, exported: Path, rows) -> dict:
    from headcls.inference.classifier import Classifier
    from headcls.inference.rows import chosen

    texts = rows["text"].tolist()
    reference = Classifier.from_pretrained(source, backend="torch", precision="fp32")
    torch_labels = [chosen(r) for r in reference.predict(texts)]
    onnx_labels = [chosen(r) for r in Classifier.from_pretrained(exported, backend="onnx").predict(texts)]
    truth = [set(n) if isinstance(n, tuple) else n for n in rows["label"]]
    n = len(texts)
    return {
        "rows": n,
        "agreement": sum(a == b for a, b in zip(torch_labels, onnx_labels)) / n,
        "accuracy_torch": sum(a == b for a, b in zip(torch_labels, truth)) / n,
        "accuracy_onnx": sum(a == b for a, b in zip(onnx_labels, truth)) / n,
    }
