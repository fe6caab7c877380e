"""`fusionapp audit`: confident learning against a hand-worked example, the duplicate finder on each
kind of copy, the reports (report.html in a real browser), label-next with a run, and bad input."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from conftest import (assert_usage_error, assert_user_error, browser_page, needs_chromium, read_csv, run_cli,
                      write_csv)
from fusionapp.audit.confident import audit_labels, audit_multi_label
from fusionapp.audit.duplicates import Fingerprints, duplicate_pairs, folded_text, text_signature
from fusionapp.audit.label_next import margins, rows_to_label
from fusionapp.audit.outliers import far_rows


# === Confident learning ===
# Three classes, three rows each; row 2 (labelled 0) looks like class 1 and row 8 (labelled 2) like
# class 0. Worked by hand: the thresholds are each class's mean self-confidence, (0.8 + 0.6 + 0.1) / 3
# = 0.5, (0.7 + 0.8 + 0.6) / 3 = 0.7 and (0.8 + 0.7 + 0.1) / 3 = 0.5333. Row 5 reaches no
# threshold and is not counted; the others count as the one class they reach: given 0 -> (0, 0, 1),
# given 1 -> (1, 1), given 2 -> (2, 2, 0). Calibrated to three rows per label, the joint is
# [[2, 1, 0], [0, 3, 0], [1, 0, 2]]: one row labelled 0 is truly 1 (the one of largest p1 - p0, row 2)
# and one labelled 2 truly 0 (largest p0 - p2, row 8).
HAND_LABELS = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
HAND_PROBS = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1],
                       [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.1, 0.6, 0.3],
                       [0.1, 0.1, 0.8], [0.2, 0.1, 0.7], [0.7, 0.2, 0.1]])


def test_confident_learning_equals_the_hand_worked_example():
    verdict = audit_labels(HAND_LABELS, HAND_PROBS)
    np.testing.assert_allclose(verdict.thresholds, [0.5, 0.7, 1.6 / 3])
    np.testing.assert_array_equal(verdict.joint, [[2, 1, 0], [0, 3, 0], [1, 0, 2]])
    np.testing.assert_allclose(verdict.noise, [[2 / 3, 1 / 4, 0], [0, 3 / 4, 0], [1 / 3, 0, 1]])
    assert np.flatnonzero(verdict.flagged).tolist() == [2, 8]
    np.testing.assert_allclose(verdict.quality, HAND_PROBS[np.arange(9), HAND_LABELS])
    np.testing.assert_allclose(verdict.margin[[0, 2]], [(0.8 - 0.1 + 1) / 2, (0.1 - 0.8 + 1) / 2])
    assert verdict.suggested[[2, 8]].tolist() == [1, 0]


def test_a_row_whose_label_is_the_likeliest_is_never_flagged():
    probs = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8], [0.3, 0.7]])
    verdict = audit_labels(np.array([0, 0, 1, 1]), probs)
    assert not verdict.flagged[0]


def test_multi_label_sets_are_audited_label_by_label():
    targets = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [1, 0], [0, 1]])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8], [0.05, 0.95], [0.1, 0.9]])
    first, second = audit_multi_label(targets, probs)
    assert np.flatnonzero(first.flagged).tolist() == [4]  # tagged with the first label, which it shows no sign of
    assert not second.flagged[5]


# === Duplicates ===
def _picture(seed: int, size: int = 64) -> Image.Image:
    """A smooth random picture: blobs of colour, so hashes and thumbnails differ between seeds."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)


def _saved(picture: Image.Image, path, **options) -> str:
    picture.save(path, **options)
    return str(path)


@pytest.fixture
def copies_table(tmp_path):
    """Twelve distinct rows, then copies of some of them, each of one kind."""
    rows = []
    for n in range(12):
        rows.append({"image": _saved(_picture(n), tmp_path / f"{n}.png"),
                     "text": f"product number {n} {'abcdefghij'[n % 10] * 3} model {n * 7}",
                     "label": "ab"[n % 2], "split": "train", "id": f"p{n}"})
    reencoded = Image.open(rows[1]["image"]).convert("RGB")
    rows.append({**rows[0], "id": "exact", "split": "test"})  # 12: exact copy of 0, in another split
    rows.append({**rows[1], "image": _saved(reencoded, tmp_path / "re.jpg", quality=40), "id": "reencoded"})  # 13
    resized = Image.open(rows[2]["image"]).resize((51, 51))
    rows.append({**rows[2], "image": _saved(resized, tmp_path / "small.png"), "id": "resized"})  # 14
    # 15: the text in capitals, with another label
    rows.append({**rows[3], "text": rows[3]["text"].upper() + "!", "id": "text", "label": "a"})
    # 16: another picture with the same text
    rows.append({**rows[4], "image": _saved(_picture(99), tmp_path / "other.png"), "id": "same-text"})
    rows.append({**rows[5], "text": "something else entirely", "id": "same-image"})  # 17: another text
    return rows


def _prints(rows):
    from fusionapp.audit.signals import table_signals
    from fusionapp.data.examples import Examples

    examples = Examples("t", np.arange(1, len(rows) + 1), [r["id"] for r in rows], [r["image"] for r in rows], True,
                        [r["text"] for r in rows], {}, [r["label"] for r in rows], [r["split"] for r in rows], True)
    return table_signals([examples], lambda line: None).prints


def test_the_duplicate_finder_catches_each_kind_of_copy_and_nothing_else(copies_table):
    first, second = duplicate_pairs(_prints(copies_table))
    assert sorted(zip(first.tolist(), second.tolist())) == [(0, 12), (1, 13), (2, 14), (3, 15)]


def test_near_identical_texts_agree_in_a_language_written_without_spaces():
    one = text_signature(folded_text("北京市朝阳区的新款黑色运动鞋，男士款"))
    other = text_signature(folded_text("北京市朝阳区的新款黑色运动鞋 男士款!"))
    unrelated = text_signature(folded_text("上海的红色连衣裙，女士夏季款式"))
    assert (one == other).mean() >= 0.7 > (one == unrelated).mean()


def test_duplicates_are_found_in_linear_time_on_many_identical_rows():
    rows = 20_000
    signature = text_signature("the same text on every row")
    prints = Fingerprints(np.zeros(rows, np.uint64), np.zeros(rows, bool), np.tile(signature, (rows, 1)),
                          np.ones(rows, bool), np.zeros((rows, 1), np.float16))
    first, second = duplicate_pairs(prints)
    # Each row meets its WINDOW next rows in a band, not every other row: about rows x 8 pairs.
    assert rows - 1 <= len(first) <= rows * 8
    assert set(second.tolist()) == set(range(1, rows))


# === Outliers and label-next ===
def test_far_rows_are_only_the_far_tail():
    distances = np.concatenate([np.ones(990), np.full(10, 10.0)])
    flagged, ratio = far_rows(distances)
    assert np.flatnonzero(flagged).tolist() == list(range(990, 1000))
    assert ratio[995] == pytest.approx(10.0)


def test_label_next_takes_uncertain_rows_from_different_clusters():
    rng = np.random.default_rng(0)
    embedding = np.concatenate([rng.normal(0, 0.1, (50, 2)), rng.normal(5, 0.1, (50, 2))])
    probabilities = np.tile([0.9, 0.1], (100, 1))
    probabilities[:10] = [0.5, 0.5]  # ten most uncertain rows, all in the first cluster
    probabilities[50:53] = [0.6, 0.4]  # less uncertain, in the second
    chosen = rows_to_label(margins(probabilities, False), embedding, 2, seed=0)
    assert len(set(chosen.tolist())) == 2
    assert {int(row) // 50 for row in chosen} == {0, 1}
    assert chosen[0] < 10


# === The command ===
def test_audit_writes_its_reports_and_finds_what_was_put_there(tmp_path, capsys, demo_rows):
    rows = [dict(row) for row in demo_rows]
    flipped = {5: None, 17: None, 40: None}
    names = sorted({row["label"] for row in rows})
    for index in flipped:
        rows[index]["label"] = names[(names.index(rows[index]["label"]) + 2) % len(names)]
    rows.append({**rows[3], "id": "copy", "split": "test"})
    rows[8]["text"] = ""
    table = write_csv(tmp_path / "table.csv", rows)
    out = tmp_path / "audit"
    code, stdout, err = run_cli(capsys, "audit", table, "--out", out, "--tabular-col", "price",
                                "--tabular-col", "seller", "--report-rows", "5")
    assert code == 0, err
    issues = read_csv(out / "issues.csv")
    kinds = {(issue["kind"], issue["id"]) for issue in issues}
    assert ("leak", "copy") in kinds and ("duplicate", "copy") in kinds
    assert ("blank_text", rows[8]["id"]) in kinds
    flagged = {issue["id"] for issue in issues if issue["kind"] == "label"}
    assert len(flagged & {rows[i]["id"] for i in flipped}) >= 2
    quality = read_csv(out / "label_quality.csv")
    assert len(quality) == len(rows)
    assert {row["id"] for row in quality if row["flagged"] == "1"} == flagged
    by_id = {row["id"]: float(row["label_quality"]) for row in quality}
    median = float(np.median(list(by_id.values())))
    assert sum(by_id[rows[i]["id"]] < median for i in flipped) >= 2
    report = json.loads((out / "report.json").read_text())
    assert report["rows"] == len(rows) and report["kinds"]["label"]["rows"] == len(flagged)
    assert report["per_class"][names[0]]["rows"] == sum(row["label"] == names[0] for row in rows)
    assert report["cross_fit"]["accuracy"] > 0.5  # four classes; 160 rows teach a linear model little
    assert report["cross_fit"]["left_out"] >= 1  # the second round learnt without the first round's flags
    for name in report["files"]:
        assert (out / name).stat().st_size > 0
    assert f"Wrote {out}" in stdout
    # The same audit again is refused without --overwrite, and what is there is kept.
    before = (out / "issues.csv").read_bytes()
    code, _, err = run_cli(capsys, "audit", table, "--out", out)
    assert_user_error(code, err, str(out), "--overwrite")
    assert (out / "issues.csv").read_bytes() == before


@pytest.mark.slow  # moved out of the default suite's 10 minutes (docs/tests.md)
def test_chunks_of_a_big_table_and_parquet_tables_give_the_same_audit(tmp_path, capsys, demo_table, monkeypatch):
    """The command line's CSV tables, and the Python API's Parquet ones from the table read 37 rows at
    a time, hold the same rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import fusionapp
    from fusionapp.data import tables
    from fusionapp.inference.writers import csv_cell

    code, _, err = run_cli(capsys, "audit", demo_table, "--out", tmp_path / "whole", "--folds", "2")
    assert code == 0, err
    monkeypatch.setattr(tables, "CHUNK_ROWS", 37)
    report = fusionapp.audit_table(demo_table, str(tmp_path / "chunked"), say=lambda line: None, folds=2,
                                   format="parquet")
    assert report["cross_fit"]["folds"] == 2 and report["files"][:2] == ["issues.parquet", "label_quality.parquet"]
    assert json.loads((tmp_path / "chunked" / "report.json").read_text())["rows"] == report["rows"]
    assert not (tmp_path / "chunked" / "issues.csv").exists()
    for name in ("issues", "label_quality"):
        table = pq.read_table(tmp_path / "chunked" / f"{name}.parquet")
        assert table.schema.field("row").type == pa.int64() and table.schema.field("given_label").type == pa.string()
        written = [{key: csv_cell(value) for key, value in row.items()} for row in table.to_pylist()]
        assert written == read_csv(tmp_path / "whole" / f"{name}.csv") and written
    issues = pq.read_table(tmp_path / "chunked" / "issues.parquet")
    assert issues.schema.field("score").type == pa.float64() and issues.schema.field("other_row").type == pa.int64()


@pytest.mark.slow  # moved out of the default suite's 10 minutes (docs/tests.md)
def test_a_multi_label_table_is_audited_per_label(tmp_path, capsys):
    from fusionapp.data.demo import make_demo

    table = make_demo(str(tmp_path / "demo"), rows=120, seed=2, multi_label=True)
    code, _, err = run_cli(capsys, "audit", table, "--out", tmp_path / "audit", "--multi-label", "--folds", "2")
    assert code == 0, err
    report = json.loads((tmp_path / "audit" / "report.json").read_text())
    assert report["multi_label"] and len(report["classes"]) > 2
    assert 0 <= report["cross_fit"]["micro_f1"] <= 1
    assert len(read_csv(tmp_path / "audit" / "label_quality.csv")) == 120


@needs_chromium
def test_report_html_shows_a_flagged_row_in_a_browser(tmp_path, capsys, copies_table):
    table = write_csv(tmp_path / "copies.csv", copies_table)
    code, _, err = run_cli(capsys, "audit", table, "--out", tmp_path / "audit", "--folds", "2")
    assert code == 0, err
    with browser_page() as page:
        page.goto((tmp_path / "audit" / "report.html").as_uri())
        section = page.locator("#label_conflict")
        assert section.is_visible()
        body = page.inner_text("body")
        assert "PRODUCT NUMBER 3" in body and "label_conflict" in body
        widths = page.eval_on_selector_all("td.img img", "images => images.map(i => i.naturalWidth)")
        assert widths and all(width > 0 for width in widths)


def test_label_next_ranks_the_unlabelled_rows_with_a_run(tmp_path, capsys, demo_rows, trained_run):
    rows = [dict(row) for row in demo_rows]
    for row in rows[:100]:
        row["label"] = ""
    table = write_csv(tmp_path / "partly.csv", rows)
    out = tmp_path / "next"
    code, stdout, err = run_cli(capsys, "audit", table, "--model", trained_run, "--label-next", "7", "--out", out)
    assert code == 0, err
    chosen = read_csv(out / "label_next.csv")
    assert [int(row["rank"]) for row in chosen] == list(range(1, 8))
    assert {row["id"] for row in chosen} <= {row["id"] for row in rows[:100]}
    assert len({row["id"] for row in chosen}) == 7
    assert all(0 <= float(row["margin"]) <= 1 for row in chosen)


def test_bad_input_gets_one_line(tmp_path, capsys, demo_table, demo_rows):
    code, _, err = run_cli(capsys, "audit", tmp_path / "missing.csv", "--out", tmp_path / "a")
    assert_user_error(code, err, "missing.csv")
    code, _, err = run_cli(capsys, "audit", demo_table, "--out", tmp_path / "b", "--label-col", "nope")
    assert_user_error(code, err, "nope")
    code, _, err = run_cli(capsys, "audit", demo_table, "--out", tmp_path / "c", "--folds", "1")
    assert_usage_error(code, err, "--folds")
    code, _, err = run_cli(capsys, "audit", demo_table, "--out", tmp_path / "c", "--format", "xlsx")
    assert_usage_error(code, err, "--format", "one of csv, parquet")
    code, _, err = run_cli(capsys, "audit", demo_table, "--out", tmp_path / "d", "--label-next", "5")
    assert_user_error(code, err, "--label-next", "--model")
    code, _, err = run_cli(capsys, "audit", demo_table, "--out", tmp_path / "d", "--label-next", "5",
                           "--time-limit", "10m")
    assert_usage_error(code, err, "--time-limit applies to an audit of labels, not with --label-next")
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(capsys, "audit", demo_table, "--out", tmp_path / "file")
    assert_usage_error(code, err, "--out", "is a file")
    rows = [dict(row) for row in demo_rows]
    rows[4]["image"] = str(tmp_path / "gone.png")
    with open(rows[6]["image"], "rb") as handle:
        (tmp_path / "broken.png").write_bytes(handle.read()[:40])
    rows[6]["image"] = str(tmp_path / "broken.png")
    code, out, err = run_cli(capsys, "audit", write_csv(tmp_path / "t.csv", rows), "--out", tmp_path / "e",
                             "--folds", "2", "--time-limit", "1")
    assert code == 0, err  # unreadable images are findings, not errors
    assert "--time-limit leaves under 30 s a fold for the network: the linear model alone" in out
    assert "network" not in json.loads((tmp_path / "e" / "report.json").read_text())["cross_fit"]
    kinds = {(issue["kind"], issue["id"]) for issue in read_csv(tmp_path / "e" / "issues.csv")}
    assert ("unreadable_image", rows[4]["id"]) in kinds and ("unreadable_image", rows[6]["id"]) in kinds
    assert not os.path.exists(tmp_path / "a")  # nothing is written for an audit that cannot start


def test_with_a_run_the_columns_named_win_even_as_the_default_names(tmp_path, monkeypatch):
    """With --model the run's columns and image root are the defaults; a column the user names wins,
    even one named as the default is (the run read 'caption', the user says 'text')."""
    from types import SimpleNamespace

    from fusionapp.audit import run_audit as module
    from fusionapp.audit.api import audit_request
    from fusionapp.settings import Columns, RunSettings

    settings = RunSettings(columns=Columns(text="caption", label="sentiment"), image_root=str(tmp_path))
    monkeypatch.setattr(module, "load_run", lambda folder: SimpleNamespace(config={"settings": settings.to_dict()}))
    request, _, columns = module._with_run(audit_request("t.csv", "out", "run", {"text_col": "text"}))
    assert (columns.text, columns.label, request.image_root) == ("text", "sentiment", str(tmp_path))
    request, _, columns = module._with_run(audit_request("t.csv", "out", "run", {"image_root": "elsewhere"}))
    assert (columns.text, request.image_root) == ("caption", "elsewhere")


def test_the_networks_folds_are_averaged_with_the_linear_models(monkeypatch):
    """Searches stubbed: a class a fold's network never learnt, a row it could not read and a fold
    whose search failed keep the linear model's probabilities; elsewhere both models are averaged."""
    import time
    from types import SimpleNamespace

    import pyarrow as pa

    from fusionapp.audit import network_fit
    from fusionapp.audit.run_audit import Labels
    from fusionapp.data.examples import Examples
    from fusionapp.settings import Columns

    classes = np.array([0, 1, 2, 0, 1, 2, 0, 1, 0])
    rows = Examples("t.csv", np.arange(1, 10), [str(i) for i in range(9)], None, True,
                    [f"text {i}" for i in range(9)], {}, None, None)
    monkeypatch.setattr(network_fit, "rows_at", lambda *args: rows)
    trained = []

    def train(table, folder, **flags):
        trained.append((table.to_pydict(), flags))
        if len(trained) == 3:
            raise RuntimeError("out of memory\nmore lines")
        return folder

    def predict(run, table, verbose):
        count = table.num_rows
        return pa.table({"prob_a": [None] + [0.8] * (count - 1), "prob_b": [0.2] * count})  # no class c

    monkeypatch.setattr(network_fit, "train", train)
    monkeypatch.setattr(network_fit, "predict", predict)
    fit = SimpleNamespace(fold_of=np.arange(9) % 3, learnt_from=np.arange(9) != 8)
    said = []
    network = network_fit.network_probabilities(
        SimpleNamespace(settings=SimpleNamespace(seed=0)), Columns(), Labels(["a", "b", "c"], classes),
        np.arange(9), fit, ("text",), time.time() + 1000, said.append)
    assert "Fold 3 of the network failed (out of memory): its rows keep the linear model's" in said
    assert np.isnan(network[[2, 5, 8]]).all() and np.isnan(network[:, 2]).all()
    assert np.isnan(network[0, 0]) and network[3, 0] == pytest.approx(0.8) and network[0, 1] == pytest.approx(0.2)
    table, flags = trained[0]
    assert sorted(table["__audit_text"]) == ["text 1", "text 2", "text 4", "text 5", "text 7"]  # not row 8
    assert flags["text_col"] == "__audit_text" and flags["modalities"] == ("text",) and "image_col" not in flags
    assert flags["preset"] == "fast" and flags["seed"] == 0 and "min_label_count" not in flags
    linear = np.full((9, 3), 1 / 3)
    mixed = network_fit.averaged(linear, network, multi_label=False)
    assert mixed[[2, 5, 8]] == pytest.approx(linear[[2, 5, 8]])
    assert mixed.sum(axis=1) == pytest.approx(np.ones(9))
    assert mixed[3, 0] > mixed[3, 2] > mixed[3, 1]  # a: (1/3 + 0.8) / 2, c: 1/3 kept, b: (1/3 + 0.2) / 2


@pytest.mark.slow  # two searches of about 40 s (the default suite holds the linear audit and a too-short limit)
def test_the_network_is_cross_fitted_within_the_time_limit(tmp_path, capsys, demo_table):
    import time

    started = time.time()
    code, out, err = run_cli(capsys, "audit", demo_table, "--out", tmp_path / "audit", "--folds", "2",
                             "--time-limit", "120", "--tabular-col", "price", "--tabular-col", "seller")
    assert code == 0, err
    assert time.time() - started <= 130  # the searches end within the limit; the reports follow
    assert "Cross-fitting the network, fold 2 of 2" in out
    report = json.loads((tmp_path / "audit" / "report.json").read_text())
    network = report["cross_fit"]["network"]
    assert network["rows"] == report["labelled"] and network["accuracy"] > 0.25  # four classes: above chance
    assert "averaged with the network's" in report["cross_fit"]["model"]
    assert len(read_csv(tmp_path / "audit" / "label_quality.csv")) == report["labelled"]


def test_given_labels_are_written_as_the_table_writes_them():
    """A row's given label as a table cell: the class, or the label set joined by --label-sep (the
    separator the data uses, not a fixed one); "" where the row has none. Per-class counts read the
    classes themselves, so a separator inside no name matters."""
    from fusionapp.audit.run_audit import Labels

    single = Labels(["cat", "dog"], np.array([1, -1, 0]))
    assert single.cells() == ["dog", "", "cat"] and single.names(1) == [] and single.names(0) == ["dog"]
    matrix = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]])
    sets = Labels(["comedy", "drama", "war"], np.array([0, -1, 0]), matrix, ";")
    assert sets.cells() == ["comedy;war", "", "drama"] and sets.cells([2, 0]) == ["drama", "comedy;war"]
    assert sets.names(0) == ["comedy", "war"]
