import numpy as np
import pytest
from sklearn import metrics

from conftest import REPORT_KEYS
from fusionapp.evaluation.report_text import format_report
from fusionapp.evaluation.metrics import classification_report


@pytest.mark.parametrize("classes", [2, 3])
def test_report_equals_scikit_learn_on_the_same_probabilities(classes):
    rng = np.random.default_rng(classes)
    y = rng.integers(0, classes, 200)
    logits = rng.normal(size=(200, classes)) + np.eye(classes)[y] * 1.5
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    names = [f"c{i}" for i in range(classes)]
    pred = p.argmax(axis=1)
    report = classification_report(y, p, pred, names, n_skipped=3)
    assert tuple(report) == REPORT_KEYS
    assert report["n_examples"] == 200 and report["n_skipped"] == 3
    assert report["accuracy"] == pytest.approx(metrics.accuracy_score(y, pred))
    assert report["balanced_accuracy"] == pytest.approx(metrics.balanced_accuracy_score(y, pred))
    assert report["macro_f1"] == pytest.approx(metrics.f1_score(y, pred, average="macro"))
    assert report["macro_precision"] == pytest.approx(metrics.precision_score(y, pred, average="macro"))
    assert report["macro_recall"] == pytest.approx(metrics.recall_score(y, pred, average="macro"))
    assert report["weighted_f1"] == pytest.approx(metrics.f1_score(y, pred, average="weighted"))
    assert report["log_loss"] == pytest.approx(metrics.log_loss(y, p))
    expected_auc = (metrics.roc_auc_score(y, p[:, 1]) if classes == 2
                    else metrics.roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert report["roc_auc"] == pytest.approx(expected_auc)
    assert report["confusion_matrix"]["matrix"] == metrics.confusion_matrix(y, pred).tolist()
    f1 = metrics.f1_score(y, pred, average=None)
    for i, name in enumerate(names):
        assert report["per_class"][name]["f1"] == pytest.approx(f1[i])
        assert report["per_class"][name]["support"] == int((y == i).sum())
    text = format_report(report)
    assert "macro-F1" in text and "c1" in text


def test_roc_auc_is_none_when_only_one_class_is_present():
    report = classification_report(np.array([0, 0]), np.array([[0.9, 0.1], [0.6, 0.4]]), np.array([0, 0]), ["a", "b"])
    assert report["roc_auc"] is None
    assert report["roc_auc_note"] == "ROC AUC needs rows of at least two classes; these rows hold rows of one class only"
    assert "(ROC AUC needs rows of at least two classes" in format_report(report)


def test_macro_averages_leave_out_a_class_without_rows():
    """A class the rows do not hold (one learnt from a single training row, say) is not a zero in
    the macro averages: they equal scikit-learn's with `labels=` the classes present."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)  # classes 0-2 of 4; class 3 has no rows
    logits = rng.normal(size=(120, 4)) + np.eye(4)[y] * 1.5
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pred = p.argmax(axis=1)
    names = ["a", "b", "c", "rare"]
    report = classification_report(y, p, pred, names)
    present = [0, 1, 2]
    for key, score in (("macro_f1", metrics.f1_score), ("macro_precision", metrics.precision_score),
                       ("macro_recall", metrics.recall_score)):
        assert report[key] == pytest.approx(score(y, pred, labels=present, average="macro", zero_division=0))
    assert report["macro_f1"] != pytest.approx(metrics.f1_score(y, pred, labels=[0, 1, 2, 3], average="macro",
                                                                zero_division=0))
    assert report["absent_classes"] == ["rare"] and report["per_class"]["rare"]["support"] == 0
    expected_auc = np.mean([metrics.roc_auc_score(y == k, p[:, k]) for k in present])
    assert report["roc_auc"] == pytest.approx(expected_auc) and report["roc_auc_note"] is None
    assert "macro averages over the 3 classes the rows hold; no rows of rare" in format_report(report)


def test_multilabel_macro_averages_leave_out_a_label_no_row_carries():
    from fusionapp.evaluation.multilabel import multilabel_report

    rng = np.random.default_rng(1)
    y = (rng.random((80, 3)) < 0.4).astype(int)
    y[:, 2] = 0
    p = np.clip(y * 0.6 + rng.random((80, 3)) * 0.5, 0, 1)
    chosen = (p > 0.5).astype(int)
    report = multilabel_report(y, p, chosen, ["x", "y", "z"])
    assert report["macro_f1"] == pytest.approx(metrics.f1_score(y, chosen, labels=[0, 1], average="macro",
                                                                zero_division=0))
    assert report["absent_classes"] == ["z"]
