"""headcls: head-based text classification — fine-tune a BERT-family encoder with a [CLS] head, evaluate,
save, and classify text fast."""

from headcls.errors import HeadclsError

__all__ = ["Classifier", "HeadclsError"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Classifier":  # imported on first use: `headcls --help` and a Ctrl-C at start stay quick
        from headcls.predict import Classifier

        return Classifier
    raise AttributeError(f"module 'headcls' has no attribute {name!r}")
