"""Prediction files whose columns survive any class name: top_k is a JSON list in CSV and a list
column in Parquet, and Parquet keeps the model's float32 probabilities as they are."""

import csv
import json

import numpy as np
import pytest

# Class names a space, a comma, a quote or a separator would break if labels were joined by them.
AWKWARD = ["Smart Casual", "Casual", "Formal, evening", 'the "other"']


@pytest.fixture(scope="module")
def predicted(trained_run, demo_table):
    from fusionapp.inference.raw_inference import predict_examples
    from fusionapp.inference.run_rows import iter_rows_for_run
    from fusionapp.runs.load import load_run

    run = load_run(trained_run)
    examples, _ = next(iter_rows_for_run(run, demo_table, "test", need_label=False))
    return examples, predict_examples(run.model, examples)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_top_k_and_probabilities_read_back_whole(predicted, tmp_path, suffix):
    from fusionapp.inference.answers import prediction_table
    from fusionapp.inference.writers import TableWriter

    examples, predictions = predicted
    header, rows = prediction_table(examples, predictions, AWKWARD, top_k=3)
    path = tmp_path / f"predictions{suffix}"
    with TableWriter(str(path)) as writer:
        writer.write(header, rows)
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as handle:
            read = list(csv.DictReader(handle))
        top_k = [json.loads(row["top_k"]) for row in read]
        probabilities = np.array([[float(row[f"prob_{name}"]) for name in AWKWARD] for row in read])
        np.testing.assert_allclose(probabilities, predictions.probabilities, atol=5e-7)
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        import pyarrow as pa

        assert pa.types.is_list(table.schema.field("top_k").type)
        assert table.schema.field("top_k").type.value_type == pa.string()
        assert table.schema.field(f"prob_{AWKWARD[0]}").type == pa.float32()
        top_k = table.column("top_k").to_pylist()
        probabilities = np.stack([table.column(f"prob_{name}").to_numpy() for name in AWKWARD], axis=1)
        np.testing.assert_array_equal(probabilities, predictions.probabilities.astype(np.float32))
    expected = [[AWKWARD[j] for j in predictions.top(i, 3)] for i in range(len(examples))]
    assert top_k == expected and any(" " in label for labels in top_k for label in labels)


def test_the_python_api_gives_typed_rows(trained_run, demo_table):
    from fusionapp import predict

    rows = predict(trained_run, demo_table, split="test", top_k=2, verbose=0)
    first = rows[0]
    assert isinstance(first["confidence"], float) and isinstance(first["top_k"], list)
    assert first["top_k"][0] == first["predicted_label"] and len(first["top_k"]) == 2


def test_run_and_prediction_files_follow_the_umask(trained_run, demo_table, tmp_path):
    """Files are written atomically through private temporary files, yet end with the mode the
    user's umask gives: another user, or a serving container of another uid, can read them."""
    import os
    import stat

    from fusionapp import predict

    umask = os.umask(0o022)
    os.umask(umask)
    expected = 0o666 & ~umask
    out = predict(trained_run, demo_table, split="test", out=str(tmp_path / "p.parquet"), verbose=0)
    written = [os.path.join(folder, name) for folder, _, names in os.walk(trained_run) for name in names]
    for path in [*written, out]:
        assert stat.S_IMODE(os.stat(path).st_mode) == expected, path
