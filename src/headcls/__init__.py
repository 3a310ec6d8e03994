"""headcls: head-based text classification — fine-tune a BERT-family encoder with a [CLS] head, evaluate,
save, and classify text fast."""

from headcls.errors import HeadclsError
from headcls.predict import Classifier

__all__ = ["Classifier", "HeadclsError"]
__version__ = "0.1.0"
