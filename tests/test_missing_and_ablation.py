"""Missing inputs are values, not errors; --ablate shows what each modality contributes; plots."""

import json
import os

import numpy as np

import pytest

from conftest import TINY_MODEL, read_csv, run_cli, write_csv
from fusionapp.evaluation import evaluate
from fusionapp.evaluation.evaluate import ABLATION_KEYS


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


def redundant_table(folder, rows=360, seed=0):
    """Image and text each tell the label alone: a colour per class, and a word per class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = {"red": (168, 128, 128), "green": (128, 168, 128), "blue": (128, 128, 168)}
    os.makedirs(folder / "images", exist_ok=True)
    table = []
    for i in range(rows):
        label = list(colours)[i % 3]
        pixels = np.clip(np.array(colours[label]) + rng.normal(0, 40, (16, 16, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / "images" / f"{i}.png")
        words = [label, *rng.choice(["a", "nice", "photo", "of", "my", "thing"], 4)]
        table.append({"image": f"images/{i}.png", "text": " ".join(rng.permutation(words)), "label": label,
                      "split": ["train", "train", "train", "val", "test"][i % 5]})
    return write_csv(folder / "redundant.csv", table)


@pytest.mark.slow  # two trainings compared: a property of learning, not of a code path the suite lacks
def test_modality_dropout_teaches_the_model_to_answer_without_an_input(tmp_path):
    """Trained with images and texts blanked at random (the default 0.3), the model answers from
    the text alone when the image is missing; the same model trained on complete rows never saw a
    blank image, and is lost without one, though the text says everything."""
    from fusionapp import train

    table = redundant_table(tmp_path)
    accuracy = {}
    for rate in (0.0, 0.3):
        run = train(table, str(tmp_path / f"dropout{rate}"), epochs=5, batch_size=16, modality_dropout=rate,
                    wide=False, verbose=0, **TINY_MODEL)
        report = evaluate(run, table, split="test", ablate=True, verbose=0)
        accuracy[rate] = report["ablation"]["image"]["accuracy"]
        assert report["accuracy"] > 0.9
    assert accuracy[0.3] > accuracy[0.0] + 0.3, accuracy


def blanked_table(table, modality, folder):
    """The table with one input emptied on every row, as a user would blank it."""
    rows = read_csv(table)
    columns = {"image": ["image"], "text": ["text"], "tabular": ["price", "seller"]}[modality]
    for row in rows:
        row["image"] = os.path.join(os.path.dirname(table), row["image"]) if row["image"] else ""
        row.update({column: "" for column in columns})
    return write_csv(folder / f"without-{modality}.csv", rows)


def test_ablate_adds_one_entry_per_modality(trained_run, demo_table, tmp_path, capsys):
    code, out, err = run_cli(capsys, "evaluate", trained_run, demo_table, "--split", "test", "--ablate",
                             "--out", tmp_path / "r.json")
    assert code == 0, err
    report = json.load(open(tmp_path / "r.json"))
    assert set(report["ablation"]) == {"image", "text", "tabular"}
    for modality, row in report["ablation"].items():
        assert set(row) == set(ABLATION_KEYS) | {f"{key}_change" for key in ABLATION_KEYS}
        blanked = evaluate(trained_run, blanked_table(demo_table, modality, tmp_path), split="test", verbose=0)
        assert row["accuracy"] == pytest.approx(blanked["accuracy"]) and row["log_loss"] == pytest.approx(
            blanked["log_loss"], abs=1e-5)
    assert "Modality ablation" in out


def test_evaluation_plots_and_learning_curve(trained_run, demo_table, tmp_path, capsys):
    code, _, err = run_cli(capsys, "evaluate", trained_run, demo_table, "--plots", tmp_path / "plots")
    assert code == 0, err
    for name in ("confusion_matrix.png", "roc.png", "precision_recall.png"):
        data = (tmp_path / "plots" / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000
    assert open(os.path.join(trained_run, "learning_curve.png"), "rb").read(4) == b"\x89PNG"
