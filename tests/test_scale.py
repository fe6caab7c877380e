"""Data at scale, on small data: tables as CSV, JSON Lines and Parquet, one file or shards; image
checks once per file, remembered; predictions streamed to CSV or Parquet, split by --shard; the
tf.data service path; the guards on settings whose memory grows with the rows."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fusionapp.errors import FusionError
from fusionapp.settings import Columns


def _rows(demo_table):
    with open(demo_table, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _write_parquet(rows, path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)


def _same_examples(a, b):
    assert list(a.row_numbers) == list(b.row_numbers)
    assert a.texts == b.texts and a.images == b.images and a.labels == b.labels and a.splits == b.splits


def test_csv_jsonl_parquet_and_shards_read_the_same_rows(demo_table, tmp_path):
    from fusionapp.data.sources import load_examples

    rows = _rows(demo_table)
    images = os.path.dirname(demo_table)
    reference = load_examples(demo_table, Columns())
    _write_parquet(rows, tmp_path / "t.parquet")
    with open(tmp_path / "t.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    shards = tmp_path / "shards"
    shards.mkdir()
    for k, start in enumerate(range(0, len(rows), 70)):
        _write_parquet(rows[start:start + 70], shards / f"part-{k:03d}.parquet")
    for source in (tmp_path / "t.parquet", tmp_path / "t.jsonl", shards, str(shards / "part-*.parquet")):
        _same_examples(load_examples(str(source), Columns(), image_root=images), reference)


def test_a_parquet_table_keeps_typed_cells_as_text(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from conftest import read_rows

    pq.write_table(pa.table({"text": ["a", None], "n": [1.5, None], "flag": [True, False]}), tmp_path / "t.parquet")
    assert read_rows(str(tmp_path / "t.parquet")) == [{"text": "a", "n": "1.5", "flag": "true"},
                                                            {"text": "", "n": "", "flag": "false"}]


def test_shards_must_share_the_columns(demo_table, tmp_path):
    from fusionapp.data.sources import load_examples

    rows = _rows(demo_table)
    _write_parquet(rows[:10], tmp_path / "a.parquet")
    _write_parquet([{k: v for k, v in row.items() if k != "text"} for row in rows[10:20]], tmp_path / "b.parquet")
    with pytest.raises(FusionError, match=r"b\.parquet: no column 'text'"):
        load_examples(str(tmp_path), Columns())
    with pytest.raises(FusionError, match="no table files match"):
        load_examples(str(tmp_path / "*.csv"), Columns())


def test_a_ragged_csv_still_reads_with_short_rows_padded(tmp_path):
    from conftest import read_rows

    path = tmp_path / "t.csv"
    path.write_text("text,label\nhello,x\nshort\nthree,y,extra\n", encoding="utf-8")
    assert read_rows(str(path)) == [{"text": "hello", "label": "x"}, {"text": "short", "label": ""},
                                          {"text": "three", "label": "y"}]


def test_chunks_number_rows_across_shards(demo_table, tmp_path):
    from fusionapp.data.sharding import Shard
    from fusionapp.data.sources import iter_examples

    rows = _rows(demo_table)
    for k, start in enumerate(range(0, len(rows), 50)):
        _write_parquet(rows[start:start + 50], tmp_path / f"part-{k}.parquet")
    chunks = list(iter_examples(str(tmp_path), Columns(), image_root=os.path.dirname(demo_table), chunk_rows=20))
    numbers = np.concatenate([chunk.row_numbers for chunk in chunks])
    assert list(numbers) == list(range(1, len(rows) + 1))
    shard = np.concatenate([chunk.row_numbers for chunk in iter_examples(
        str(tmp_path), Columns(), image_root=os.path.dirname(demo_table), shard=Shard(1, 3), chunk_rows=20)])
    assert list(shard) == list(range(2, len(rows) + 1, 3))


def test_image_verdicts_are_remembered_until_the_file_changes(demo_table, tmp_path, monkeypatch):
    import shutil

    from fusionapp.data import image_checks

    monkeypatch.setenv("FUSIONAPP_CHECK_CACHE", str(tmp_path / "checks.sqlite"))
    good = _rows(demo_table)[0]["image"]
    image = tmp_path / "a.png"
    shutil.copyfile(os.path.join(os.path.dirname(demo_table), good), image)
    assert image_checks.image_file_verdicts([str(image)] * 3) == {str(image): None}
    checked = []
    monkeypatch.setattr(image_checks, "_check", lambda paths: checked.extend(paths) or {p: "" for p in paths})
    image_checks.image_file_verdicts([str(image)])
    assert checked == []  # remembered: not read again
    image.write_bytes(b"not an image at all")
    monkeypatch.undo()
    monkeypatch.setenv("FUSIONAPP_CHECK_CACHE", str(tmp_path / "checks.sqlite"))
    assert "not a JPEG, PNG" in image_checks.image_file_verdicts([str(image)])[str(image)]


def test_memory_guards_refuse_in_one_line():
    from fusionapp.data.memory import check_pixel_cache

    check_pixel_cache(1000, 64, "memory", available=2**30)
    check_pixel_cache(10**7, 64, "disk", available=2**30)
    with pytest.raises(FusionError, match=r"--pixel-cache memory: 10000000 rows of 64x64 pixels need 114\.4 GiB"):
        check_pixel_cache(10**7, 64, "memory", available=2**30)


def test_long_texts_are_cut_to_max_text_chars():
    import tensorflow as tf

    from fusionapp.preprocessing import adapt
    from fusionapp.settings import TextSettings

    texts = ["red shirt cotton", "blue jeans denim", "green hat wool"] * 4
    text = TextSettings(max_chars=12).resolved("bag")
    preprocessor = adapt(["a", "b", "c"] * 4, texts, {}, modalities=("text",), image_size=16, text=text,
                         text_encoder="bag", tabular_kinds={}, adapt_rows=6)
    huge = "red shirt co" + "x" * 2_000_000
    encoded = preprocessor.encode_text(tf.constant([huge, "red shirt co"])).numpy()
    np.testing.assert_allclose(encoded[0], encoded[1])
    assert preprocessor.text.max_chars == 12


def test_steps_per_epoch_sets_the_epoch(monkeypatch):
    from types import SimpleNamespace

    from fusionapp.settings import RunSettings, apply_flat
    from fusionapp.training.network_fit import steps_per_epoch

    placement = SimpleNamespace(num_workers=1, global_batch_size=lambda batch: batch)
    phase = SimpleNamespace(train_rows=range(1000), placement=placement, settings=apply_flat(RunSettings(), {}))
    assert steps_per_epoch(phase) == 16
    phase.settings = apply_flat(RunSettings(), {"steps_per_epoch": 5})
    assert steps_per_epoch(phase) == 5


@pytest.mark.slow  # moved out of the default suite's 10 minutes (docs/tests.md)
def test_predict_streams_csv_and_parquet_and_shards_split_the_table(trained_run, demo_table, tmp_path):
    import pyarrow.parquet as pq

    from fusionapp import predict

    whole = predict(trained_run, demo_table, out=str(tmp_path / "all.csv"), verbose=0)
    assert whole == str(tmp_path / "all.csv")
    with open(whole, newline="", encoding="utf-8") as handle:
        expected = list(csv.DictReader(handle))
    parquet = pq.read_table(predict(trained_run, demo_table, out=str(tmp_path / "all.parquet"), verbose=0)).to_pylist()
    key = next(iter(expected[0]))  # id, or row without an id column
    assert [row[key] for row in parquet] == [row[key] for row in expected]
    probability = next(key for key in expected[0] if key.startswith("prob_"))
    np.testing.assert_allclose([row[probability] for row in parquet],
                               [float(row[probability]) for row in expected], atol=1e-6)
    parts = []
    for k in (1, 2, 3):
        predict(trained_run, demo_table, shard=f"{k}/3", out=str(tmp_path / f"part{k}.csv"), verbose=0)
        with open(tmp_path / f"part{k}.csv", newline="", encoding="utf-8") as handle:
            parts.extend(csv.DictReader(handle))
    order = {row[key]: position for position, row in enumerate(expected)}
    assert len(parts) == len(expected)
    assert sorted(parts, key=lambda row: order[row[key]]) == expected
    bad = subprocess.run([sys.executable, "-m", "fusionapp", "predict", trained_run, demo_table, "--shard", "4/3"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--shard" in bad.stderr and "Traceback" not in bad.stderr


@pytest.fixture(scope="module")
def data_service():
    """A tf.data service dispatcher with two workers, on localhost, in this process."""
    import tensorflow as tf

    service = tf.data.experimental.service
    dispatcher = service.DispatchServer(service.DispatcherConfig(port=0))
    address = dispatcher.target.split("://")[1]
    # Short heartbeats: a worker still serving a finished test's job lets go of it at once when stopped.
    workers = [service.WorkerServer(service.WorkerConfig(dispatcher_address=address, heartbeat_interval_ms=100))
               for _ in range(2)]
    yield dispatcher.target, workers
    for worker in workers:
        worker.stop()
    dispatcher.stop()


def _served_positions(address, rows, batch, count):
    import tensorflow as tf

    from fusionapp.data.pipeline import _passes

    def positions(stream, on_service=""):
        stream = stream.map(lambda position, pair: position)
        return stream.apply(tf.data.experimental.service.distribute("distributed_epoch", on_service)) \
            if on_service else stream

    return np.array(list(_passes(rows, batch, 3, 0, positions, service=address).take(count).as_numpy_iterator()))


def test_the_data_service_hands_out_every_row_once_per_pass(data_service):
    from collections import Counter

    rows, batch = 48, 8
    local = _served_positions("", rows, batch, 4 * rows)
    assert sorted(local) == sorted(list(range(rows)) * 4)  # each pass is a permutation of the rows
    seen = _served_positions(data_service[0], rows, batch, 4 * rows)
    counts = Counter(seen.tolist())
    # Two workers finish rows in their own order, so near a pass's end a row of the next one may
    # come first; beyond that, every row comes once per pass.
    assert set(counts) == set(range(rows))
    assert sum(abs(counts[row] - 4) for row in range(rows)) <= 8


@pytest.mark.slow  # moved out of the default suite's 10 minutes (docs/tests.md)
@pytest.mark.integration
def test_training_through_the_data_service_matches_local_training(data_service, demo_table, tmp_path):
    import tensorflow as tf

    from fusionapp import train

    service = tf.data.experimental.service
    # One worker serves the examples in the stream's own order: the same batches as locally.
    dispatcher = service.DispatchServer(service.DispatcherConfig(port=0))
    worker = service.WorkerServer(service.WorkerConfig(dispatcher_address=dispatcher.target.split("://")[1]))
    common = dict(epochs=1, image_size=16, image_filters="4,8", wide=False, calibrate=False, tune_decisions=False,
                  modality_dropout=0.0, augment=False, verbose=0)
    local = train(demo_table, str(tmp_path / "local"), **common)
    served = train(demo_table, str(tmp_path / "served"), data_service=dispatcher.target, **common)
    worker.stop()
    dispatcher.stop()
    metrics = [json.load(open(os.path.join(run, "metrics.json"))) for run in (local, served)]
    assert metrics[0]["accuracy"] == pytest.approx(metrics[1]["accuracy"])
    assert metrics[0]["log_loss"] == pytest.approx(metrics[1]["log_loss"], abs=1e-5)


def test_evaluate_in_chunks_gives_the_report_of_one_chunk(trained_run, demo_table, tmp_path, monkeypatch):
    from fusionapp import evaluate
    from fusionapp.data import tables

    whole = evaluate(trained_run, demo_table, split="test", ablate=True, verbose=0,
                     predictions=str(tmp_path / "one.csv"))
    monkeypatch.setattr(tables, "CHUNK_ROWS", 37)
    chunked = evaluate(trained_run, demo_table, split="test", ablate=True, verbose=0,
                       predictions=str(tmp_path / "many.csv"))
    assert chunked["n_examples"] == whole["n_examples"] and chunked["confusion_matrix"] == whole["confusion_matrix"]
    for key in ("accuracy", "macro_f1", "log_loss", "ece"):
        assert chunked[key] == pytest.approx(whole[key], abs=1e-6)
    for modality, figures in whole["ablation"].items():
        assert chunked["ablation"][modality] == pytest.approx(figures, abs=1e-6)
    one, many = (list(csv.reader(open(tmp_path / name, newline=""))) for name in ("one.csv", "many.csv"))
    assert [row[:3] for row in one] == [row[:3] for row in many]


def test_the_python_reader_carries_on_where_pyarrow_stopped(tmp_path, monkeypatch):
    """A ragged row far into a CSV: pyarrow has handed out chunks already; Python's reader takes
    over at the first record not given out, so no row is lost or repeated (blank rows included)."""
    from conftest import read_rows
    from fusionapp.data import formats
    from fusionapp.data.tables import iter_table

    monkeypatch.setattr(formats, "_CSV_BLOCK_BYTES", 4096)
    lines = ["id,text,label"] + [",," if i % 10 == 0 else f"{i},text {i},x" for i in range(1, 3001)]
    (tmp_path / "t.csv").write_text("\n".join(lines + ["3001,short"]) + "\n", encoding="utf-8")
    chunks = list(iter_table(str(tmp_path / "t.csv"), chunk_rows=200))
    assert len(chunks) > 2  # pyarrow gave out chunks before it stopped
    ids = [row["id"] for row in read_rows(tmp_path / "t.csv")]
    assert ids == [str(i) for i in range(1, 3002) if i % 10]


def test_numbers_read_the_same_from_parquet_jsonl_and_csv(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from conftest import read_rows

    values = [1.0, 1e-07, 2.5, None]
    pq.write_table(pa.table({"n": values, "k": [3, 4, 5, None]}), tmp_path / "t.parquet")
    with open(tmp_path / "t.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps({"n": n, "k": k}) + "\n" for n, k in zip(values, [3, 4, 5, None]))
    expected = [{"n": "1.0", "k": "3"}, {"n": "1e-07", "k": "4"}, {"n": "2.5", "k": "5"}, {"n": "", "k": ""}]
    assert read_rows(tmp_path / "t.parquet") == read_rows(tmp_path / "t.jsonl") == expected


def test_a_folder_takes_data_files_and_a_glob_resolves_images_per_shard(demo_table, tmp_path):
    import shutil

    from fusionapp.data.sources import load_examples

    rows = _rows(demo_table)[:6]
    for k in (0, 1):
        folder = tmp_path / f"day{k}"
        (folder / "images").mkdir(parents=True)
        for row in rows[3 * k:3 * k + 3]:
            shutil.copyfile(os.path.join(os.path.dirname(demo_table), row["image"]), folder / row["image"])
        _write_parquet(rows[3 * k:3 * k + 3], folder / "part.parquet")
        (folder / "README.txt").write_text("not a shard")
        (folder / "._part.parquet").write_bytes(b"macOS metadata")
    examples = load_examples(str(tmp_path / "day*" / "*.parquet"), Columns())
    assert examples.images == [str(tmp_path / f"day{i // 3}" / row["image"]) for i, row in enumerate(rows)]
    assert len(load_examples(str(tmp_path / "day0"), Columns())) == 3


def test_the_data_service_refuses_caches_its_workers_cannot_use():
    from fusionapp.settings import NotApplicable, RunSettings, SettingError, apply_flat, check_applies

    with pytest.raises(NotApplicable, match="--pixel-cache applies .* nor with --data-service"):
        check_applies(apply_flat(RunSettings(), {"data_service": "localhost:5050", "pixel_cache": "memory"}),
                      ["data_service", "pixel_cache"])
    with pytest.raises(SettingError, match="with --data-service"):
        apply_flat(RunSettings(), {"data_service": "localhost:5050", "image_backbone": "mobilenet_v3_small"})
