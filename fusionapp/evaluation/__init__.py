"""Scoring: `evaluate` on labelled rows, the scikit-learn reports (single- and multi-label,
calibration figures), their text form, and the plots."""

from fusionapp.evaluation.evaluate import evaluate

__all__ = ["evaluate"]
