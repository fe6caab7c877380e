"""Hostile inputs through the CLI: each gets a clear one-line answer or a counted skip."""

import json
import os
import shutil

import pytest

from conftest import assert_user_error, read_csv, run_cli, write_csv
from corpus.hostile import IMAGE_CASES


@pytest.fixture
def good_rows(demo_rows):
    return demo_rows[:5]


def test_hostile_images(trained_run, good_rows, tmp_path, capsys):
    """Every hostile image in one table (one evaluate and one predict, as a user's table would hold
    them): the accepted ones predicted, each refused one skipped and named with its reason."""
    makers = list(IMAGE_CASES)
    rows = [dict(row) for row in good_rows]
    for maker in makers:
        folder = tmp_path / maker.__name__
        folder.mkdir()
        rows.append({**good_rows[0], "image": maker(folder)})
    table = write_csv(tmp_path / "t.csv", rows)
    code, _, err = run_cli(capsys, "evaluate", trained_run, table, "--out", tmp_path / "r.json",
                           "--skipped", tmp_path / "s.csv")
    assert code == 0 and "Traceback" not in err, err
    report = json.load(open(tmp_path / "r.json"))
    code, _, _ = run_cli(capsys, "predict", trained_run, table, "--out", tmp_path / "p.csv")
    predictions = read_csv(tmp_path / "p.csv")
    assert code == 0 and len(predictions) == len(rows)
    refused = {len(good_rows) + i: IMAGE_CASES[maker] for i, maker in enumerate(makers) if IMAGE_CASES[maker]}
    assert report["n_examples"] == len(rows) - len(refused) and report["n_skipped"] == len(refused)
    skipped = {int(row["row"]) - 1: row for row in read_csv(tmp_path / "s.csv")}
    assert sorted(skipped) == sorted(refused)
    for index, row in enumerate(predictions):
        if index in refused:
            assert skipped[index]["column"] == "image" and refused[index] in skipped[index]["reason"], skipped[index]
            assert row["predicted_label"] == "" and refused[index] in row["error"], (makers[index - len(good_rows)], row)
        else:
            assert row["predicted_label"], (index, row)
    first = min(refused)
    code, _, err = run_cli(capsys, "evaluate", trained_run, table, "--on-bad-row", "error")
    assert_user_error(code, err, f"t.csv row {first + 1}", "column 'image'", refused[first])


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
        write_csv(path, rows, **options)
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
    table = write_csv(tmp_path / "t.csv", good_rows)
    code, _, err = run_cli(capsys, "evaluate", trained_run, table, "--on-bad-row", "error")
    assert_user_error(code, err, "t.csv row 2", "column 'price'", fragment)


def test_single_example_label_with_a_stratified_split(demo_rows, tmp_path, capsys):
    rows = demo_rows[:30]
    for row in rows:
        del row["split"]
    rows[0]["label"] = "rare_label"
    table = write_csv(tmp_path / "t.csv", rows)
    code, _, err = run_cli(capsys, "train", table, "--out", tmp_path / "run")
    assert_user_error(code, err, "label 'rare_label' has only one usable example", "--val-split")


@pytest.mark.parametrize("version,run_format", [("99.0.0", 2), ("0.2.0", None)])
def test_run_from_an_incompatible_version(version, run_format, trained_run, demo_table, tmp_path, capsys):
    run = tmp_path / "old"
    shutil.copytree(trained_run, run)
    config = json.load(open(run / "config.json"))
    config["fusionapp_version"] = version
    if run_format is None:
        del config["run_format"]  # what fusionapp 0.2 wrote
    (run / "config.json").write_text(json.dumps(config))
    code, _, err = run_cli(capsys, "evaluate", run, demo_table)
    assert_user_error(code, err, f"fusionapp {version}", "cannot load", "retrain it")


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
