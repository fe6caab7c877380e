"""Class probabilities + true labels -> the evaluate report the README describes, every figure from
scikit-learn."""

from __future__ import annotations

import numpy as np

from fusionapp.calibration import brier_score, expected_calibration_error

REPORT_KEYS = ("n_examples", "n_skipped", "accuracy", "balanced_accuracy", "macro_precision",
               "macro_recall", "macro_f1", "weighted_f1", "log_loss", "roc_auc", "ece", "brier", "per_class",
               "confusion_matrix")


def prediction_report(model, examples, predictions, n_skipped: int = 0) -> dict:
    """The evaluate report of a model's `predictions` on labelled `examples`: the single-label report,
    or for a multi-label model the multi-label one (fusionapp/multilabel_metrics.py)."""
    preprocessor = model.preprocessor
    y_true = preprocessor.label_targets(examples.labels)
    if not preprocessor.multi_label:
        return classification_report(y_true, predictions.probabilities, preprocessor.class_names, n_skipped)
    from fusionapp.preprocessing.labels import unknown_label_counts
    from fusionapp.decision import label_thresholds
    from fusionapp.multilabel_metrics import multilabel_report

    return multilabel_report(y_true, predictions.probabilities, predictions.chosen, preprocessor.class_names,
                             label_thresholds(model), n_skipped,
                             unknown_label_counts(examples.labels, preprocessor.label_sep, preprocessor.class_names))


def classification_report(y_true, probabilities, class_names, n_skipped: int = 0) -> dict:
    """The evaluate report for integer labels `y_true` and an (n, classes) probability matrix."""
    from sklearn import metrics

    y_true = np.asarray(y_true)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    # float32 softmax rows sum to 1 only within ~1e-7; scikit-learn's log_loss warns about that.
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    y_pred = probabilities.argmax(axis=1)
    labels = list(range(len(class_names)))
    precision, recall, f1, _ = metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average="macro", zero_division=0)
    per_class = metrics.classification_report(
        y_true, y_pred, labels=labels, target_names=list(class_names), output_dict=True, zero_division=0)
    return {
        "n_examples": int(len(y_true)),
        "n_skipped": int(n_skipped),
        "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(_balanced_accuracy(y_true, y_pred)),
        "macro_precision": float(precision),
        "macro_recall": float(recall),
        "macro_f1": float(f1),
        "weighted_f1": float(metrics.f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "log_loss": float(metrics.log_loss(y_true, probabilities, labels=labels)),
        "roc_auc": _roc_auc(y_true, probabilities, labels),
        "ece": expected_calibration_error(y_true, probabilities),
        "brier": brier_score(y_true, probabilities, len(class_names)),
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
    import warnings

    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        # Classes absent from y_true are left out of the mean, which is what we want to report.
        warnings.simplefilter("ignore")
        return balanced_accuracy_score(y_true, y_pred)


def _roc_auc(y_true, probabilities, labels) -> float | None:
    """Binary: AUC of the positive (second) class; multiclass: macro one-vs-rest.

    Undefined (None) when the rows hold fewer than two classes, or for multiclass when some class
    never occurs, since scikit-learn cannot score a class without positives.
    """
    from sklearn.metrics import roc_auc_score

    present = np.unique(y_true)
    if len(present) < 2:
        return None
    if len(labels) == 2:
        return float(roc_auc_score(y_true, probabilities[:, 1]))
    if len(present) < len(labels):
        return None
    return float(roc_auc_score(y_true, probabilities, multi_class="ovr", average="macro", labels=labels))


def format_report(report: dict, title: str = "Evaluation") -> str:
    """A readable summary: headline figures, per-class table, confusion matrix."""
    if report.get("multi_label"):
        from fusionapp.multilabel_metrics import format_multilabel_report

        return format_multilabel_report(report, title)
    auc = "n/a" if report["roc_auc"] is None else f"{report['roc_auc']:.4f}"
    lines = [
        f"{title}: {report['n_examples']} examples ({report['n_skipped']} skipped)",
        f"  accuracy {report['accuracy']:.4f}   balanced accuracy {report['balanced_accuracy']:.4f}   "
        f"macro-F1 {report['macro_f1']:.4f}   weighted-F1 {report['weighted_f1']:.4f}",
        f"  macro precision {report['macro_precision']:.4f}   macro recall {report['macro_recall']:.4f}   "
        f"log loss {report['log_loss']:.4f}   ROC AUC {auc}",
        f"  calibration: ECE {report['ece']:.4f} (15 bins)   Brier {report['brier']:.4f}",
        "",
    ]
    names = report["confusion_matrix"]["labels"]
    width = max(12, *(len(name) + 2 for name in names))
    lines.append(f"  {'class':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}")
    for name in names:
        row = report["per_class"][name]
        lines.append(f"  {name:<{width}}{row['precision']:>10.4f}{row['recall']:>10.4f}{row['f1']:>10.4f}"
                     f"{row['support']:>10d}")
    lines += ["", "  confusion matrix (rows = true, columns = predicted):"]
    cell = max(6, *(len(name) + 1 for name in names))
    lines.append("  " + " " * width + "".join(f"{name:>{cell}}" for name in names))
    for name, counts in zip(names, report["confusion_matrix"]["matrix"]):
        lines.append(f"  {name:<{width}}" + "".join(f"{count:>{cell}d}" for count in counts))
    return "\n".join(lines)
