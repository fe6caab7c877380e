"""Multi-label runs: label sets in, a sigmoid and a tuned threshold per label, the multi-label report,
and the same chosen set from predict, evaluate, serve and the exported SavedModel."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import (TINY_MODEL, asgi_post_json, assert_usage_error, assert_user_error, browser_page, needs_chromium,
                      read_csv, run_cli, serving, write_csv)

TAGS = ["angular", "boxed", "collectible", "new", "round", "used"]


# === Reading label sets ===
def test_label_cells_are_sets():
    from fusionapp.preprocessing.labels import label_cell_problem, parse_label_set

    assert parse_label_set(" Drama | Comedy||Drama ", "|") == ("Drama", "Comedy")
    assert parse_label_set('["Drama", "Sci Fi", 7]', "|") == ("Drama", "Sci Fi", "7")
    # a label holding the separator could not be told apart in predictions, which join sets with it
    assert "contains the separator '|'" in label_cell_problem('["Sci|Fi"]', "|")
    assert parse_label_set("", "|") == ()
    assert parse_label_set("a;b", ";") == ("a", "b")
    assert "not a JSON list" in label_cell_problem("[Drama, Comedy]", "|")
    assert "only strings or numbers" in label_cell_problem('[["a"]]', "|")
    assert label_cell_problem("[]", "|") is None


def test_jsonl_lists_and_empty_cells_become_targets(tmp_path):
    from conftest import read_rows
    from fusionapp.preprocessing.configs import TextConfig, TextInput
    from fusionapp.preprocessing.preprocessor import Preprocessor

    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a", "label": ["x", "y"]}\n{"text": "b", "label": null}\n{"text": "c", "label": "z|x"}\n')
    cells = [row["label"] for row in read_rows(str(path))]
    text = TextConfig(TextInput.TOKEN_IDS, 4, tokens="words", ngrams=1, vocabulary_size=3)
    preprocessor = Preprocessor(["x", "y"], ("text",), 32, text=text, label_sep="|")
    # "z" is not one of the model's labels: it is left out, and the row keeps its "x".
    np.testing.assert_array_equal(preprocessor.label_targets(cells), [[1, 1], [0, 0], [1, 0]])


def test_a_multi_label_model_needs_two_labels():
    from fusionapp.errors import FusionError
    from fusionapp.preprocessing.adapt import frequent_labels

    assert frequent_labels(["a|b", "a", "b|c", ""], "|", 2) == (["a", "b"], {"c": 1})
    with pytest.raises(FusionError, match="at least two labels .* only 'a' does"):
        frequent_labels(["a|b", "a", "c"], "|", 2)


def test_naming_a_separator_asks_for_multi_label():
    from fusionapp.settings import RunSettings, apply_flat

    settings = apply_flat(RunSettings(), {"label_sep": ";"})
    assert settings.model.multi_label and settings.columns.label_sep == ";"
    assert not apply_flat(RunSettings(), {"label_sep": ";", "multi_label": False}).model.multi_label


@pytest.mark.parametrize("flags, option", [(["--label-sep", ""], "--label-sep"),
                                           (["--multi-label", "--min-label-count", "0"], "--min-label-count")])
def test_bad_multi_label_flags_are_usage_errors(capsys, demo_table, tmp_path, flags, option):
    code, _, err = run_cli(capsys, "train", demo_table, "--out", tmp_path / "run", *flags)
    assert_usage_error(code, err, option)
    assert not (tmp_path / "run").exists()


def test_tfds_sources_are_refused_before_anything_is_written(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "tfds:mnist", "--multi-label", "--out", tmp_path / "run")
    assert_user_error(code, err, "--multi-label", "TFDS")
    assert not (tmp_path / "run").exists()


# === The decisions and the loss ===
def test_thresholds_maximise_each_labels_f1():
    from sklearn.metrics import f1_score

    from fusionapp.posthoc.decisions import THRESHOLDS, tune_thresholds

    rng = np.random.default_rng(0)
    y = (rng.random((80, 3)) < [0.5, 0.2, 0.0]).astype(int)
    p = np.clip(0.35 * y + rng.random((80, 3)) * 0.7, 0, 1)
    chosen = tune_thresholds(y, p)
    for k in range(2):
        best = max(f1_score(y[:, k], p[:, k] >= t) for t in THRESHOLDS)
        assert f1_score(y[:, k], p[:, k] >= chosen[k]) == pytest.approx(best)
    assert chosen[2] == 0.5  # no positives among these rows: left at 0.5


def test_the_loss_is_weighted_binary_cross_entropy():
    from fusionapp.model.losses import LabelBinaryCrossentropy

    y = np.array([[1, 0, 1], [0, 0, 1]], np.float32)
    z = np.array([[2.0, -1.0, 0.5], [-3.0, 4.0, -0.2]], np.float32)
    p = 1 / (1 + np.exp(-z))
    weights = np.array([3.0, 1.0, 0.5])
    expected = -(weights * y * np.log(p) + (1 - y) * np.log(1 - p)).mean()
    loss = LabelBinaryCrossentropy(weights)
    assert float(loss(y, z)) == pytest.approx(expected, rel=1e-5)
    # registered, as a checkpoint's compiled loss must be for --resume to load it
    import keras

    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, LabelBinaryCrossentropy)
    assert float(restored(y, z)) == pytest.approx(expected, rel=1e-5)


def test_report_matches_scikit_learn():
    from sklearn import metrics

    from conftest import MULTILABEL_REPORT_KEYS
    from fusionapp.evaluation.multilabel import multilabel_report

    rng = np.random.default_rng(1)
    y = (rng.random((60, 4)) < 0.35).astype(int)
    y[:, 3] = 0  # a label these rows never carry: its ROC AUC is undefined
    p = np.clip(0.4 * y + rng.random((60, 4)) * 0.6, 0.001, 0.999)
    chosen = p >= 0.45
    y[:2], chosen[:2] = 0, False  # rows without labels, given none: right, for the samples average
    chosen[2], y[2] = [True, False, False, False], 0  # a row without labels given one: wrong
    report = multilabel_report(y, p, chosen, list("abcd"), np.full(4, 0.45))
    assert tuple(report) == MULTILABEL_REPORT_KEYS
    assert report["subset_accuracy"] == metrics.accuracy_score(y, chosen)
    assert report["hamming_loss"] == metrics.hamming_loss(y, chosen)
    for average in ("micro", "macro", "samples"):
        zero = 1.0 if average == "samples" else 0.0
        # macro: over the labels the rows carry (d is listed as absent instead)
        labels = {"labels": [0, 1, 2]} if average == "macro" else {}
        assert report[f"{average}_f1"] == pytest.approx(
            metrics.f1_score(y, chosen, average=average, zero_division=zero, **labels))
        assert report[f"{average}_precision"] == pytest.approx(
            metrics.precision_score(y, chosen, average=average, zero_division=zero, **labels))
        assert report[f"{average}_recall"] == pytest.approx(
            metrics.recall_score(y, chosen, average=average, zero_division=zero, **labels))
    assert report["absent_classes"] == ["d"]
    # the two empty rows given none count 1 each, the empty row given a label 0
    assert report["samples_f1"] > metrics.f1_score(y, chosen, average="samples", zero_division=0.0)
    assert report["label_ranking_average_precision"] == pytest.approx(
        metrics.label_ranking_average_precision_score(y, p))
    aucs = [metrics.roc_auc_score(y[:, k], p[:, k]) for k in range(3)]
    assert [report["per_class"][name]["roc_auc"] for name in "abc"] == pytest.approx(aucs)
    assert report["per_class"]["d"]["roc_auc"] is None
    assert report["roc_auc"] == pytest.approx(np.mean(aucs))
    assert report["per_class"]["b"]["f1"] == pytest.approx(metrics.f1_score(y[:, 1], chosen[:, 1]))
    assert report["per_class"]["b"]["support"] == y[:, 1].sum()
    assert report["log_loss"] == pytest.approx(metrics.log_loss(y.ravel(), p.ravel()))
    assert report["brier"] == pytest.approx(np.mean([metrics.brier_score_loss(y[:, k], p[:, k]) for k in range(3)]
                                                    + [np.mean(p[:, 3] ** 2)]))


# === A tiny multi-label run ===
@pytest.fixture(scope="module")
def multilabel_table(tmp_path_factory):
    """The multi-label demo (200 rows) with a tag on one row only, a row without labels, and a row
    whose labels are a JSON list."""
    from fusionapp.data.demo import make_demo

    folder = tmp_path_factory.mktemp("demo-multilabel")
    make_demo(str(folder), rows=200, seed=2, multi_label=True)
    rows = read_csv(folder / "demo.csv")
    train = [i for i, row in enumerate(rows) if row["split"] == "train"]
    rows[train[0]]["label"] += "|rare"
    rows[train[1]]["label"] = ""
    rows[train[2]]["label"] = json.dumps(rows[train[2]]["label"].split("|"))
    return write_csv(folder / "demo.csv", rows)


@pytest.fixture(scope="module")
def multilabel_run(multilabel_table, tmp_path_factory):
    from fusionapp import train

    out = tmp_path_factory.mktemp("runs") / "multilabel"
    return train(multilabel_table, str(out), multi_label=True, epochs=3, learning_rate=5e-3,
                 tabular_col=("price", "seller"), verbose=0, **{**TINY_MODEL, "image_size": 24})


def test_training_records_label_sets_and_thresholds(multilabel_run):
    from fusionapp.runs.files import read_json
    from fusionapp.runs.load import load_run

    config = read_json(f"{multilabel_run}/config.json")
    assert config["class_names"] == TAGS
    assert config["label_sets"]["dropped_labels"] == {"rare": 1}
    assert config["label_sets"]["train_rows_without_labels"] == 1
    model = load_run(multilabel_run).model
    saved = model.head.thresholds.get_weights()[0]
    np.testing.assert_allclose(saved, [config["label_thresholds"][tag] for tag in TAGS], atol=1e-6)
    assert model.head.class_prior is None
    # the wide path's blend weight is chosen per label
    assert sorted(config["wide"]["alpha"]) == TAGS
    np.testing.assert_allclose(model.head.blend.get_weights()[0],
                               [config["wide"]["alpha"][tag] for tag in TAGS])
    history = read_csv(f"{multilabel_run}/history.csv")
    assert "val_binary_accuracy" in history[0]


def test_evaluate_equals_scikit_learn_on_its_own_predictions(capsys, multilabel_run, multilabel_table, tmp_path):
    from sklearn import metrics

    code, out, err = run_cli(capsys, "evaluate", multilabel_run, multilabel_table, "--split", "test",
                             "--out", tmp_path / "report.json", "--predictions", tmp_path / "predictions.csv",
                             "--plots", tmp_path / "plots", "--ablate")
    assert code == 0, err
    assert "micro-F1" in out and "samples-F1" in out and "Modality ablation" in out
    report = json.loads((tmp_path / "report.json").read_text())
    rows = read_csv(tmp_path / "predictions.csv")
    assert list(rows[0])[:3] == ["id", "label", "predicted_labels"]
    y = np.array([[tag in row["label"].split("|") for tag in TAGS] for row in rows])
    chosen = np.array([[tag in row["predicted_labels"].split("|") for tag in TAGS] for row in rows])
    p = np.array([[float(row[f"prob_{tag}"]) for tag in TAGS] for row in rows])
    assert report["n_examples"] == len(rows) == 30
    assert report["micro_f1"] == pytest.approx(metrics.f1_score(y, chosen, average="micro", zero_division=0))
    assert report["samples_f1"] == pytest.approx(metrics.f1_score(y, chosen, average="samples", zero_division=1.0))
    assert report["hamming_loss"] == pytest.approx(metrics.hamming_loss(y, chosen))
    assert report["label_ranking_average_precision"] == pytest.approx(
        metrics.label_ranking_average_precision_score(y, p), abs=1e-4)
    thresholds = np.array([report["per_class"][tag]["threshold"] for tag in TAGS])
    np.testing.assert_array_equal(chosen, p >= thresholds - 1e-6)
    assert set(report["ablation"]) == {"image", "text", "tabular"}
    assert "micro_f1_change" in report["ablation"]["image"]
    assert sorted(path.name for path in (tmp_path / "plots").iterdir()) == [
        "precision_recall.png", "reliability.png", "roc.png"]


def test_unknown_labels_are_left_out_and_counted(capsys, multilabel_run, multilabel_table, tmp_path):
    from fusionapp import evaluate

    rows = read_csv(multilabel_table)[:12]
    rows[0]["label"] = "round|sparkly"
    rows[1]["label"] = "[broken"  # not bracketed at both ends: read with the separator, one odd label
    rows[2]["label"] = "[broken, list]"
    table = write_csv(tmp_path / "t.csv", rows)
    images = Path(multilabel_table).parent
    report = evaluate(multilabel_run, table, image_root=str(images), verbose=0)
    assert report["unknown_labels"] == {"[broken": 1, "sparkly": 1}
    assert report["n_examples"] == 11 and report["n_skipped"] == 1
    code, _, err = run_cli(capsys, "evaluate", multilabel_run, table, "--on-bad-row", "error", "--image-root", images)
    assert_user_error(code, err, "row 3", "not a JSON list")


@pytest.mark.slow
def test_predict_serve_and_export_choose_the_same_sets(capsys, multilabel_run, multilabel_table, tmp_path):
    from fusionapp import predict
    from fusionapp.runs.load import load_run
    from fusionapp.serve.app import create_app

    folder = Path(multilabel_table).parent
    rows = [row for row in read_csv(multilabel_table) if row["split"] == "test"][:6]
    table = predict(multilabel_run, multilabel_table, split="test", top_k=3, verbose=0)[:6]
    assert {"predicted_labels", "top_k", "prob_round"} <= set(table[0]) and "predicted_label" not in table[0]
    likeliest = sorted(TAGS, key=lambda tag: -float(table[0][f"prob_{tag}"]))[:3]
    assert table[0]["top_k"] == likeliest
    pair = predict(multilabel_run, image=str(folder / rows[0]["image"]), text=rows[0]["text"],
                   tabular={"price": rows[0]["price"], "seller": rows[0]["seller"]}, top_k=2)
    assert sorted(pair) == ["missing", "predicted_labels", "probabilities", "thresholds", "top_k"]
    assert "|".join(pair["predicted_labels"]) == table[0]["predicted_labels"]
    assert set(pair["predicted_labels"]) == {tag for tag in TAGS
                                             if pair["probabilities"][tag] >= pair["thresholds"][tag]}
    code, out, err = run_cli(capsys, "predict", multilabel_run, "--image", folder / rows[0]["image"], "--text",
                             rows[0]["text"], "--tabular", f"price={rows[0]['price']}", "--tabular",
                             f"seller={rows[0]['seller']}", "--explain", "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["explanation"]["label"] == max(answer["probabilities"], key=answer["probabilities"].get)
    assert answer["explanation"]["probability"] == pytest.approx(max(answer["probabilities"].values()), abs=1e-5)

    app = create_app(load_run(multilabel_run))
    items = [{"image": base64.b64encode((folder / row["image"]).read_bytes()).decode(), "text": row["text"],
              "tabular": {"price": row["price"], "seller": row["seller"]}} for row in rows]
    status, body = asgi_post_json(app, "/predict/batch", {"items": items})
    assert status == 200
    for served, expected in zip(body["predictions"], table):
        assert "|".join(served["predicted_labels"]) == expected["predicted_labels"]
        for tag in TAGS:
            assert served["probabilities"][tag] == pytest.approx(float(expected[f"prob_{tag}"]), abs=2e-6)

    code, _, err = run_cli(capsys, "export", multilabel_run, "--out", tmp_path / "saved")
    assert code == 0, err
    (tmp_path / "rows.json").write_text(json.dumps([{**row, "image": str(folder / row["image"])} for row in rows]))
    done = subprocess.run([sys.executable, "-c", SAVED_MODEL_SCRIPT, str(tmp_path / "saved"),
                           str(tmp_path / "rows.json")], capture_output=True, text=True, check=True)
    exported = json.loads(done.stdout.strip().splitlines()[-1])
    assert exported["labels"] == [row["predicted_labels"] for row in table]
    np.testing.assert_allclose(exported["thresholds"], [pair["thresholds"][tag] for tag in TAGS], atol=1e-6)
    np.testing.assert_allclose(exported["probabilities"],
                               [[float(row[f"prob_{tag}"]) for tag in TAGS] for row in table], atol=2e-6)


SAVED_MODEL_SCRIPT = """
import json, sys
import tensorflow as tf
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
rows = json.load(open(sys.argv[2]))
out = serve(image=tf.constant([open(r["image"], "rb").read() for r in rows]),
            text=tf.constant([r["text"] for r in rows]),
            tabular_price=tf.constant([float(r["price"]) if r["price"] else float("nan") for r in rows]),
            tabular_seller=tf.constant([r["seller"] for r in rows]))
print(json.dumps({"probabilities": out["probabilities"].numpy().tolist(),
                  "thresholds": out["thresholds"].numpy()[0].tolist(),
                  "labels": [labels.decode() for labels in out["predicted_labels"].numpy()]}))
"""


def test_info_and_metadata_say_multi_label(capsys, multilabel_run):
    from fusionapp.runs.load import load_run
    from fusionapp.serve.predictor import model_metadata as _metadata

    code, out, err = run_cli(capsys, "info", multilabel_run)
    assert code == 0, err
    assert "(multi-label)" in out and "thresholds" in out and "1 labels on fewer than 2 rows dropped (rare)" in out
    metadata = _metadata(load_run(multilabel_run))
    assert metadata["multi_label"] is True and metadata["label_sep"] == "|"
    assert metadata["validation_accuracy"] is None and 0 <= metadata["validation_micro_f1"] <= 1


def colour_word_table(folder: Path, rows: int = 480, seed: int = 0) -> str:
    """Tags from the image (`red` / `blue`: the colour of a noisy 16 px picture), from the text
    (`north` / `south`: one word among filler words) and from both (`pair`: red and north)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    records = []
    for i in range(rows):
        red, north = rng.random() < 0.5, rng.random() < 0.5
        pixels = rng.normal(90, 40, (16, 16, 3))
        pixels[..., 0 if red else 2] += 110
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / "images" / f"{i}.png")
        words = list(rng.choice(["big", "old", "shiny", "cheap", "odd", "blue-ish", "reddish"], 4))
        words.insert(int(rng.integers(0, 5)), "north" if north else "south")
        tags = ["red" if red else "blue", "north" if north else "south"] + (["pair"] if red and north else [])
        records.append({"image": f"images/{i}.png", "text": " ".join(words), "label": "|".join(tags),
                        "split": "test" if i % 5 == 0 else "train" if i % 5 > 1 else "val"})
    return write_csv(folder / "table.csv", records)


# Three trainings (20 s); the single-label fusion test (tests/test_fusion.py) is the default suite's.
@pytest.mark.slow
def test_fused_sets_beat_each_single_modality(tmp_path):
    """Only the fused model can get whole sets right: each modality alone knows half of every set."""
    from fusionapp import train

    table = colour_word_table(tmp_path / "data")
    settings = {**TINY_MODEL, "image_size": 16, "image_filters": (16, 32), "epochs": 6, "multi_label": True}
    reports = {}
    from fusionapp.settings import applicable

    for modalities in (("image", "text"), ("image",), ("text",)):
        run = train(table, str(tmp_path / "_".join(modalities)), verbose=0,
                    **applicable({**settings, "modalities": modalities}))
        reports[modalities] = json.loads(Path(run, "test_metrics.json").read_text())
    fused, image_only, text_only = (reports[m]["micro_f1"] for m in reports)
    assert fused > max(image_only, text_only) + 0.1, reports
    subset = {m: reports[m]["subset_accuracy"] for m in reports}
    assert subset[("image", "text")] > 0.7 and max(subset[("image",)], subset[("text",)]) < 0.5, subset


# The browser (11 s); the single-label page is the default suite's (tests/test_review.py).
@pytest.mark.slow
@needs_chromium
def test_the_page_shows_the_chosen_set(multilabel_run, multilabel_table):
    from fusionapp import predict

    folder = Path(multilabel_table).parent
    row = next(row for row in read_csv(multilabel_table) if row["split"] == "test")
    expected = predict(multilabel_run, image=str(folder / row["image"]), text=row["text"])
    with serving(multilabel_run) as url, browser_page() as page:
        page.goto(url + "/")
        page.wait_for_selector("#tab-price")
        page.set_input_files("#image", str(folder / row["image"]))
        page.fill("#text", row["text"])
        page.click("#submit")
        page.wait_for_selector("#label")
        shown = page.inner_text("#label")
        assert shown == (", ".join(expected["predicted_labels"]) or "(no label reaches its threshold)")
        assert page.locator(".bar").count() == len(TAGS) == page.locator(".bar .threshold").count()
        chosen = page.locator('.bar[data-chosen="1"]')
        assert sorted(chosen.nth(i).get_attribute("data-label") for i in range(chosen.count())) == sorted(
            expected["predicted_labels"])
        # The explanation is of the likeliest label, which the heading names.
        page.wait_for_selector("#explanation")
        likeliest = max(expected["probabilities"], key=expected["probabilities"].get)
        assert f"Why {likeliest}:" in page.inner_text("#explanation h2")
