"""Class probabilities + true labels -> the evaluate report the README describes, every figure from
scikit-learn."""

from __future__ import annotations

import warnings

import numpy as np

from fusionapp.evaluation.calibration import brier_score, expected_calibration_error
from fusionapp.evaluation.multilabel import multilabel_report
from fusionapp.preprocessing.labels import unknown_label_counts

def prediction_report(model, examples, predictions, n_skipped: int = 0) -> dict:
    """The evaluate report of a model's `predictions` on labelled `examples`: the single-label report,
    or for a multi-label model the multi-label one (fusionapp/multilabel_metrics.py)."""
    preprocessor = model.preprocessor
    y_true = preprocessor.label_targets(examples.labels)
    if not preprocessor.multi_label:
        return classification_report(y_true, predictions.probabilities, predictions.predicted,
                                     preprocessor.class_names, n_skipped)
    return multilabel_report(y_true, predictions.probabilities, predictions.predicted, preprocessor.class_names,
                             predictions.thresholds, n_skipped,
                             unknown_label_counts(examples.labels, preprocessor.label_sep, preprocessor.class_names))


def classification_report(y_true, probabilities, y_pred, class_names, n_skipped: int = 0) -> dict:
    """The evaluate report for integer labels `y_true`, an (n, classes) probability matrix and the
    predicted classes `y_pred` (the raw-input function's decisions).

    Macro averages are over the classes the rows hold (scikit-learn's with `labels=` those): a class
    without rows has no recall to average, and counting it as 0 would score the model on the data's
    make-up. Such classes are listed under `absent_classes`; `per_class` keeps every class."""
    from sklearn import metrics

    y_true = np.asarray(y_true)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    # float32 softmax rows sum to 1 only within ~1e-7; scikit-learn's log_loss warns about that.
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    y_pred = np.asarray(y_pred)
    labels = list(range(len(class_names)))
    present = sorted(set(np.unique(y_true).tolist()))
    precision, recall, f1, _ = metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=present, average="macro", zero_division=0)
    per_class = metrics.classification_report(
        y_true, y_pred, labels=labels, target_names=list(class_names), output_dict=True, zero_division=0)
    auc, auc_note = _roc_auc(y_true, probabilities, present, len(labels))
    return {
        "n_examples": int(len(y_true)),
        "n_skipped": int(n_skipped),
        "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(_balanced_accuracy(y_true, y_pred)),
        "macro_precision": float(precision),
        "macro_recall": float(recall),
        "macro_f1": float(f1),
        "weighted_f1": float(metrics.f1_score(y_true, y_pred, labels=present, average="weighted", zero_division=0)),
        "log_loss": float(metrics.log_loss(y_true, probabilities, labels=labels)),
        "roc_auc": auc,
        "roc_auc_note": auc_note,
        "ece": expected_calibration_error(y_true, probabilities),
        "brier": brier_score(y_true, probabilities, len(class_names)),
        "absent_classes": [name for k, name in enumerate(class_names) if k not in present],
        "per_class": {
            name: {"precision": float(per_class[name]["precision"]), "recall": float(per_class[name]["recall"]),
                   "f1": float(per_class[name]["f1-score"]), "support": int(per_class[name]["support"])}
            for name in class_names
        },
        "confusion_matrix": {
            "labels": list(class_names),
            "matrix": metrics.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        },
    }


def _balanced_accuracy(y_true, y_pred) -> float:
    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        # Classes absent from y_true are left out of the mean, which is what we want to report.
        warnings.simplefilter("ignore")
        return balanced_accuracy_score(y_true, y_pred)


def _roc_auc(y_true, probabilities, present: list[int], num_classes: int) -> tuple[float | None, str | None]:
    """(ROC AUC, why it is None). Binary: the AUC of the positive (second) class; multiclass: the
    mean one-vs-rest AUC of the classes the rows hold (scikit-learn's macro one-vs-rest where every
    class is present). A class needs rows with it and rows without it to have an AUC."""
    from sklearn.metrics import roc_auc_score

    if len(present) < 2:
        held = "no rows" if not present else "rows of one class only"
        return None, f"ROC AUC needs rows of at least two classes; these rows hold {held}"
    if num_classes == 2:
        return float(roc_auc_score(y_true, probabilities[:, 1])), None
    if len(present) == num_classes:
        return float(roc_auc_score(y_true, probabilities, multi_class="ovr", average="macro",
                                   labels=list(range(num_classes)))), None
    return float(np.mean([roc_auc_score(y_true == k, probabilities[:, k]) for k in present])), None
