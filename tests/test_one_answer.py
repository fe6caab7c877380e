"""One answer everywhere: predict (a table and single pairs), evaluate --predictions, the server
(JSON and multipart) and the exported SavedModel give the same probabilities and the same
missing inputs for the same raw inputs, including the awkward ones."""

import base64

import numpy as np
import pytest

from conftest import DEMO_CLASSES, exported_outputs, http, multipart, post_json, read_csv, run_cli, write_csv

CASES = ["all inputs", "image missing", "text missing", "tabular cells missing", "unseen category",
         "NaN in a numeric column"]
MISSING = [[], ["image"], ["text"], ["tabular"], [], []]


@pytest.fixture(scope="module")
def case_rows(demo_dir):
    rows = [row for row in read_csv(demo_dir / "demo.csv") if row["split"] == "test"][:len(CASES)]
    for row in rows:
        row["image"] = str(demo_dir / row["image"])
    rows[1]["image"] = ""
    rows[2]["text"] = ""
    rows[3]["price"], rows[3]["seller"] = "", ""
    rows[4]["seller"] = "a seller never seen in training"
    rows[5]["price"] = "NaN"
    return rows


@pytest.fixture(scope="module")
def reference(trained_run, case_rows):
    """Single-pair predictions through the Python API: full-precision probabilities."""
    from fusionapp import predict

    return [predict(trained_run, image=row["image"] or None, text=row["text"],
                    tabular={"price": row["price"], "seller": row["seller"]}) for row in case_rows]


def probabilities(result: dict) -> list[float]:
    return [result["probabilities"][name] for name in DEMO_CLASSES]


def from_csv(rows) -> tuple[list, list]:
    return ([[float(row[f"prob_{name}"]) for name in DEMO_CLASSES] for row in rows],
            [row["missing"].split() for row in rows])


def assert_same(name, probs, missing, reference):
    np.testing.assert_allclose(probs, [probabilities(r) for r in reference], atol=1e-5, err_msg=name)
    assert missing == [r["missing"] for r in reference] == MISSING, name


def test_the_cases_really_differ(reference):
    # each case changes what the model sees, so agreeing on them means something
    vectors = [probabilities(result) for result in reference]
    assert all(np.abs(np.subtract(vectors[0], other)).max() > 1e-4 for other in vectors[1:])


def test_predict_and_evaluate_tables(trained_run, case_rows, reference, tmp_path, capsys):
    table = write_csv(tmp_path / "cases.csv", case_rows)
    code, _, err = run_cli(capsys, "predict", trained_run, table, "--out", tmp_path / "p.csv", "--on-bad-row", "error")
    assert code == 0, err
    assert_same("predict", *from_csv(read_csv(tmp_path / "p.csv")), reference)
    code, _, err = run_cli(capsys, "evaluate", trained_run, table, "--predictions", tmp_path / "e.csv",
                           "--on-bad-row", "error")
    assert code == 0, err
    assert_same("evaluate --predictions", *from_csv(read_csv(tmp_path / "e.csv")), reference)


def test_server_json_and_multipart(server, case_rows, reference):
    answers = {"json": [], "multipart": []}
    for row in case_rows:
        image = open(row["image"], "rb").read() if row["image"] else None
        payload = {"text": row["text"], "tabular": {"price": row["price"], "seller": row["seller"]}}
        if image:
            payload["image"] = base64.b64encode(image).decode()
        status, result = post_json(server + "/predict", payload)
        assert status == 200, result
        answers["json"].append(result)
        body, content_type = multipart({"text": row["text"], "price": row["price"], "seller": row["seller"]},
                                       {"image": ("x.png", image)} if image else {})
        status, result = http(server + "/predict", body, content_type)
        assert status == 200, result
        answers["multipart"].append(result)
    for name, results in answers.items():
        assert_same(f"serve {name}", [probabilities(r) for r in results], [r["missing"] for r in results], reference)


def test_exported_savedmodel(trained_run, case_rows, reference, tmp_path, capsys):
    code, _, err = run_cli(capsys, "export", trained_run, "--out", tmp_path / "exported")
    assert code == 0, err
    exported = exported_outputs(tmp_path / "exported", case_rows, tmp_path)
    assert_same("SavedModel", exported["probabilities"], [names.split() for names in exported["missing"]], reference)
    # the outputs docs/serving.md lists, and a second export refused rather than written over
    assert exported["outputs"] == ["confidence", "logits", "missing", "predicted", "predicted_label", "probabilities",
                                   "ranking"]
    code, _, err = run_cli(capsys, "export", trained_run, "--out", tmp_path / "exported")
    assert code == 1 and "already exists" in err
