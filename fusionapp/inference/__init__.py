"""Running a trained model: the one raw-input function (`raw`), `predict` and its answers, the
explanations, and the SavedModel export."""

from fusionapp.inference.predict import predict

__all__ = ["predict"]
