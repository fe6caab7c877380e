"""Every user mistake: exit code 1, one line naming the file/row/column, no traceback."""

import json
import os

import pytest

from conftest import TINY_MODEL, assert_user_error, read_csv, run_cli, write_csv


def test_missing_table(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", tmp_path / "nope.csv", "--out", tmp_path / "r")
    assert_user_error(code, err, "nope.csv", "no such file")


def test_missing_column(demo_table, tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", demo_table, "--text-col", "caption", "--out", tmp_path / "r")
    assert_user_error(code, err, "demo.csv", "no column 'caption'")


def test_missing_tabular_column(demo_table, tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", demo_table, "--tabular-col", "weight", "--out", tmp_path / "r")
    assert_user_error(code, err, "no column 'weight'")


def test_unknown_split(trained_run, demo_table, capsys):
    code, _, err = run_cli(capsys, "evaluate", trained_run, demo_table, "--split", "holdout")
    assert_user_error(code, err, "demo.csv", "no rows with split 'holdout'", "train, val")


@pytest.mark.parametrize("problem,column,message", [
    ("missing_image", "image", "does not exist"),
    ("corrupt_image", "image", "cannot be decoded"),
    ("text_image", "image", "not a JPEG, PNG, GIF or BMP"),
    ("no_inputs", "text", "no inputs: every input of this row is empty"),
    ("non_numeric", "price", "'cheap' is not a number"),
    ("empty_label", "label", "empty label"),
])
def test_bad_rows_stop_training_with_on_bad_row_error(problem, column, message, demo_rows, tmp_path, capsys):
    rows = [dict(row) for row in demo_rows]
    bad = rows[4]
    if problem == "missing_image":
        bad["image"] = str(tmp_path / "gone.png")
    elif problem == "corrupt_image":
        data = open(rows[5]["image"], "rb").read()
        (tmp_path / "half.png").write_bytes(data[: len(data) // 2])
        bad["image"] = str(tmp_path / "half.png")
    elif problem == "text_image":
        (tmp_path / "fake.jpg").write_text("hello")
        bad["image"] = str(tmp_path / "fake.jpg")
    elif problem == "no_inputs":
        bad["text"], bad["image"] = "   ", ""
    elif problem == "non_numeric":
        bad["price"] = "cheap"
    else:
        bad["label"] = ""
    bad["split"] = "train"
    table = write_csv(tmp_path / "bad.csv", rows)
    tabular = [] if problem == "no_inputs" else ["--tabular-col", "price"]
    code, _, err = run_cli(capsys, "train", table, *tabular, "--on-bad-row", "error", "--out", tmp_path / "run")
    assert_user_error(code, err, "bad.csv row 5", f"column '{column}'", message)
    assert not (tmp_path / "run" / "model.keras").exists()


@pytest.mark.integration
def test_bad_rows_are_skipped_counted_and_listed(demo_rows, tmp_path):
    from fusionapp import train

    rows = [dict(row) for row in demo_rows]
    rows[2]["image"] = str(tmp_path / "gone.png")
    rows[7]["text"], rows[7]["image"] = "", ""  # no inputs at all; one missing input alone is fine
    rows[9]["text"] = ""
    rows[2]["split"] = rows[7]["split"] = rows[9]["split"] = "train"
    table = write_csv(tmp_path / "bad.csv", rows)
    run = train(table, str(tmp_path / "run"), epochs=1, verbose=0, modalities=("image", "text"), **TINY_MODEL)
    config = json.load(open(os.path.join(run, "config.json")))
    assert config["n_skipped"] == 2
    assert json.load(open(os.path.join(run, "metrics.json")))["n_skipped"] == 2
    skipped = read_csv(os.path.join(run, "skipped.csv"))
    assert [(r["row"], r["column"]) for r in skipped] == [("3", "image"), ("8", "text")]


def test_label_not_seen_in_training(trained_run, demo_rows, tmp_path, capsys):
    rows = [dict(row) for row in demo_rows[:6]]
    rows[3]["label"] = "hexagon_new"
    table = write_csv(tmp_path / "eval.csv", rows)
    code, _, err = run_cli(capsys, "evaluate", trained_run, table, "--on-bad-row", "error")
    assert_user_error(code, err, "eval.csv row 4", "column 'label'", "label 'hexagon_new' was not seen in training")
    code, out, err = run_cli(capsys, "evaluate", trained_run, table, "--out", tmp_path / "r.json")
    assert code == 0, err
    report = json.load(open(tmp_path / "r.json"))
    assert report["n_examples"] == 5 and report["n_skipped"] == 1
    assert "1 skipped" in out


def test_non_numeric_value_at_prediction(trained_run, demo_dir, capsys):
    code, _, err = run_cli(capsys, "predict", trained_run, "--image", demo_dir / "images" / "00001.png",
                           "--text", "a new mug", "--tabular", "price=lots")
    assert_user_error(code, err, "--tabular price", "'lots' is not a number")


def test_single_pair_with_missing_image(trained_run, tmp_path, capsys):
    code, _, err = run_cli(capsys, "predict", trained_run, "--image", tmp_path / "no.jpg", "--text", "hi")
    assert_user_error(code, err, "--image", "no.jpg does not exist")


@pytest.mark.parametrize("kind", ["empty_dir", "missing", "text_file"])
def test_model_that_is_not_a_run(kind, demo_table, tmp_path, capsys):
    target = {"empty_dir": tmp_path, "missing": tmp_path / "nothing", "text_file": tmp_path / "notes.txt"}[kind]
    if kind == "text_file":
        target.write_text("hi")
    code, _, err = run_cli(capsys, "evaluate", target, demo_table)
    assert_user_error(code, err, str(target))
    assert "not a fusionapp run" in err or "no such run" in err


def test_debug_shows_the_traceback(tmp_path, capsys):
    from fusionapp.errors import FusionError

    with pytest.raises(FusionError):
        run_cli(capsys, "--debug", "train", tmp_path / "nope.csv")


def test_unwritable_output_is_refused_before_training(demo_table, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli(capsys, "train", demo_table, "--out", blocker / "run")
    assert_user_error(code, err, "cannot write there")
