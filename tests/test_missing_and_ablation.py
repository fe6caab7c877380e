"""Missing inputs are values, not errors; --ablate shows what each modality contributes; plots."""

import json
import os

import pytest

from conftest import TINY_MODEL, read_csv, run_cli, write_csv
from fusionapp.evaluation import ABLATION_KEYS


@pytest.fixture
def rows_with_gaps(demo_rows, tmp_path):
    rows = [row for row in demo_rows if row["split"] == "test"][:8]
    rows[1]["image"] = ""
    rows[2]["text"] = ""
    rows[3]["price"], rows[3]["seller"] = "", ""
    return write_csv(tmp_path / "gaps.csv", rows)


def test_missing_inputs_are_predicted_and_reported(trained_run, rows_with_gaps, tmp_path, capsys):
    code, _, err = run_cli(capsys, "predict", trained_run, rows_with_gaps, "--out", tmp_path / "p.csv",
                           "--on-bad-row", "error")
    assert code == 0, err
    predicted = read_csv(tmp_path / "p.csv")
    assert all(row["predicted_label"] for row in predicted)
    assert [row["missing"] for row in predicted[:5]] == ["", "image", "text", "tabular", ""]
    code, out, _ = run_cli(capsys, "evaluate", trained_run, rows_with_gaps, "--on-bad-row", "error")
    assert code == 0 and "8 examples (0 skipped)" in out


def test_single_pair_without_an_image(trained_run, capsys):
    code, out, err = run_cli(capsys, "predict", trained_run, "--text", "selling a used lamp", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["missing"] == ["image", "tabular"]


def test_training_learns_with_missing_inputs(demo_rows, tmp_path):
    from fusionapp import train

    for i, row in enumerate(demo_rows):
        row["image"] = "" if i % 7 == 0 else row["image"]
        row["text"] = "" if i % 7 == 3 else row["text"]
    path = write_csv(tmp_path / "gappy.csv", demo_rows)
    run = train(path, str(tmp_path / "run"), epochs=1, verbose=0, on_bad_row="error", **TINY_MODEL)
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
