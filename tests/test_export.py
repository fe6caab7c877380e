"""The exported SavedModel runs with TensorFlow alone and agrees with `fusionapp predict`."""

import numpy as np
import pytest

from conftest import DEMO_CLASSES, TINY_MODEL, exported_outputs, run_cli, write_csv

@pytest.fixture(scope="module")
def bfloat16_run(demo_table, tmp_path_factory):
    from fusionapp import train

    out = tmp_path_factory.mktemp("runs") / "bf16"
    return train(demo_table, str(out), epochs=1, tabular_col=("price", "seller"), precision="mixed_bfloat16",
                 verbose=0, **TINY_MODEL)


@pytest.mark.integration
# test_one_answer.py holds the trained run's export in the default suite.
@pytest.mark.slow
@pytest.mark.parametrize("run_name", ["trained_run", "bfloat16_run"])
def test_exported_savedmodel_matches_predict(run_name, request, demo_rows, tmp_path, capsys):
    trained_run = request.getfixturevalue(run_name)
    code, _, err = run_cli(capsys, "export", trained_run, "--out", tmp_path / "exported")
    assert code == 0, err
    rows = [row for row in demo_rows if row["split"] == "test"][:6]
    rows[0]["price"] = ""  # a missing number travels as NaN
    rows[1]["image"] = ""  # a missing image as empty bytes
    exported = exported_outputs(tmp_path / "exported", rows, tmp_path)
    from fusionapp import predict

    predicted = predict(trained_run, write_csv(tmp_path / "rows.csv", rows), verbose=0)
    np.testing.assert_allclose(exported["probabilities"],
                               [[float(row[f"prob_{c}"]) for c in DEMO_CLASSES] for row in predicted], atol=2e-6)
    assert exported["labels"] == [row["predicted_label"] for row in predicted]
    # the outputs docs/serving.md lists
    assert exported["outputs"] == ["confidence", "logits", "missing", "predicted", "predicted_label", "probabilities",
                                   "ranking"]
    assert exported["missing"] == [row["missing"] for row in predicted] == ["", "image", "", "", "", ""]
    code, _, err = run_cli(capsys, "export", trained_run, "--out", tmp_path / "exported")
    assert code == 1 and "already exists" in err
