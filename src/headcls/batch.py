"""Where `predict_dataset` lived before the packages: kept so that `headcls.batch.predict_dataset` still works."""

from headcls.inference.ray_engine import predict_dataset

__all__ = ["predict_dataset"]
