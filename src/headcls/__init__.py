"""headcls: head-based text classification — fine-tune a BERT-family encoder with a [CLS] head, evaluate,
save, and classify text fast.

The Python API mirrors the command line; each entry point takes the options of its command, checked by the same
schema (`headcls.options`), and raises `HeadclsError` for a mistake the user can fix:

    headcls.train(...)            headcls train     -> the metrics (accepts transformers TrainerCallbacks)
    headcls.evaluate(...)         headcls evaluate  -> the metrics
    headcls.export_onnx(...)      headcls export    -> the self-check figures
    headcls.predict_dataset(...)  headcls predict --engine ray -> the run's summary
    headcls.Classifier            load a trained folder and classify texts
"""

from headcls.errors import HeadclsError, Interrupted

__all__ = ["Classifier", "EvaluateConfig", "ExportConfig", "HeadclsError", "Interrupted", "PredictConfig",
           "ServeConfig", "TrainConfig", "evaluate", "export_onnx", "predict_dataset", "train"]
__version__ = "0.1.0"

# name -> module; imported on first use, so that `headcls --help` and a Ctrl-C at start stay quick
_LAZY = {
    "Classifier": "headcls.inference.classifier",
    "train": "headcls.training.run",
    "evaluate": "headcls.evaluation.command",
    "export_onnx": "headcls.export.onnx",
    "predict_dataset": "headcls.inference.ray_engine",
    "TrainConfig": "headcls.options.commands",
    "EvaluateConfig": "headcls.options.commands",
    "PredictConfig": "headcls.options.commands",
    "ExportConfig": "headcls.options.commands",
    "ServeConfig": "headcls.options.commands",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'headcls' has no attribute {name!r}")
