"""Explanations: their shape in the CLI, the Python API and HTTP; sanity checks that they mean
something on data whose label depends on one word and on the colour of one image region (and
fail on the same network with random weights); the table form."""

from __future__ import annotations

import base64
import json
import os

import numpy as np
import pytest

from conftest import (asgi_post_json, browser_page, image_bytes, needs_chromium, read_csv, run_cli, serving,
                      write_csv)

FILLER = ("lovely", "item", "for", "sale", "today", "quite", "nice", "with", "box", "cheap", "fast", "shipping")
COLOURS = {"red": (220, 40, 30), "blue": (30, 60, 220)}
DISTRACTORS = ((40, 190, 60), (230, 210, 40))  # green, yellow: as bold, never deciding
DIRECTIONS = ("north", "south")
SIZE = 32
# The deciding region: a block in the left half. The right half holds a block of another colour.
REGION = (slice(2, 30), slice(1, 15))


def make_table(folder, rows: int, seed: int):
    rng = np.random.default_rng(seed)
    os.makedirs(folder / "images", exist_ok=True)
    table = []
    for i in range(rows):
        colour, direction = rng.choice(list(COLOURS)), rng.choice(DIRECTIONS)
        pixels = rng.integers(90, 150, (SIZE, SIZE, 3)).astype(np.uint8)
        pixels[REGION] = COLOURS[colour]
        pixels[2:30, 17:31] = DISTRACTORS[int(rng.integers(0, 2))]
        name = f"images/{i:04d}.png"
        (folder / name).write_bytes(image_bytes(pixels, "PNG"))
        words = list(rng.choice(FILLER, 6))
        words.insert(int(rng.integers(0, 7)), direction)
        split = "train" if i < rows * 0.7 else ("val" if i < rows * 0.85 else "test")
        table.append({"id": f"r{i}", "image": name, "text": " ".join(words), "weight": f"{rng.normal(10, 2):.2f}",
                      "label": f"{colour}_{direction}", "split": split})
    write_csv(folder / "table.csv", table)
    return str(folder / "table.csv"), table


@pytest.fixture(scope="module")
def region_data(tmp_path_factory):
    return make_table(tmp_path_factory.mktemp("region"), 480, seed=3)


@pytest.fixture(scope="module")
def region_run(region_data, tmp_path_factory):
    from fusionapp import train

    table, _ = region_data
    out = tmp_path_factory.mktemp("runs") / "region"
    return train(table, str(out), epochs=8, tabular_col=("weight",), image_size=SIZE, image_filters=(16, 32),
                 image_stem_filters=16, branch_units=32, fusion_units=32, modality_dropout=0.2, verbose=0)


def sanity(model, table_path, rows) -> dict:
    """On the test rows: how often the top word is the deciding one, the heat map's share on the
    deciding region, the mean probability change with each input blanked, and how often blanking
    the image or the text changes the answer."""
    from fusionapp.settings import Columns
    from fusionapp.data.sources import load_examples
    from conftest import heatmap_array
    from fusionapp.inference.explain import explain_examples
    from fusionapp.inference.raw_inference import predict_examples

    examples = load_examples(table_path, Columns(tabular=("weight",)), modalities=("image", "text", "tabular"))
    examples = examples.select_split("test")
    explanations = explain_examples(model, examples)
    predicted = predict_examples(model, examples).probabilities.argmax(axis=1)
    blanked = {m: predict_examples(model, examples.blanked(m)).probabilities.argmax(axis=1) for m in ("image", "text")}
    words = [text.split() for text in examples.texts]
    deciding = [next(w for w in ws if w in DIRECTIONS) for ws in words]
    top_word = np.mean([bool(e["text"]) and e["text"][0][0] == d for e, d in zip(explanations, deciding)])
    shares = []
    for explanation in explanations:
        heat = heatmap_array(explanation["image"]["heatmap"])
        assert heat.shape == (SIZE, SIZE)
        shares.append(heat[REGION].sum() / max(heat.sum(), 1e-9))
    return {"top_word": float(top_word), "region_share": float(np.mean(shares)),
            "change": {m: float(np.mean([e["modalities"][m] for e in explanations])) for m in ("image", "text", "tabular")},
            "answer_changed": {m: float(np.mean(blanked[m] != predicted)) for m in blanked}}


def passes(figures: dict) -> bool:
    # The region is 392 of 1,024 pixels: a heat map spread evenly would put 38% of its mass there.
    return (figures["top_word"] >= 0.8 and figures["region_share"] >= 0.5
            and min(figures["change"]["image"], figures["change"]["text"]) <= -0.2
            and min(figures["answer_changed"].values()) >= 0.3)


def test_explanations_point_at_the_deciding_word_region_and_inputs(region_run, region_data):
    from fusionapp.runs.load import load_run

    run = load_run(region_run)
    assert json.load(open(os.path.join(region_run, "test_metrics.json")))["accuracy"] >= 0.9
    figures = sanity(run.model, region_data[0], region_data[1])
    assert passes(figures), figures
    # The noise column matters far less than either deciding input.
    assert abs(figures["change"]["tabular"]) < 0.5 * min(-figures["change"]["image"], -figures["change"]["text"])


def test_the_same_checks_fail_with_random_weights(region_run, region_data):
    """An explanation method that passed these on an untrained network would be showing the data,
    not the model."""
    from fusionapp.runs.load import load_run
    from fusionapp.settings import ModelSettings, settings_from_dict
    from fusionapp.model import NetworkSpec, build_classifier

    run = load_run(region_run)
    settings = settings_from_dict(ModelSettings, run.config["settings"]["model"])
    untrained = build_classifier(settings, NetworkSpec.for_preprocessor(run.preprocessor), run.preprocessor)
    figures = sanity(untrained, region_data[0], region_data[1])
    assert not passes(figures), figures


@pytest.mark.slow  # moved out of the default suite's 10 minutes (docs/tests.md)
def test_cli_api_and_http_give_the_same_explanation(region_run, region_data, tmp_path, capsys):
    from fusionapp import predict
    from fusionapp.runs.load import load_run
    from fusionapp.serve.app import create_app

    table, rows = region_data
    row = next(r for r in rows if r["split"] == "test")
    image = os.path.join(os.path.dirname(table), row["image"])
    code, out, err = run_cli(capsys, "predict", region_run, "--image", image, "--text", row["text"],
                             "--tabular", f"weight={row['weight']}", "--explain", "--json")
    assert code == 0, err
    cli = json.loads(out)["explanation"]
    assert set(cli) == {"modalities", "text", "image", "tabular", "missing", "units"} and cli["missing"] == []
    assert set(cli["units"]) == {"modalities", "text", "image", "tabular"}
    assert cli["units"]["text"].startswith("logit units") and "probability" in cli["units"]["modalities"]
    assert set(cli["modalities"]) == {"image", "text", "tabular"} and list(cli["tabular"]) == ["weight"]
    assert 0 < len(cli["text"]) <= 10 and all(isinstance(w, str) and isinstance(v, float) for w, v in cli["text"])
    assert base64.b64decode(cli["image"]["heatmap"])[:8] == b"\x89PNG\r\n\x1a\n"
    api = predict(region_run, image=image, text=row["text"], tabular={"weight": row["weight"]}, explain=True)
    status, http = asgi_post_json(create_app(load_run(region_run)), "/predict?explain=1",
                                  {"image": base64.b64encode(open(image, "rb").read()).decode(), "text": row["text"],
                                   "tabular": {"weight": row["weight"]}})
    assert status == 200, http
    for other in (api["explanation"], http["explanation"]):
        assert other["image"]["heatmap"] == cli["image"]["heatmap"]
        assert [w for w, _ in other["text"]] == [w for w, _ in cli["text"]]
        np.testing.assert_allclose([v for _, v in other["text"]], [v for _, v in cli["text"]], atol=1e-6)
        np.testing.assert_allclose(list(other["modalities"].values()), list(cli["modalities"].values()), atol=1e-6)
    code, out, err = run_cli(capsys, "predict", region_run, "--image", image, "--text", row["text"], "--explain",
                             "--tabular", f"weight={row['weight']}")
    assert code == 0 and "blanking each input changes the explained class's probability by: image" in out
    assert "strongest words (logit units): " in out and "tabular columns (logit units): weight" in out
    status, refused = asgi_post_json(create_app(load_run(region_run)), "/predict?explain=maybe", {"text": "north"})
    assert status == 400 and "explain" in refused["error"]


def test_only_the_runs_modalities_are_explained(region_run, region_data, tmp_path):
    from fusionapp import predict, train

    table, rows = region_data
    text_only = train(table, str(tmp_path / "text"), epochs=1, modalities="text", verbose=0)
    answer = predict(text_only, text=rows[0]["text"], explain=True)
    assert set(answer["explanation"]) == {"modalities", "text", "missing", "units"}
    assert set(answer["explanation"]["modalities"]) == {"text"}


def test_explain_dir_writes_a_heatmap_per_row_and_the_contributions(region_run, region_data, tmp_path, capsys):
    table, rows = region_data
    code, _, err = run_cli(capsys, "predict", region_run, table, "--split", "test", "--out", tmp_path / "p.csv",
                           "--explain-dir", tmp_path / "why")
    assert code == 0, err
    test_ids = [r["id"] for r in rows if r["split"] == "test"]
    assert sorted(os.listdir(tmp_path / "why")) == sorted([f"{i}.png" for i in test_ids] + ["explanations.csv"])
    lines = read_csv(tmp_path / "why" / "explanations.csv")
    assert {line["kind"] for line in lines} == {"modality", "text", "tabular"}
    assert {line["id"] for line in lines} == set(test_ids)
    code, _, err = run_cli(capsys, "predict", region_run, table, "--explain")
    assert code == 2 and "--explain-dir" in err
    from fusionapp import predict
    from fusionapp.errors import FusionError

    with pytest.raises(FusionError, match="--explain-dir DIR explains a table"):
        predict(region_run, table, explain=True)
    with pytest.raises(FusionError, match="--explain-dir applies to a table"):
        predict(region_run, text="north", explain_dir=str(tmp_path / "x"))


def test_the_explainer_is_traced_once_per_model(region_run, region_data):
    """The explainer is built and traced once per model: a second explanation reuses it."""
    from fusionapp.runs.load import load_run
    from fusionapp.inference.explain import _explainer, explain_examples
    from fusionapp.settings import Columns
    from fusionapp.data.sources import load_examples

    run = load_run(region_run)
    examples = load_examples(region_data[0], Columns(tabular=("weight",)),
                             modalities=("image", "text", "tabular")).subset([0, 1])
    explain_examples(run.model, examples)
    assert _explainer(run.model) is _explainer(run.model)
    assert _explainer(run.model).experimental_get_tracing_count() == 1


# The browser (11 s); the page itself is the default suite's in tests/test_review.py.
@pytest.mark.slow
@needs_chromium
def test_the_page_shows_the_explanation(region_run, region_data, tmp_path):
    """In headless Chromium: a bar per modality, the deciding word highlighted towards the label,
    and the heat map over the picture, warm on the deciding (left) half, its opacity on a slider;
    screenshots of the picture with the heat map off and fully on must differ."""
    from PIL import Image

    table, rows = region_data
    row = next(r for r in rows if r["split"] == "test")
    direction = next(word for word in row["text"].split() if word in DIRECTIONS)
    with serving(region_run) as url, browser_page() as page:
        page.goto(url + "/")
        page.wait_for_selector("#tab-weight")
        page.set_input_files("#image", os.path.join(os.path.dirname(table), row["image"]))
        page.fill("#text", row["text"])
        page.fill("#tab-weight", row["weight"])
        page.click("#submit")
        page.wait_for_selector("#explanation")
        assert page.inner_text("#label") == row["label"]
        modalities = page.locator(".change")
        assert {modalities.nth(i).get_attribute("data-modality") for i in range(modalities.count())} == \
            {"image", "text", "tabular"}
        word = page.locator(f'#words .word:text-is("{direction}")')
        assert float(word.get_attribute("data-weight")) > 0
        page.locator("#overlay").scroll_into_view_if_needed()
        shots = {}
        for opacity, css in (("0", "0"), ("100", "1")):
            page.locator("#opacity").fill(opacity)
            assert page.eval_on_selector("#heatmap", "e => e.style.opacity") == css
            page.locator("#overlay").screenshot(path=str(tmp_path / f"overlay-{opacity}.png"))
            shots[opacity] = np.asarray(Image.open(tmp_path / f"overlay-{opacity}.png").convert("RGB")).astype(int)
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    change = np.abs(shots["100"] - shots["0"]).sum(axis=-1)
    half = change.shape[1] // 2
    assert change.mean() > 10, change.mean()
    assert change[:, :half].sum() > change[:, half:].sum()
    assert os.path.getsize(tmp_path / "page.png") > 10_000


def test_an_input_the_pair_lacks_gets_no_figure_and_is_named(trained_run, demo_dir):
    """An empty text, and an empty tabular cell beside a filled one, get no weights: they are named
    under `missing` instead."""
    from fusionapp import predict

    image = str(next((demo_dir / "images").iterdir()))
    answer = predict(trained_run, image=image, text="", tabular={"seller": "acme"}, explain=True)
    explanation = answer["explanation"]
    assert explanation["missing"] == ["text", "tabular:price"]
    assert "text" not in explanation and set(explanation["modalities"]) == {"image", "tabular"}
    assert list(explanation["tabular"]) == ["seller"]
    from fusionapp.inference.answers import format_pair

    assert "no figures for the missing inputs: text, tabular:price" in format_pair(answer)


@pytest.fixture(scope="module")
def text_decides_run(tmp_path_factory):
    """The region data relabelled by its word alone: the image is noise to this model."""
    from fusionapp import train

    folder = tmp_path_factory.mktemp("text-decides")
    table, rows = make_table(folder, 320, seed=5)
    for row in rows:
        row["label"] = row["label"].split("_")[1]
    write_csv(table, rows)
    out = tmp_path_factory.mktemp("runs") / "text-decides"
    run = train(table, str(out), epochs=6, tabular_col=("weight",), image_size=SIZE, image_filters=(16, 32),
                image_stem_filters=16, branch_units=32, fusion_units=32, verbose=0)
    return run, table


@pytest.mark.slow  # moved out of the default suite's 10 minutes (docs/tests.md)
def test_an_image_that_does_not_matter_gives_a_faint_heat_map(text_decides_run, region_run, region_data, tmp_path,
                                                             capsys):
    from conftest import heatmap_array
    from fusionapp.data.sources import load_examples
    from fusionapp.inference.explain import explain_examples
    from fusionapp.runs.load import load_run
    from fusionapp.settings import Columns

    def strengths(run_dir, table):
        examples = load_examples(table, Columns(tabular=("weight",))).select_split("test")
        explanations = explain_examples(load_run(run_dir).model, examples.subset(list(range(12))))
        peaks = [heatmap_array(e["image"]["heatmap"]).max() for e in explanations]
        return np.mean([e["image"]["strength"] for e in explanations]), np.mean(peaks)

    run, table = text_decides_run
    faint, faint_peak = strengths(run, table)
    strong, strong_peak = strengths(region_run, region_data[0])
    assert faint < 0.25 and faint_peak < 0.3, (faint, faint_peak)
    assert strong > 0.6 and strong_peak > 0.6, (strong, strong_peak)
    row = next(r for r in read_csv(table) if r["split"] == "test")
    image = os.path.join(os.path.dirname(table), row["image"])
    code, out, err = run_cli(capsys, "predict", run, "--image", image, "--text", row["text"], "--explain",
                             "--heatmap-out", tmp_path / "map.png")
    assert code == 0, err
    assert (tmp_path / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "image heat map: strength" in out
    code, _, err = run_cli(capsys, "predict", run, "--image", image, "--heatmap-out", tmp_path / "x.png")
    assert code == 2 and "--heatmap-out applies with --explain" in err
