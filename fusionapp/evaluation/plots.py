"""Pictures of a run: learning curves after training; confusion matrix, ROC and precision-recall
curves after evaluation. matplotlib with the non-interactive Agg backend, written atomically."""

from __future__ import annotations

import os

import numpy as np

from fusionapp.evaluation.calibration import ECE_BINS, expected_calibration_error, is_multi_label, reliability_bins
from fusionapp.runs import files


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: str) -> None:
    with files.atomic_path(path, suffix=".png") as temporary:
        figure.savefig(temporary, dpi=110, bbox_inches="tight", format="png")
    pyplot().close(figure)


def learning_curve(history: list[dict], path: str) -> None:
    """Loss and accuracy (per-label binary accuracy for multi-label runs) per epoch, training and validation."""
    plt = pyplot()
    epochs = [row["epoch"] for row in history]
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    accuracy = "binary_accuracy" if "binary_accuracy" in history[0] else "accuracy"
    for axis, metric in zip(axes, ("loss", accuracy)):
        for prefix, style in (("", "-o"), ("val_", "--o")):
            values = [row.get(prefix + metric) for row in history]
            if all(value is not None for value in values):
                axis.plot(epochs, values, style, markersize=3, label=("validation " if prefix else "training ") + metric)
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    save_figure(figure, path)


def evaluation_plots(y_true, probabilities, predicted, class_names, folder: str) -> list[str]:
    """confusion_matrix.png, roc.png and precision_recall.png (one-vs-rest per class) and
    reliability.png in `folder`. For labels as a 0/1 matrix (multi-label) the curves are per label,
    and there is no confusion matrix: a row's labels are not one class."""
    from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay

    plt = pyplot()
    os.makedirs(folder, exist_ok=True)
    y_true = np.asarray(y_true)
    multi_label = is_multi_label(y_true)
    written = [] if multi_label else [_confusion_matrix(y_true, predicted, class_names, folder)]
    kind = "per label" if multi_label else "one vs rest"
    for name, display, title in (("roc.png", RocCurveDisplay, f"ROC, {kind}"),
                                 ("precision_recall.png", PrecisionRecallDisplay, f"precision-recall, {kind}")):
        figure, axis = plt.subplots(figsize=(6, 5))
        for index, label in enumerate(class_names):
            positives = y_true[:, index] > 0.5 if multi_label else y_true == index
            if positives.any() and not positives.all():
                display.from_predictions(positives, probabilities[:, index], name=label, ax=axis)
        axis.set_title(title)
        axis.grid(alpha=0.3)
        written.append(os.path.join(folder, name))
        save_figure(figure, written[-1])
    written.append(os.path.join(folder, "reliability.png"))
    reliability_diagram(y_true, probabilities, written[-1])
    return written


def _confusion_matrix(y_true, predicted, class_names, folder: str) -> str:
    from sklearn.metrics import ConfusionMatrixDisplay

    figure, axis = pyplot().subplots(figsize=(1.2 * len(class_names) + 3, 1.2 * len(class_names) + 2.5))
    ConfusionMatrixDisplay.from_predictions(y_true, predicted, labels=list(range(len(class_names))),
                                            display_labels=class_names, ax=axis, colorbar=False,
                                            xticks_rotation=45)
    axis.set_title("confusion matrix (rows = true)")
    path = os.path.join(folder, "confusion_matrix.png")
    save_figure(figure, path)
    return path


def reliability_diagram(y_true, probabilities, path: str) -> None:
    """Accuracy against mean confidence in the 15 confidence bins of the ECE, with each bin's rows;
    multi-label: the share of (row, label) forecasts in each bin whose row carries the label."""

    plt = pyplot()
    multi_label = is_multi_label(y_true)
    observed = "share carrying the label" if multi_label else "accuracy"
    bins = reliability_bins(y_true, probabilities)
    figure, (axis, counts) = plt.subplots(2, 1, figsize=(5.5, 6.5), sharex=True,
                                          gridspec_kw={"height_ratios": [3, 1]})
    width = 1.0 / ECE_BINS
    axis.bar([b["low"] for b in bins], [b["accuracy"] for b in bins], width=width, align="edge",
             edgecolor="black", alpha=0.8, label=observed)
    axis.plot([b["confidence"] for b in bins], [b["confidence"] for b in bins], "o", color="tab:red",
              markersize=4, label="mean confidence")
    axis.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    axis.set_ylabel(observed)
    axis.set_title(f"reliability (ECE {expected_calibration_error(y_true, probabilities):.4f}, {ECE_BINS} bins)")
    axis.legend(loc="upper left")
    axis.grid(alpha=0.3)
    counts.bar([b["low"] for b in bins], [b["rows"] for b in bins], width=width, align="edge", edgecolor="black")
    counts.set_xlabel("a label's probability" if multi_label else "confidence (top probability)")
    counts.set_ylabel("rows")
    counts.set_xlim(0, 1)
    save_figure(figure, path)
