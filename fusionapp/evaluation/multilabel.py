"""Label sets + per-label probabilities and decisions -> the multi-label evaluate report, every
figure from scikit-learn's multi-label metrics (labels as 0/1 matrices [rows, labels])."""

from __future__ import annotations

import numpy as np

from fusionapp.evaluation.calibration import brier_score, expected_calibration_error, mean_log_loss

def multilabel_report(y_true, probabilities, chosen, class_names, thresholds=None, n_skipped: int = 0,
                      unknown_labels: dict | None = None) -> dict:
    """The report for true labels `y_true`, probabilities and the chosen labels `chosen` (all
    [rows, labels]); `thresholds` (per label) are listed beside each label's figures."""
    from sklearn import metrics

    y_true = (np.asarray(y_true) > 0.5).astype(int)
    chosen = (np.asarray(chosen) > 0.5).astype(int)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    report = {"multi_label": True, "n_examples": int(len(y_true)), "n_skipped": int(n_skipped),
              "subset_accuracy": float(metrics.accuracy_score(y_true, chosen)),
              "hamming_loss": float(metrics.hamming_loss(y_true, chosen))}
    # Macro averages are over the labels the rows carry, as single-label reports average over the
    # classes present; the others are listed under absent_classes.
    carried = np.flatnonzero(y_true.sum(axis=0) > 0)
    for average in ("micro", "macro", "samples"):
        # A row without labels that is given none is right (1), not undefined (0); with a label given
        # it still scores 0. Labels and the micro average keep 0, as single-label reports do.
        precision, recall, f1, _ = metrics.precision_recall_fscore_support(
            y_true, chosen, average=average, labels=carried if average == "macro" else None,
            zero_division=1.0 if average == "samples" else 0.0)
        report.update({f"{average}_precision": float(precision), f"{average}_recall": float(recall),
                       f"{average}_f1": float(f1)})
    precision, recall, f1, support = metrics.precision_recall_fscore_support(y_true, chosen, average=None,
                                                                             zero_division=0)
    auc = [_label_auc(y_true[:, k], probabilities[:, k]) for k in range(len(class_names))]
    defined = [value for value in auc if value is not None]
    report.update(
        weighted_f1=float(metrics.f1_score(y_true, chosen, average="weighted", zero_division=0)),
        label_ranking_average_precision=float(metrics.label_ranking_average_precision_score(y_true, probabilities)),
        log_loss=mean_log_loss(y_true, probabilities),
        roc_auc=float(np.mean(defined)) if defined else None,
        roc_auc_note=None if defined else "ROC AUC needs a label that some of the rows carry and others do not",
        ece=expected_calibration_error(y_true, probabilities),
        brier=brier_score(y_true, probabilities, len(class_names)),
        label_cardinality=float(y_true.sum(axis=1).mean()) if len(y_true) else 0.0,
        predicted_cardinality=float(chosen.sum(axis=1).mean()) if len(chosen) else 0.0,
        absent_classes=[name for k, name in enumerate(class_names) if k not in set(carried.tolist())],
        per_class={name: {"precision": float(precision[k]), "recall": float(recall[k]), "f1": float(f1[k]),
                          "support": int(support[k]), "roc_auc": auc[k],
                          **({"threshold": float(thresholds[k])} if thresholds is not None else {})}
                   for k, name in enumerate(class_names)},
        unknown_labels=dict(unknown_labels or {}),
    )
    return report


def _label_auc(y_true, scores) -> float | None:
    """One label's ROC AUC; undefined (None) unless the rows hold both carriers and others."""
    from sklearn.metrics import roc_auc_score

    if y_true.min() == y_true.max():
        return None
    return float(roc_auc_score(y_true, scores))
