"""The exported SavedModel runs with TensorFlow alone and agrees with `fusionapp predict`."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import TINY_MODEL, run_cli

LOAD = """
import json, sys
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
serve = model.signatures["serving_default"]
rows = json.load(open(sys.argv[2]))
out = serve(image=tf.constant([open(r["image"], "rb").read() for r in rows]),
            text=tf.constant([r["text"] for r in rows]),
            tabular_price=tf.constant([float(r["price"]) if r["price"] else float("nan") for r in rows]),
            tabular_seller=tf.constant([r["seller"] for r in rows]))
assert "fusionapp" not in sys.modules
print(json.dumps({"probabilities": out["probabilities"].numpy().tolist(),
                  "labels": [label.decode() for label in out["predicted_label"].numpy()]}))
"""


@pytest.fixture(scope="module")
def bfloat16_run(demo_table, tmp_path_factory):
    from fusionapp import train

    out = tmp_path_factory.mktemp("runs") / "bf16"
    return train(demo_table, str(out), epochs=1, tabular_col=("price", "seller"), precision="mixed_bfloat16",
                 verbose=0, **TINY_MODEL)


@pytest.mark.parametrize("run_name", ["trained_run", "bfloat16_run"])
def test_exported_savedmodel_matches_predict(run_name, request, demo_dir, tmp_path, capsys):
    trained_run = request.getfixturevalue(run_name)
    code, _, err = run_cli(capsys, "export", trained_run, "--out", tmp_path / "exported")
    assert code == 0, err
    with open(demo_dir / "demo.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "test"][:6]
    rows[0]["price"] = ""  # a missing number travels as NaN
    for row in rows:
        row["image"] = str(demo_dir / row["image"])
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    done = subprocess.run([sys.executable, "-c", LOAD, str(tmp_path / "exported"), str(tmp_path / "rows.json")],
                          capture_output=True, text=True, check=True)
    exported = json.loads(done.stdout.strip().splitlines()[-1])
    table = tmp_path / "rows.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    from fusionapp import predict

    predicted = predict(trained_run, str(table), verbose=0)
    classes = ["angular_new", "angular_used", "round_new", "round_used"]
    np.testing.assert_allclose(exported["probabilities"],
                               [[float(row[f"prob_{c}"]) for c in classes] for row in predicted], atol=2e-6)
    assert exported["labels"] == [row["predicted_label"] for row in predicted]
    code, _, err = run_cli(capsys, "export", trained_run, "--out", tmp_path / "exported")
    assert code == 1 and "already exists" in err
