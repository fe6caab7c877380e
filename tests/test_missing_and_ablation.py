"""Missing inputs are values, not errors; --ablate shows what each modality contributes; plots."""

import csv
import json
import os

import pytest

from conftest import run_cli
from fusionapp.evaluation import ABLATION_KEYS


@pytest.fixture
def rows_with_gaps(demo_dir, tmp_path):
    with open(demo_dir / "demo.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "test"][:8]
    for row in rows:
        row["image"] = str(demo_dir / row["image"])
    rows[1]["image"] = ""
    rows[2]["text"] = ""
    rows[3]["price"], rows[3]["seller"] = "", ""
    path = tmp_path / "gaps.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def test_missing_inputs_are_predicted_and_reported(trained_run, rows_with_gaps, tmp_path, capsys):
    code, _, err = run_cli(capsys, "predict", trained_run, rows_with_gaps, "--out", tmp_path / "p.csv",
                           "--on-bad-row", "error")
    assert code == 0, err
    with open(tmp_path / "p.csv", newline="") as handle:
        predicted = list(csv.DictReader(handle))
    assert all(row["predicted_label"] for row in predicted)
    assert [row["missing"] for row in predicted[:5]] == ["", "image", "text", "tabular", ""]
    code, out, _ = run_cli(capsys, "evaluate", trained_run, rows_with_gaps, "--on-bad-row", "error")
    assert code == 0 and "8 examples (0 skipped)" in out


def test_single_pair_without_an_image(trained_run, capsys):
    code, out, err = run_cli(capsys, "predict", trained_run, "--text", "selling a used lamp", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["missing"] == ["image", "tabular"]


def test_training_learns_with_missing_inputs(demo_table, demo_dir, tmp_path):
    from conftest import TINY_MODEL
    from fusionapp import train

    with open(demo_table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for i, row in enumerate(rows):
        row["image"] = "" if i % 7 == 0 else str(demo_dir / row["image"])
        row["text"] = "" if i % 7 == 3 else row["text"]
    path = tmp_path / "gappy.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    run = train(str(path), str(tmp_path / "run"), epochs=1, verbose=0, on_bad_row="error", **TINY_MODEL)
    config = json.load(open(os.path.join(run, "config.json")))
    assert config["n_skipped"] == 0 and config["n_train"] + config["n_val"] == 136


def test_ablate_adds_one_entry_per_modality(trained_run, demo_table, tmp_path, capsys):
    code, out, err = run_cli(capsys, "evaluate", trained_run, demo_table, "--split", "test", "--ablate",
                             "--out", tmp_path / "r.json")
    assert code == 0, err
    report = json.load(open(tmp_path / "r.json"))
    assert set(report["ablation"]) == {"image", "text", "tabular"}
    for row in report["ablation"].values():
        assert set(row) == set(ABLATION_KEYS) | {f"{key}_change" for key in ABLATION_KEYS}
        assert row["accuracy_change"] == pytest.approx(row["accuracy"] - report["accuracy"])
    assert "Modality ablation" in out


def test_evaluation_plots_and_learning_curve(trained_run, demo_table, tmp_path, capsys):
    code, _, err = run_cli(capsys, "evaluate", trained_run, demo_table, "--plots", tmp_path / "plots")
    assert code == 0, err
    for name in ("confusion_matrix.png", "roc.png", "precision_recall.png"):
        data = (tmp_path / "plots" / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000
    assert open(os.path.join(trained_run, "learning_curve.png"), "rb").read(4) == b"\x89PNG"
