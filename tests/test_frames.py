"""DataFrames and pyarrow Tables in the Python API: the same predictions as the same rows from a
CSV, image cells as paths, bytes, PIL images or arrays, the same one-line errors, and a DataFrame
back with the input's index. pandas stays optional."""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import TINY_MODEL, read_csv, write_csv
from fusionapp.errors import FusionError

pd = pytest.importorskip("pandas")
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def test_rows(demo_dir):
    rows = [row for row in read_csv(demo_dir / "demo.csv") if row["split"] == "test"]
    for row in rows:
        row["image"] = str(demo_dir / row["image"])
    return rows


def _probabilities(table, classes):
    return np.array([[float(row[f"prob_{name}"]) for name in classes] for row in table])


@pytest.mark.slow  # moved out of the default suite's 10 minutes (docs/tests.md)
def test_a_dataframe_predicts_as_the_same_rows_from_a_csv(trained_run, test_rows, tmp_path):
    from PIL import Image

    from fusionapp import evaluate, predict
    from fusionapp.runs.load import load_run

    classes = load_run(trained_run).preprocessor.class_names
    csv_path = write_csv(tmp_path / "rows.csv", test_rows)
    from_csv = predict(trained_run, csv_path, verbose=0)
    frame = pd.DataFrame(test_rows, index=[f"item-{i}" for i in range(len(test_rows))])
    frame["price"] = pd.to_numeric(frame["price"], errors="coerce")  # typed cells, NaN for the empty ones
    answered = predict(trained_run, frame, verbose=0)
    assert isinstance(answered, pd.DataFrame) and list(answered.index) == list(frame.index)
    assert list(answered["predicted_label"]) == [row["predicted_label"] for row in from_csv]
    np.testing.assert_allclose(answered[[f"prob_{name}" for name in classes]].to_numpy(),
                               _probabilities(from_csv, classes), atol=1e-6)
    # image cells as bytes, PIL images and arrays: the same answers
    images = [open(row["image"], "rb").read() for row in test_rows]
    for cells in (images, [Image.open(path) for path in frame["image"]],
                  [np.asarray(Image.open(path).convert("RGB")) for path in frame["image"]]):
        other = predict(trained_run, frame.assign(image=cells), verbose=0)
        np.testing.assert_allclose(other[[f"prob_{name}" for name in classes]].to_numpy(),
                                   _probabilities(from_csv, classes), atol=1e-5)
    import pyarrow as pa

    table = predict(trained_run, pa.Table.from_pylist(test_rows), verbose=0)
    assert isinstance(table, pa.Table) and table.column("predicted_label").to_pylist() == list(answered.predicted_label)
    assert evaluate(trained_run, frame, verbose=0)["accuracy"] == evaluate(trained_run, csv_path, verbose=0)["accuracy"]


@pytest.mark.slow  # moved out of the default suite's 10 minutes (docs/tests.md)
def test_train_takes_a_dataframe(demo_dir, tmp_path):
    import json

    from fusionapp import train

    rows = read_csv(demo_dir / "demo.csv")
    frame = pd.DataFrame(rows)
    run = train(frame, str(tmp_path / "run"), epochs=1, image_root=str(demo_dir), tabular_col=("price", "seller"),
                verbose=0, **TINY_MODEL)
    config = json.load(open(os.path.join(run, "config.json")))
    assert config["data"] == "DataFrame" and config["n_train"] + config["n_val"] == sum(
        row["split"] != "test" for row in rows)
    with pytest.raises(FusionError, match="an in-memory table \\(DataFrame\\) is not one it can read"):
        train(frame, run, resume=True, verbose=0)


def test_a_dataframe_gets_the_usual_one_line_errors(trained_run, test_rows):
    from fusionapp import evaluate, predict

    frame = pd.DataFrame(test_rows)
    with pytest.raises(FusionError, match="^DataFrame: no column 'label'"):
        evaluate(trained_run, frame.drop(columns=["label"]), verbose=0)
    broken = frame.assign(image=[b"not an image"] + [None] * (len(frame) - 1))
    answered = predict(trained_run, broken, verbose=0)
    assert "cannot be decoded" in answered["error"].iloc[0] or "not" in answered["error"].iloc[0]
    with pytest.raises(FusionError, match="image cell is neither a path, bytes"):
        predict(trained_run, frame.assign(image=[object()] * len(frame)), verbose=0)


def test_the_package_works_without_pandas(trained_run, test_rows, tmp_path):
    """A pyarrow Table in, a pyarrow Table out, and pandas never imported."""
    script = (
        "import sys, json\n"
        "class NoPandas:  # as if it were not installed\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'pandas':\n"
        "            raise ImportError('no pandas here')\n"
        "sys.meta_path.insert(0, NoPandas())\n"
        "import pyarrow as pa\n"
        "from fusionapp import predict\n"
        f"rows = json.load(open({str(tmp_path / 'rows.json')!r}))\n"
        f"out = predict({trained_run!r}, pa.Table.from_pylist(rows), verbose=0)\n"
        "print(type(out).__name__, out.num_rows, 'pandas' in sys.modules)\n")
    import json

    (tmp_path / "rows.json").write_text(json.dumps(test_rows[:5]))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-3:] == ["Table", "5", "False"]
