"""The defects a read of the code found: flags taken and then ignored, errors passed off as other
errors, a finished model left in an unfinished run, decisions taken in more than one place."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from conftest import (TINY_MODEL, asgi_post_json, assert_usage_error, assert_user_error, needs_chromium, read_csv,
                      run_cli, write_csv)


# === Flags taken and then ignored: refused with one line ===
@pytest.mark.parametrize("flag", [["--out", "p.csv"], ["--split", "test"], ["--batch-size", "8"],
                                  ["--on-bad-row", "error"], ["--text-col", "caption"], ["--image-root", "x"]])
def test_a_single_pair_refuses_the_flags_of_a_table(flag, trained_run, capsys):
    code, out, err = run_cli(capsys, "predict", trained_run, "--text", "a used lamp", *flag)
    assert_usage_error(code, err, flag[0], "applies to a table")
    assert not os.path.exists("p.csv")


def test_json_is_a_single_pairs_output_not_a_tables(trained_run, demo_table, capsys):
    code, _, err = run_cli(capsys, "predict", trained_run, demo_table, "--json")
    assert_usage_error(code, err, "--json", "single pair")


def test_the_python_api_refuses_table_options_for_a_pair(trained_run):
    from fusionapp import predict
    from fusionapp.errors import FusionError

    with pytest.raises(FusionError, match="--batch-size applies to a table"):
        predict(trained_run, text="a used lamp", batch_size=8)


def test_the_pixel_cache_keeps_its_old_name(demo_table, tmp_path):
    from fusionapp.settings import RunSettings, apply_flat

    assert apply_flat(RunSettings(), {"cache": "memory"}).training.pixel_cache == "memory"
    assert RunSettings.from_dict({"training": {"cache": "disk"}}).training.pixel_cache == "disk"


# === Errors passed off as other errors ===
def test_a_bug_while_loading_keeps_its_type_and_a_damaged_file_is_one_line(trained_run, tmp_path, monkeypatch,
                                                                          capsys):
    from fusionapp.errors import FusionError
    from fusionapp.model.classifier import FusionClassifier
    from fusionapp.runs.load import load_run

    damaged = tmp_path / "damaged"
    shutil.copytree(trained_run, damaged)
    data = (damaged / "model.keras").read_bytes()
    (damaged / "model.keras").write_bytes(data[: len(data) // 2])
    code, _, err = run_cli(capsys, "info", damaged)
    assert code == 0, err  # info reads the JSON files only
    with pytest.raises(FusionError, match="cannot load the model"):
        load_run(str(damaged))

    def broken(cls, config):
        raise RuntimeError("a bug in from_config")

    monkeypatch.setattr(FusionClassifier, "from_config", classmethod(broken))
    with pytest.raises(RuntimeError, match="a bug in from_config"):
        load_run(trained_run)

    def refusing(cls, config):
        raise FusionError("this model file was written by fusionapp 0.2")

    monkeypatch.setattr(FusionClassifier, "from_config", classmethod(refusing))
    with pytest.raises(FusionError, match="^this model file was written by fusionapp 0.2$"):
        load_run(trained_run)


def test_the_feature_cache_clears_whatever_its_limit_says(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FUSIONAPP_CACHE_DIR", str(tmp_path / "features"))
    (tmp_path / "features" / "setup").mkdir(parents=True)
    np.save(tmp_path / "features" / "setup" / "f.npy", np.zeros(10))
    monkeypatch.setenv("FUSIONAPP_CACHE_LIMIT_GB", "lots")
    code, out, err = run_cli(capsys, "feature-cache", "clear")
    assert code == 0 and "Removed" in out, err
    assert not (tmp_path / "features" / "setup").exists()
    code, _, err = run_cli(capsys, "feature-cache", "info")
    assert_user_error(code, err, "FUSIONAPP_CACHE_LIMIT_GB='lots'")
    monkeypatch.delenv("FUSIONAPP_CACHE_LIMIT_GB")
    assert run_cli(capsys, "cache", "info")[0] == 0  # the command's name before 0.7


def test_a_bug_while_reading_a_form_is_a_500_and_a_broken_form_a_400(trained_run, monkeypatch):
    import asyncio

    from starlette.requests import Request

    from fusionapp.runs.load import load_run
    from fusionapp.serve.app import create_app

    app = create_app(load_run(trained_run))

    def post(body, content_type):
        sent = []

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/predict", "raw_path": b"/predict", "query_string": b"", "root_path": "",
                 "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
        try:
            asyncio.run(app(scope, receive, send))
        except RuntimeError:
            pass  # Starlette answers 500, then raises the error on for the server to log
        return next(message["status"] for message in sent if message["type"] == "http.response.start")

    assert post(b"--x\r\nbroken", "multipart/form-data") == 400  # no boundary

    async def buggy(self, **options):
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(Request, "form", buggy)
    assert post(b"--x--\r\n", "multipart/form-data; boundary=x") == 500
    assert asgi_post_json(app, "/predict", {"text": "a used lamp"})[0] == 200


# === A finished model in an unfinished run ===
@pytest.mark.slow  # moved out of the default suite's 10 minutes (docs/tests.md)
@pytest.mark.integration
def test_a_test_split_without_one_usable_row_leaves_a_complete_run(demo_rows, tmp_path, capsys):
    for row in demo_rows:
        if row["split"] == "test":
            row["image"] = str(tmp_path / "gone.png")
    table = write_csv(tmp_path / "table.csv", demo_rows)
    code, out, err = run_cli(capsys, "train", table, "--out", tmp_path / "run", "--epochs", 1, "--image-size", 32)
    assert code == 0, err
    assert "Test split: no usable rows" in out
    config = json.load(open(tmp_path / "run" / "config.json"))
    assert config["status"] == "complete" and not (tmp_path / "run" / "resume").exists()
    assert not (tmp_path / "run" / "test_metrics.json").exists()


# === Decisions are the raw-input function's ===
def test_tables_take_the_decision_of_the_raw_input_function(trained_run, demo_table):
    """The CSV, the JSON answer and the report show the class the raw-input function chose, even
    where the probabilities as written would not say so (here: a decision set against them)."""
    from fusionapp.evaluation.metrics import prediction_report
    from fusionapp.inference.answers import pair_result, prediction_table
    from fusionapp.inference.raw_inference import predict_examples
    from fusionapp.inference.run_rows import iter_rows_for_run
    from fusionapp.runs.load import load_run

    run = load_run(trained_run)
    examples, _ = next(iter_rows_for_run(run, demo_table, "test", need_label=True))
    predictions = predict_examples(run.model, examples)
    np.testing.assert_array_equal(predictions.predicted, predictions.logits.argmax(axis=1))
    predictions.predicted = predictions.ranking[:, 1]  # the second likeliest class, as if decided so
    classes = run.preprocessor.class_names
    _, rows = prediction_table(examples, predictions, classes)
    assert [row[1] for row in rows] == [classes[i] for i in predictions.ranking[:, 1]]
    assert pair_result(predictions, 0, classes)["predicted_label"] == classes[predictions.ranking[0, 1]]
    report = prediction_report(run.model, examples, predictions)
    y = run.preprocessor.label_targets(examples.labels)
    assert report["accuracy"] == pytest.approx(np.mean(predictions.ranking[:, 1] == y))


def test_the_explainer_explains_the_decision_of_the_raw_input_function(monkeypatch):
    """The explainer takes its class from the raw-input function's `decide` (here made to choose the
    second likeliest class), not from a softmax and argmax of its own. A small untrained tabular
    model: what counts is which class the explanation is of."""
    import keras
    import tensorflow as tf

    from fusionapp.data.examples import Examples
    from fusionapp.inference import raw_inference as raw
    from fusionapp.inference.explain import explain_examples
    from fusionapp.model import NetworkSpec, build_classifier
    from fusionapp.preprocessing import adapt
    from fusionapp.settings import ModelSettings, TextSettings

    labels = ["a", "b", "c"] * 4
    cells = [f"{value:.3f}" for value in np.random.default_rng(0).normal(size=len(labels))]
    rows = Examples(source="t", row_numbers=np.arange(1, 13), ids=[""] * 12, images=None, images_are_files=True,
                    texts=None, tabular={"x": cells}, labels=labels, splits=None)
    preprocessor = adapt(labels, None, rows.tabular, modalities=("tabular",), image_size=16, text=TextSettings(),
                         text_encoder="bag", tabular_kinds={"x": "numeric"})
    keras.utils.set_random_seed(0)
    model = build_classifier(ModelSettings(modalities=("tabular",), tabular_units=8, branch_units=8, fusion_units=8),
                             NetworkSpec.for_preprocessor(preprocessor), preprocessor)
    decide = raw.RawInference.decide

    def second_likeliest(self, logits):
        decision = decide(self, logits)
        ranking = tf.roll(decision["ranking"], shift=-1, axis=1)
        return {**decision, "ranking": ranking, "predicted": ranking[:, 0]}

    monkeypatch.setattr(raw.RawInference, "decide", second_likeliest)
    row = rows.subset([0])
    change = (raw.predict_examples(model, row.blanked("tabular")).probabilities[0]
              - raw.predict_examples(model, row).probabilities[0])
    full = raw.predict_examples(model, row).probabilities[0]
    second, first = int(np.argsort(-full, kind="stable")[1]), int(full.argmax())
    assert abs(change[second] - change[first]) > 1e-4  # the two classes' explanations differ here
    explanation = explain_examples(model, row)[0]
    assert explanation["modalities"]["tabular"] == pytest.approx(change[second], abs=1e-6)


@pytest.mark.slow  # moved out of the default suite's 10 minutes (docs/tests.md)
@pytest.mark.integration
@needs_chromium
def test_the_page_names_the_run_and_shows_the_likeliest_few_classes(tmp_path):
    from conftest import browser_page, serving
    from fusionapp import train

    names = [f"topic{i}" for i in range(8)]
    rows = [{"text": f"all about {names[i % 8]} today", "label": names[i % 8]} for i in range(160)]
    sizes = {name: value for name, value in TINY_MODEL.items() if not name.startswith("image")}  # no images
    run = train(write_csv(tmp_path / "topics.csv", rows), str(tmp_path / "run"), epochs=1, verbose=0, **sizes)
    with serving(run) as url, browser_page() as page:
        page.goto(url)
        page.wait_for_function("document.getElementById('about').textContent.includes('8 classes')")
        about = page.locator("#about").text_content()
        assert "Run run" not in about and "\u201crun\u201d" in about
        page.fill("#text", "all about topic3 today")
        page.click("#submit")
        page.wait_for_selector(".bar")
        assert page.locator(".bar:visible").count() == 5 and page.locator(".bar").count() == 8
        assert page.locator(".bar").first.get_attribute("data-label") == page.locator("#label").text_content()
        page.click("#more")
        assert page.locator(".bar:visible").count() == 8
