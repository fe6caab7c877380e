"""--sample N: a seeded sample, stratified by label, chosen while streaming the table (shards too),
the same whatever the chunking."""

import json
from collections import Counter

import numpy as np
import pytest

from conftest import read_csv, run_cli
from fusionapp.data.sampling import class_quotas, sampled_rows


def _chunks(labels, size):
    def chunks():
        for start in range(0, len(labels), size):
            yield np.arange(start + 1, min(start + size, len(labels)) + 1), labels[start:start + size]
    return chunks


def test_the_sample_is_stratified_and_does_not_depend_on_the_chunking():
    rng = np.random.default_rng(0)
    labels = list(rng.permutation(["a"] * 700 + ["b"] * 250 + ["c"] * 49 + ["rare"]))
    rows = sampled_rows(_chunks(labels, 130), 100, seed=3, stratify=True)
    assert Counter(labels[r - 1] for r in rows) == {"a": 70, "b": 25, "c": 4, "rare": 1}
    for size in (1, 77, 1000):
        np.testing.assert_array_equal(sampled_rows(_chunks(labels, size), 100, seed=3, stratify=True), rows)
    other = sampled_rows(_chunks(labels, 130), 100, seed=4, stratify=True)
    assert set(other) != set(rows)
    unstratified = sampled_rows(_chunks([None] * 1000, 64), 100, seed=3, stratify=False)
    assert len(unstratified) == len(set(unstratified)) == 100


def test_class_quotas_keep_every_class_while_they_can():
    assert class_quotas(Counter(a=5, b=3, c=1), 20) == {"a": 5, "b": 3, "c": 1}
    assert class_quotas(Counter(a=90, b=9, c=1), 10) == {"a": 8, "b": 1, "c": 1}
    assert sum(class_quotas(Counter(a=5, b=3, c=1), 2).values()) == 2


@pytest.mark.slow  # moved out of the default suite's 10 minutes (docs/tests.md)
@pytest.mark.integration
def test_train_and_evaluate_on_a_sample_of_parquet_shards(demo_dir, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = read_csv(demo_dir / "demo.csv")
    for row in rows:
        row["image"] = str(demo_dir / row["image"])
    (tmp_path / "shards").mkdir()
    for k, start in enumerate(range(0, len(rows), 50)):
        part = rows[start:start + 50]
        pq.write_table(pa.table({key: [row[key] for row in part] for key in part[0]}),
                       tmp_path / "shards" / f"part-{k}.parquet")
    out = tmp_path / "run"
    code, printed, err = run_cli(capsys, "train", tmp_path / "shards", "--out", out, "--sample", 90, "--epochs", 1,
                                 "--image-size", 32, "--image-filters", "8,16", "--branch-units", 16)
    assert code == 0, err
    assert "Training on a seeded sample of 90 rows" in printed
    config = json.load(open(out / "config.json"))
    test_rows = json.load(open(out / "test_metrics.json"))["n_examples"]
    assert config["n_train"] + config["n_val"] + config["n_skipped"] + test_rows == 90
    code, _, err = run_cli(capsys, "evaluate", out, tmp_path / "shards", "--split", "test", "--sample", 10,
                           "--out", tmp_path / "report.json")
    assert code == 0, err
    assert json.load(open(tmp_path / "report.json"))["n_examples"] == 10
