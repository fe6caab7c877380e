"""Hostile inputs through the CLI: each gets a clear one-line answer or a counted skip."""

import csv
import json
import os
import shutil

import pytest

from conftest import run_cli
from corpus.hostile import IMAGE_CASES
from test_errors import assert_user_error


@pytest.fixture
def good_rows(demo_dir):
    with open(demo_dir / "demo.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))[:5]
    for row in rows:
        row["image"] = str(demo_dir / row["image"])
    return rows


def write_rows(path, rows, **options):
    with open(path, "w", newline="", encoding=options.pop("encoding", "utf-8")) as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), **options)
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


@pytest.mark.parametrize("maker", list(IMAGE_CASES), ids=lambda maker: maker.__name__)
def test_hostile_image(maker, trained_run, good_rows, tmp_path, capsys):
    expected = IMAGE_CASES[maker]
    good_rows[2]["image"] = maker(tmp_path)
    table = write_rows(tmp_path / "t.csv", good_rows)
    code, _, err = run_cli(capsys, "evaluate", trained_run, table, "--out", tmp_path / "r.json",
                           "--skipped", tmp_path / "s.csv")
    assert code == 0 and "Traceback" not in err, err
    report = json.load(open(tmp_path / "r.json"))
    code, _, _ = run_cli(capsys, "predict", trained_run, table, "--out", tmp_path / "p.csv")
    with open(tmp_path / "p.csv", newline="") as handle:
        predictions = list(csv.DictReader(handle))
    assert code == 0 and len(predictions) == 5
    if expected is None:
        assert report["n_examples"] == 5 and report["n_skipped"] == 0
        assert all(row["predicted_label"] for row in predictions)
        return
    assert report["n_examples"] == 4 and report["n_skipped"] == 1
    with open(tmp_path / "s.csv", newline="") as handle:
        skipped = list(csv.DictReader(handle))
    assert [(row["row"], row["column"]) for row in skipped] == [("3", "image")]
    assert expected in skipped[0]["reason"]
    assert predictions[2]["predicted_label"] == "" and expected in predictions[2]["error"]
    assert all(row["predicted_label"] for i, row in enumerate(predictions) if i != 2)
    code, _, err = run_cli(capsys, "evaluate", trained_run, table, "--on-bad-row", "error")
    assert_user_error(code, err, "t.csv row 3", "column 'image'", expected)


def test_huge_image_is_refused_from_its_header(tmp_path):
    from corpus.hostile import huge_dimensions
    from fusionapp.data.images import check_image_file

    path = huge_dimensions(tmp_path)
    assert os.path.getsize(path) < 200_000
    assert "30000x30000 pixels" in check_image_file(path)


@pytest.mark.parametrize("case", ["bom", "crlf", "quoted_newlines", "extra_columns", "unicode", "megabyte_text",
                                  "jsonl_named_csv", "nan_missing"])
def test_awkward_but_valid_tables_work(case, trained_run, good_rows, tmp_path, capsys):
    rows = [dict(row) for row in good_rows]
    options = {}
    if case == "bom":
        options["encoding"] = "utf-8-sig"
    elif case == "crlf":
        options["lineterminator"] = "\r\n"
    elif case == "quoted_newlines":
        rows[1]["text"] = "first line\nsecond, with \"quotes\"\r\nthird"
    elif case == "extra_columns":
        for row in rows:
            row["notes"] = "ignored"
    elif case == "unicode":
        rows[0]["text"], rows[1]["text"], rows[2]["text"] = "новый 🎉🚀 mug", "جديد للبيع", "全新的杯子 未使用"
    elif case == "megabyte_text":
        rows[3]["text"] = "new " * 262_144
    elif case == "nan_missing":
        rows[0]["price"], rows[1]["price"] = "NaN", ""
    path = tmp_path / "t.csv"
    if case == "jsonl_named_csv":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    else:
        write_rows(path, rows, **options)
    code, _, err = run_cli(capsys, "evaluate", trained_run, path, "--out", tmp_path / "r.json")
    assert code == 0, err
    assert json.load(open(tmp_path / "r.json"))["n_examples"] == 5


@pytest.mark.parametrize("case,fragment", [
    ("empty", "the file is empty"),
    ("header_only", "header but no rows"),
    ("no_header", "no column 'image'"),
    ("duplicate_columns", "appears twice"),
    ("missing_column", "no column 'label'"),
])
def test_broken_tables(case, fragment, trained_run, good_rows, tmp_path, capsys):
    path = tmp_path / "t.csv"
    header = ",".join(good_rows[0])
    body = "".join(",".join(f'"{value}"' for value in row.values()) + "\n" for row in good_rows)
    content = {"empty": "", "header_only": header + "\n", "no_header": body,
               "duplicate_columns": header.replace("price", "text") + "\n" + body,
               "missing_column": header.replace("label", "tag") + "\n" + body}[case]
    path.write_text(content, encoding="utf-8")
    code, _, err = run_cli(capsys, "evaluate", trained_run, path)
    assert_user_error(code, err, "t.csv", fragment)


@pytest.mark.parametrize("value,fragment", [("inf", "not a finite number"), ("-Infinity", "not a finite number"),
                                            ("12,50 EUR", "is not a number")])
def test_bad_numbers_are_bad_rows(value, fragment, trained_run, good_rows, tmp_path, capsys):
    good_rows[1]["price"] = value
    table = write_rows(tmp_path / "t.csv", good_rows)
    code, _, err = run_cli(capsys, "evaluate", trained_run, table, "--on-bad-row", "error")
    assert_user_error(code, err, "t.csv row 2", "column 'price'", fragment)


def test_single_example_label_with_a_stratified_split(demo_dir, tmp_path, capsys):
    with open(demo_dir / "demo.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))[:30]
    for row in rows:
        row["image"] = str(demo_dir / row["image"])
        del row["split"]
    rows[0]["label"] = "rare_label"
    table = write_rows(tmp_path / "t.csv", rows)
    code, _, err = run_cli(capsys, "train", table, "--out", tmp_path / "run")
    assert_user_error(code, err, "label 'rare_label' has only one usable example", "--val-split")


def test_model_from_another_major_version(trained_run, demo_table, tmp_path, capsys):
    run = tmp_path / "old"
    shutil.copytree(trained_run, run)
    config = json.load(open(run / "config.json"))
    config["fusionapp_version"] = "99.0.0"
    (run / "config.json").write_text(json.dumps(config))
    code, _, err = run_cli(capsys, "evaluate", run, demo_table)
    assert_user_error(code, err, "fusionapp 99.0.0", "different major version")


def test_keras_file_with_arbitrary_code_is_refused(demo_table, tmp_path, capsys):
    import keras

    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    run = tmp_path / "evil"
    run.mkdir()
    keras.Model(inputs, outputs).save(run / "model.keras")
    code, _, err = run_cli(capsys, "evaluate", run, demo_table)
    assert_user_error(code, err, "model.keras", "cannot load the model", "Lambda")


def test_run_directory_without_its_model(trained_run, demo_table, tmp_path, capsys):
    run = tmp_path / "broken"
    shutil.copytree(trained_run, run)
    os.remove(run / "model.keras")
    code, _, err = run_cli(capsys, "predict", run, demo_table)
    assert_user_error(code, err, "not a fusionapp run (no model.keras)")
