"""Calibration: the temperature fit, ECE and Brier against their definitions and scikit-learn, the
temperature stored in the model, and the reliability diagram."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import TINY_MODEL, read_csv, run_cli


def test_fit_temperature_recovers_the_temperature_labels_were_drawn_with():
    from fusionapp.evaluation.calibration import probabilities_of
    from fusionapp.posthoc.temperature import fit_temperature

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (20000, 4))
    for true_t in (0.5, 2.5):
        probabilities = probabilities_of(logits / true_t, multi_label=False)
        y = np.array([rng.choice(4, p=row) for row in probabilities])
        assert fit_temperature(y, logits) == pytest.approx(true_t, rel=0.05)


def test_ece_and_brier_follow_their_definitions():
    from sklearn.metrics import brier_score_loss

    from fusionapp.evaluation.calibration import brier_score, expected_calibration_error

    probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.35, 0.65], [0.55, 0.45], [0.02, 0.98]])
    y = np.array([0, 1, 1, 1, 1])
    # Bins of width 1/15 by top probability: 0.9 and 0.98 alone, 0.8 alone, 0.65 alone, 0.55 alone.
    expected = (abs(1 - 0.9) + abs(0 - 0.8) + abs(1 - 0.65) + abs(0 - 0.55) + abs(1 - 0.98)) / 5
    assert expected_calibration_error(y, probabilities) == pytest.approx(expected)
    one_hot = np.eye(2)[y]
    assert brier_score(y, probabilities, 2) == pytest.approx(((probabilities - one_hot) ** 2).sum(axis=1).mean())
    assert brier_score(y, probabilities, 2) == pytest.approx(
        brier_score_loss(y, probabilities, labels=[0, 1], scale_by_half=False))
    # A perfectly calibrated, perfectly sure model has neither error.
    assert expected_calibration_error([0, 1], np.eye(2)) == 0 and brier_score([0, 1], np.eye(2), 2) == 0


@pytest.fixture(scope="module")
def overconfident_run(demo_table, tmp_path_factory):
    """A run trained long on few rows, whose raw probabilities are too sure, calibrated."""
    from fusionapp import train

    out = tmp_path_factory.mktemp("runs") / "calibrated"
    return train(demo_table, str(out), epochs=3, tabular_col=("price", "seller"), verbose=0, **TINY_MODEL)


def test_the_temperature_is_stored_in_the_model_and_keeps_every_decision(overconfident_run, demo_table):
    from fusionapp.runs.load import load_run
    from fusionapp.data.sources import load_examples
    from fusionapp.inference.raw_inference import predict_examples
    from fusionapp.inference.run_rows import run_columns

    run = load_run(overconfident_run)
    calibration = run.config["calibration"]
    temperature = float(run.model.head.temperature.get_weights()[0])
    assert temperature == pytest.approx(calibration["temperature"], rel=1e-6) and temperature != 1.0
    # T minimises the log loss, not the ECE: on a few validation rows the ECE may even rise. Both are reported.
    assert set(calibration) == {"temperature", "val_ece", "val_brier"}
    assert all(0 <= calibration[key][when] <= 2 for key in ("val_ece", "val_brier") for when in ("before", "after"))
    from fusionapp.runs.info import format_info, run_info

    assert f"calibration  temperature {temperature:.3f}" in format_info(run_info(overconfident_run))
    examples = load_examples(demo_table, run_columns(run), modalities=run.modalities)
    calibrated = predict_examples(run.model, examples).logits
    run.model.set_temperature(1.0)
    raw = predict_examples(run.model, examples).logits
    np.testing.assert_allclose(calibrated, raw / temperature, rtol=1e-5, atol=1e-5)
    assert (calibrated.argmax(axis=1) == raw.argmax(axis=1)).all()


def ece_by_hand(y, probabilities, bins=15):
    """The textbook ECE: rows binned by top probability into (b/bins, (b+1)/bins]; the rows-weighted
    mean of |accuracy - mean confidence| over the bins."""
    total = 0.0
    confidence, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == y
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        inside = (confidence > low) & (confidence <= high) if b else (confidence <= high)
        if inside.any():
            total += inside.sum() / len(y) * abs(correct[inside].mean() - confidence[inside].mean())
    return total


def test_evaluate_reports_ece_and_brier_of_its_predictions_and_plots_reliability(overconfident_run, demo_table,
                                                                                 tmp_path, capsys):
    code, out, err = run_cli(capsys, "evaluate", overconfident_run, demo_table, "--out", tmp_path / "report.json",
                             "--predictions", tmp_path / "predictions.csv", "--plots", tmp_path / "plots")
    assert code == 0, err
    report = json.load(open(tmp_path / "report.json"))
    classes = report["confusion_matrix"]["labels"]
    rows = read_csv(tmp_path / "predictions.csv")
    probabilities = np.array([[float(row[f"prob_{name}"]) for name in classes] for row in rows])
    y = np.array([classes.index(row["label"]) for row in rows])
    assert report["ece"] == pytest.approx(ece_by_hand(y, probabilities), abs=1e-4)
    # Brier: the squared distance of each row's probabilities from its one-hot label, summed, averaged
    assert report["brier"] == pytest.approx(((probabilities - np.eye(len(classes))[y]) ** 2).sum(axis=1).mean(),
                                            abs=1e-4)
    assert f"ECE {report['ece']:.4f}" in out and f"Brier {report['brier']:.4f}" in out
    assert os.path.getsize(tmp_path / "plots" / "reliability.png") > 1000


@pytest.mark.slow  # moved out of the default suite's 10 minutes (docs/tests.md)
@pytest.mark.integration
def test_no_calibrate_leaves_the_temperature_out(demo_table, tmp_path):
    from fusionapp import train
    from fusionapp.runs.load import load_run

    run = load_run(train(demo_table, str(tmp_path / "run"), epochs=1, calibrate=False, verbose=0, **TINY_MODEL))
    assert "calibration" not in run.config
    assert run.model.head.temperature is None
