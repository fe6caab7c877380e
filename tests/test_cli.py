"""End to end through the command line: demo -> train -> evaluate -> predict."""

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import DEMO_CLASSES, REPORT_KEYS, assert_usage_error, assert_user_error, read_csv, run_cli, write_csv


def test_help_and_version(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0 and "train" in out and "evaluate" in out and "predict" in out
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and "fusionapp" in out


def test_demo_command_writes_a_deterministic_table(tmp_path, capsys):
    for name in ("a", "b"):
        assert run_cli(capsys, "demo", "--out", tmp_path / name, "--rows", 60, "--seed", 3)[0] == 0
    rows = read_csv(tmp_path / "a" / "demo.csv")
    assert len(rows) == 60 and {"id", "image", "text", "price", "seller", "label", "split"} <= set(rows[0])
    assert (tmp_path / "a" / "demo.csv").read_text() == (tmp_path / "b" / "demo.csv").read_text()
    assert (tmp_path / "a" / rows[0]["image"]).read_bytes() == (tmp_path / "b" / rows[0]["image"]).read_bytes()


def test_train_writes_a_complete_run(trained_run):
    for name in ("model.keras", "config.json", "history.csv", "metrics.json", "preprocessing.json"):
        assert os.path.exists(os.path.join(trained_run, name)), name
    assert not os.path.exists(os.path.join(trained_run, "resume"))
    config = json.load(open(os.path.join(trained_run, "config.json")))
    assert config["class_names"] == DEMO_CLASSES and config["run_format"] == 2
    assert config["settings"]["columns"]["tabular"] == ["price", "seller"]
    assert config["settings"]["model"]["modalities"] == ["image", "text", "tabular"]
    assert {"fusionapp_version", "tensorflow_version", "keras_version"} <= set(config)
    history = read_csv(os.path.join(trained_run, "history.csv"))
    assert len(history) == 2
    assert {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(history[0])
    metrics = json.load(open(os.path.join(trained_run, "metrics.json")))
    assert tuple(metrics) == REPORT_KEYS


@pytest.mark.integration
def test_train_through_the_cli(demo_table, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", demo_table, "--out", out, "--epochs", 1, "--modalities", "text", "--text-encoder", "mean",
            "--batch-size", 32]
    code, stdout, stderr = run_cli(capsys, *args)
    assert code == 0, stderr
    assert "Saved the run" in stdout and (out / "model.keras").exists()
    # A second run into the same folder refuses instead of overwriting.
    code, _, stderr = run_cli(capsys, *args)
    assert code == 1 and "already holds files" in stderr and "Traceback" not in stderr
    assert run_cli(capsys, *args, "--overwrite")[0] == 0


def test_evaluate_prints_and_writes_the_report(trained_run, demo_table, tmp_path, capsys):
    report_path, predictions_path = tmp_path / "report.json", tmp_path / "preds.csv"
    code, out, err = run_cli(capsys, "evaluate", trained_run, demo_table, "--split", "test",
                             "--out", report_path, "--predictions", predictions_path)
    assert code == 0, err
    assert "macro-F1" in out and "confusion matrix" in out
    report = json.load(open(report_path))
    assert tuple(report) == REPORT_KEYS and report["n_examples"] == 24
    assert sum(map(sum, report["confusion_matrix"]["matrix"])) == 24
    rows = read_csv(predictions_path)
    assert len(rows) == 24 and list(rows[0])[:4] == ["id", "label", "predicted_label", "confidence"]
    assert np.mean([r["label"] == r["predicted_label"] for r in rows]) == pytest.approx(report["accuracy"])


def test_predict_table_matches_evaluate_predictions(trained_run, demo_table, tmp_path, capsys):
    run_cli(capsys, "evaluate", trained_run, demo_table, "--split", "val", "--predictions", tmp_path / "e.csv")
    code, _, err = run_cli(capsys, "predict", trained_run, demo_table, "--split", "val", "--out", tmp_path / "p.csv")
    assert code == 0, err
    evaluated, predicted = read_csv(tmp_path / "e.csv"), read_csv(tmp_path / "p.csv")
    assert list(predicted[0]) == (["id", "predicted_label", "confidence"] + [f"prob_{c}" for c in DEMO_CLASSES]
                                  + ["missing", "error"])
    assert [r["id"] for r in predicted] == [r["id"] for r in evaluated]
    for column in ["predicted_label", "confidence", *(f"prob_{c}" for c in DEMO_CLASSES)]:
        assert [r[column] for r in predicted] == [r[column] for r in evaluated]


def test_predict_single_pair_text_and_json(trained_run, demo_dir, capsys):
    image = demo_dir / "images" / "00000.png"
    code, out, err = run_cli(capsys, "predict", trained_run, "--image", image, "--text", "selling a new lamp",
                             "--tabular", "price=50", "--json", "--top-k", "2")
    assert code == 0, err
    result = json.loads(out)
    assert set(result) == {"predicted_label", "confidence", "probabilities", "missing", "top_k"}
    assert list(result["probabilities"]) == DEMO_CLASSES and result["missing"] == []
    best = max(result["probabilities"], key=result["probabilities"].get)
    assert result["predicted_label"] == best and result["confidence"] == result["probabilities"][best]
    second = sorted(result["probabilities"].values())[-2]
    assert [entry["probability"] for entry in result["top_k"]] == [result["confidence"], second]
    code, out, _ = run_cli(capsys, "predict", trained_run, "--image", image, "--text", "selling a new lamp",
                           "--tabular", "price=50")
    assert code == 0 and out.startswith(f"{result['predicted_label']} (confidence {result['confidence']:.4f})")


# A new process (8 s); the server and the SavedModel tests of tests/test_one_answer.py load runs in others.
@pytest.mark.slow
def test_reloaded_in_a_new_process_predicts_the_same_probabilities(trained_run, demo_table, tmp_path):
    from fusionapp import predict

    assert predict(trained_run, demo_table, split="test", out=str(tmp_path / "a.csv"), verbose=0) == str(tmp_path / "a.csv")
    in_process = read_csv(tmp_path / "a.csv")
    subprocess.run([sys.executable, "-m", "fusionapp", "predict", trained_run, demo_table, "--split", "test",
                    "--out", str(tmp_path / "b.csv")], check=True, capture_output=True)
    other = read_csv(tmp_path / "b.csv")
    columns = [c for c in other[0] if c.startswith("prob_")]
    np.testing.assert_allclose([[float(r[c]) for c in columns] for r in other],
                               [[float(r[c]) for c in columns] for r in in_process], atol=2e-6)


def test_unreadable_rows_get_an_error_cell_and_the_rest_are_predicted(trained_run, demo_dir, tmp_path, capsys):
    rows = read_csv(demo_dir / "demo.csv")[:3]
    for row in rows:
        row["image"] = str(demo_dir / row["image"])
    rows[1]["image"] = str(tmp_path / "missing.png")
    table = write_csv(tmp_path / "t.csv", rows)
    code, _, err = run_cli(capsys, "predict", trained_run, table, "--out", tmp_path / "p.csv")
    assert code == 0, err
    predicted = read_csv(tmp_path / "p.csv")
    assert [bool(r["predicted_label"]) for r in predicted] == [True, False, True]
    assert "does not exist" in predicted[1]["error"]
    code, _, err = run_cli(capsys, "predict", trained_run, table, "--on-bad-row", "error")
    assert code == 1 and "row 2" in err and "column 'image'" in err


def test_python_api_mirrors_the_cli(trained_run, demo_table):
    from fusionapp import evaluate, predict

    report = evaluate(trained_run, demo_table, split="test", verbose=0)
    rows = predict(trained_run, demo_table, split="test", verbose=0)
    assert report["n_examples"] == len(rows) == 24
    accuracy = np.mean([row["predicted_label"] == label for row, label in
                        zip(rows, [r["label"] for r in read_csv(demo_table) if r["split"] == "test"])])
    assert accuracy == pytest.approx(report["accuracy"])


@pytest.mark.parametrize("args,fragments", [
    (["--top-k", "0"], ["'--top-k'", "at least 1"]),
    (["--batch-size", "-3"], ["'--batch-size'", "at least 1"]),
    (["--on-bad-row", "ignore"], ["'--on-bad-row'", "one of skip, error"]),
])
def test_prediction_options_are_usage_errors(args, fragments, trained_run, demo_table, capsys):
    assert_usage_error(*run_cli(capsys, "predict", trained_run, demo_table, *args)[::2], *fragments)


def test_python_api_refuses_what_the_flags_refuse(trained_run, demo_table):
    from fusionapp import evaluate, predict
    from fusionapp.errors import FusionError

    with pytest.raises(FusionError, match="top_k=0: must be an integer at least 1"):
        predict(trained_run, demo_table, top_k=0, verbose=0)
    with pytest.raises(FusionError, match="on_bad_row='ignore': must be one of skip, error"):
        evaluate(trained_run, demo_table, on_bad_row="ignore", verbose=0)


@pytest.mark.slow  # moved out of the default suite's 10 minutes (docs/tests.md)
@pytest.mark.integration
def test_a_run_reads_tables_as_it_was_trained_to(demo_dir, tmp_path, capsys):
    """evaluate and predict reuse the run's --image-root and column names unless given others."""
    rows = read_csv(demo_dir / "demo.csv")
    for row in rows:
        row["photo"] = row.pop("image")
    (tmp_path / "elsewhere").mkdir()
    table = write_csv(tmp_path / "elsewhere" / "table.csv", rows)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", table, "--out", out, "--image-root", demo_dir, "--image-col", "photo",
                           "--epochs", 1, "--image-size", 32, "--image-filters", "8,16", "--branch-units", 16)
    assert code == 0, err
    code, _, err = run_cli(capsys, "evaluate", out, table, "--split", "test", "--out", tmp_path / "report.json")
    assert code == 0, err
    assert json.load(open(tmp_path / "report.json"))["n_skipped"] == 0
    code, printed, err = run_cli(capsys, "predict", out, table, "--split", "test")
    predicted = list(csv.DictReader(io.StringIO(printed)))
    assert code == 0 and len(predicted) == 24 and not any(row["error"] for row in predicted), err
    # given again, another root wins: here one where no image is, so every row is bad
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli(capsys, "evaluate", out, table, "--image-root", empty)
    assert_user_error(code, err, "all", "rows are bad")
    code, out_help, _ = run_cli(capsys, "evaluate", "--help")
    assert "the run's own (as given to train)" in " ".join(out_help.split())
