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
