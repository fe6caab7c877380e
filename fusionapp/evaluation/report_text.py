"""Evaluate reports as people read them: the headline figures, then one table row per class (or
label), and for single-label reports the confusion matrix; and the modality ablation."""

from __future__ import annotations


def format_report(report: dict, title: str = "Evaluation") -> str:
    """A single- or multi-label report (fusionapp.evaluation.metrics / .multilabel) as text."""
    lines = [f"{title}: {report['n_examples']} examples ({report['n_skipped']} skipped)"
             + (", multi-label" if report.get("multi_label") else "")]
    lines += _multilabel_headline(report) if report.get("multi_label") else _headline(report)
    lines += _notes(report)
    if report.get("multi_label"):
        lines += [""] + _class_table(report["per_class"], "label", (
            ("threshold", lambda row: f"{row['threshold']:.2f}" if "threshold" in row else ""),
            *_SCORES, ("roc_auc", lambda row: _figure(row["roc_auc"])), ("support", lambda row: str(row["support"]))))
        return "\n".join(lines)
    lines += [""] + _class_table(report["per_class"], "class", (*_SCORES, ("support", lambda row: str(row["support"]))))
    names = report["confusion_matrix"]["labels"]
    width = _first_column(names)
    cell = max(6, *(len(name) + 1 for name in names))
    lines += ["", "  confusion matrix (rows = true, columns = predicted):",
              "  " + " " * width + "".join(f"{name:>{cell}}" for name in names)]
    for name, counts in zip(names, report["confusion_matrix"]["matrix"]):
        lines.append(f"  {name:<{width}}" + "".join(f"{count:>{cell}d}" for count in counts))
    return "\n".join(lines)


_SCORES = tuple((key, lambda row, key=key: f"{row[key]:.4f}") for key in ("precision", "recall", "f1"))


def _notes(report: dict) -> list[str]:
    """Why a figure is missing, and which classes the macro averages leave out."""
    notes = [f"  ({report['roc_auc_note']})"] if report.get("roc_auc_note") else []
    absent = report.get("absent_classes") or []
    if absent:
        kind = "labels" if report.get("multi_label") else "classes"
        notes.append(f"  macro averages over the {len(report['per_class']) - len(absent)} {kind} the rows hold; "
                     f"no rows of {', '.join(absent)}")
    return notes


def _figure(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _first_column(names) -> int:
    return max(12, *(len(name) + 2 for name in names))


def _class_table(per_class: dict, heading: str, columns) -> list[str]:
    """One row per class: its name, then each (column name, row -> text) right-aligned in 10."""
    width = _first_column(list(per_class))
    lines = [f"  {heading:<{width}}" + "".join(f"{name:>10}" for name, _ in columns)]
    for name, row in per_class.items():
        lines.append(f"  {name:<{width}}" + "".join(f"{show(row):>10}" for _, show in columns))
    return lines


def _headline(report: dict) -> list[str]:
    return [f"  accuracy {report['accuracy']:.4f}   balanced accuracy {report['balanced_accuracy']:.4f}   "
            f"macro-F1 {report['macro_f1']:.4f}   weighted-F1 {report['weighted_f1']:.4f}",
            f"  macro precision {report['macro_precision']:.4f}   macro recall {report['macro_recall']:.4f}   "
            f"log loss {report['log_loss']:.4f}   ROC AUC {_figure(report['roc_auc'])}",
            f"  calibration: ECE {report['ece']:.4f} (15 bins)   Brier {report['brier']:.4f}"]


def _multilabel_headline(report: dict) -> list[str]:
    lines = [f"  micro-F1 {report['micro_f1']:.4f}   macro-F1 {report['macro_f1']:.4f}   "
             f"samples-F1 {report['samples_f1']:.4f}   weighted-F1 {report['weighted_f1']:.4f}",
             f"  subset accuracy {report['subset_accuracy']:.4f}   Hamming loss {report['hamming_loss']:.4f}   "
             f"ranking AP {report['label_ranking_average_precision']:.4f}   ROC AUC {_figure(report['roc_auc'])} "
             "(mean over labels)",
             f"  labels per row {report['label_cardinality']:.2f} true, {report['predicted_cardinality']:.2f} predicted"
             f"   log loss {report['log_loss']:.4f}   ECE {report['ece']:.4f}   Brier {report['brier']:.4f}"]
    if report.get("unknown_labels"):
        counts = report["unknown_labels"]
        lines.append(f"  left out: {sum(counts.values())} labels the model does not know "
                     f"({', '.join(f'{name} {count}' for name, count in list(counts.items())[:5])}"
                     f"{', ...' if len(counts) > 5 else ''})")
    return lines


def format_ablation(ablation: dict) -> str:
    if not ablation:
        return "Modality ablation: the model uses a single modality"
    first = "micro_f1" if "micro_f1" in next(iter(ablation.values())) else "accuracy"
    names = {"micro_f1": "micro-F1", "accuracy": "accuracy"}
    lines = ["Modality ablation (each input blanked on every row; change against all inputs):",
             f"  {'blanked':<10}{names[first]:>10}{'change':>9}{'macro-F1':>10}{'change':>9}"]
    for modality, row in ablation.items():
        lines.append(f"  {modality:<10}{row[first]:>10.4f}{row[first + '_change']:>+9.4f}"
                     f"{row['macro_f1']:>10.4f}{row['macro_f1_change']:>+9.4f}")
    return "\n".join(lines)
