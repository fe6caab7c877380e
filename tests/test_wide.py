"""The wide path: a converged linear model on the TF-IDF text and tabular values, blended with the
network's logits; at alpha = 1 the model is exactly that linear model."""

import dataclasses
import json
import os

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from conftest import TINY_MODEL, read_csv, run_cli, write_csv
from fusionapp.config import ModelSettings, TextSettings
from fusionapp.data.examples import Examples
from fusionapp.inference import predict_examples
from fusionapp.model import build_classifier
from fusionapp.preprocessing import adapt
from fusionapp.wide import WidePath, fit_linear, wide_features, wide_sources

WORDS = ["apple", "river", "stone", "cloud"]


def word_examples(count, seed=0, noise_words=("the", "a", "my", "big", "old")):
    """Texts whose label is the one topic word in them; tabular noise beside it."""
    rng = np.random.default_rng(seed)
    labels = [WORDS[i % len(WORDS)] for i in range(count)]
    texts = [" ".join([*rng.choice(noise_words, 3), label, *rng.choice(noise_words, 2)]) for label in labels]
    price = [f"{rng.normal(50, 10):.2f}" for _ in range(count)]
    return Examples(source="words", row_numbers=np.arange(1, count + 1), ids=[str(i) for i in range(count)],
                    images=None, images_are_files=True, texts=texts, tabular={"price": price}, labels=labels,
                    splits=None)


def model_for(examples, text_encoder="bag", modalities=("text", "tabular")):
    preprocessor = adapt(examples.labels, examples.texts, examples.tabular, modalities=modalities,
                         image_size=16, text=TextSettings(tokens="words").resolved(text_encoder),
                         text_encoder=text_encoder, tabular_kinds={"price": "numeric"})
    settings = ModelSettings(modalities=modalities, text_encoder=text_encoder, branch_units=8, fusion_units=8)
    return build_classifier(settings, preprocessor.network_inputs(), preprocessor)


def with_texts(examples, texts):
    return dataclasses.replace(examples, texts=list(texts))


@pytest.mark.parametrize("classes", [2, 4])
def test_fitted_linear_layer_gives_scikit_learns_probabilities(classes):
    rng = np.random.default_rng(classes)
    features = rng.normal(size=(120, 6))
    labels = rng.integers(0, classes, 120)
    kernel, bias = fit_linear(features, labels, classes, "balanced")
    reference = LogisticRegression(C=4.0, class_weight="balanced", max_iter=1000).fit(features, labels)
    logits = features @ kernel + bias
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probabilities, reference.predict_proba(features), atol=1e-5)


def test_a_class_absent_from_the_rows_stays_unlikely_and_the_others_match_scikit_learn():
    rng = np.random.default_rng(7)
    features = rng.normal(size=(100, 5))
    labels = np.where(features[:, 0] > 0, 2, 0)  # classes 0 and 2 of three
    kernel, bias = fit_linear(features, labels, 3, "none")
    logits = features @ kernel + bias
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    reference = LogisticRegression(C=4.0, max_iter=1000).fit(features, labels).predict_proba(features)
    np.testing.assert_allclose(probabilities[:, [0, 2]], reference, atol=1e-5)
    assert probabilities[:, 1].max() < 1e-6


def test_at_alpha_one_the_model_is_the_linear_model():
    examples = word_examples(80)
    model = model_for(examples)
    preprocessor = model.preprocessor
    features, _ = wide_features(preprocessor, examples)
    # the wide path reads what the model's own layers read: TF-IDF vectors, then tabular encodings
    assert features.shape[1] == preprocessor.network_inputs()["text_width"] + 2
    labels = preprocessor.label_indices(examples.labels)
    kernel, bias = fit_linear(features, labels, preprocessor.num_classes, "none")
    model.get_layer("wide.logits").set_weights([kernel, bias])
    model.get_layer("head.blend").set_weights([np.float32(1.0)])
    reference = LogisticRegression(C=4.0, max_iter=1000).fit(features, labels)
    np.testing.assert_allclose(predict_examples(model, examples).probabilities, reference.predict_proba(features),
                               atol=1e-4)


def test_rows_without_text_keep_the_networks_logits():
    """The linear model never saw a row without text (the network did, through modality dropout),
    so there the blend keeps the deep logits, whatever alpha."""
    examples = word_examples(80)
    model = model_for(examples)
    features, present = wide_features(model.preprocessor, examples)
    assert present.all()
    kernel, bias = fit_linear(features, model.preprocessor.label_indices(examples.labels), 4, "none")
    model.get_layer("wide.logits").set_weights([kernel, bias])
    blank = with_texts(examples, ["", "   "] * 40)
    assert not wide_features(model.preprocessor, blank)[1].any()
    deep = predict_examples(model, blank).logits
    with_text = predict_examples(model, examples).logits
    model.get_layer("head.blend").set_weights([np.float32(1.0)])
    np.testing.assert_allclose(predict_examples(model, blank).logits, deep, atol=1e-6)
    assert np.abs(predict_examples(model, examples).logits - with_text).max() > 1.0  # where text is, it blends


def test_the_fitted_blend_is_what_the_model_computes():
    """WidePath chooses alpha (and the decision offsets are tuned) on NumPy blends of the validation
    logits; they must be the saved layers' own answer, rows without text included."""
    examples = word_examples(160, seed=1)
    model = model_for(examples)
    train_rows, val_rows = examples.subset(range(120)), examples.subset(range(120, 160))
    val_rows = with_texts(val_rows, [text if i % 3 else "" for i, text in enumerate(val_rows.texts)])
    wide = WidePath(model, train_rows, val_rows, "balanced")
    chosen = wide.fit()
    assert 0.0 < chosen["alpha"] and chosen["val_log_loss"]["blend"] <= chosen["val_log_loss"]["deep"]
    np.testing.assert_allclose(wide.val_logits, predict_examples(model, val_rows).logits, atol=1e-4)
    before = model.get_layer("wide.logits").get_weights()[0].copy()
    wide.refit()
    assert not np.allclose(model.get_layer("wide.logits").get_weights()[0], before)  # it saw 40 more rows


def test_the_wide_path_reads_what_it_can_use_as_it_is():
    examples = word_examples(8)
    cnn = model_for(examples, text_encoder="cnn")  # token ids are no linear features: tabular only
    assert cnn.get_layer("wide.logits").input.shape[-1] == 2
    assert wide_sources(cnn.preprocessor) == ["tabular values"]
    features, present = wide_features(cnn.preprocessor, examples)
    assert features.shape == (8, 2) and present.all()  # every row blends: no text in the wide path
    assert wide_sources(model_for(examples).preprocessor) == ["TF-IDF text", "tabular values"]
    names = {layer.name for layer in model_for(examples, text_encoder="cnn", modalities=("text",)).layers}
    assert not {"wide.logits", "head.blend"} & names


def test_without_the_wide_path_there_is_no_wide_layer():
    examples = word_examples(8)
    model = model_for(examples)
    assert {"wide.logits", "head.blend"} <= {layer.name for layer in model.layers}
    preprocessor = model.preprocessor
    plain = build_classifier(ModelSettings(modalities=("text", "tabular"), wide=False),
                             preprocessor.network_inputs(), preprocessor)
    assert not {"wide.logits", "head.blend"} & {layer.name for layer in plain.layers}


def word_table(path, count, seed):
    examples = word_examples(count, seed=seed)
    splits = ["train", "train", "val", "test"]  # by blocks of four rows, so every split has every label
    rows = [{"text": text, "price": price, "label": label, "split": splits[(i // 4) % 4]}
            for i, (text, price, label) in enumerate(zip(examples.texts, examples.tabular["price"], examples.labels))]
    return write_csv(path, rows)


def test_no_wide_trains_the_network_alone(tmp_path, capsys):
    table = word_table(tmp_path / "words.csv", 80, seed=2)
    code, out, err = run_cli(capsys, "train", table, "--out", tmp_path / "run", "--epochs", 1, "--no-wide")
    assert code == 0, err
    config = json.load(open(tmp_path / "run" / "config.json"))
    assert config["settings"]["model"]["wide"] is False and "wide" not in config and "Wide path" not in out
    from fusionapp.artifacts import load_run

    assert not {"wide.logits", "head.blend"} & {layer.name for layer in load_run(str(tmp_path / "run")).model.layers}


def test_training_blends_in_the_linear_model_where_it_is_better(tmp_path):
    from fusionapp import train

    table = word_table(tmp_path / "words.csv", 400, seed=3)
    # One short epoch leaves the network far from solving it; the linear model solves it outright.
    run = train(table, str(tmp_path / "run"), epochs=1, learning_rate=1e-4, tabular_col=["price"], verbose=0,
                **{k: v for k, v in TINY_MODEL.items() if not k.startswith("image")})
    config = json.load(open(os.path.join(run, "config.json")))
    wide = config["wide"]
    assert wide["alpha"] >= 0.5
    assert wide["val_log_loss"]["blend"] < wide["val_log_loss"]["deep"] - 0.1
    assert json.load(open(os.path.join(run, "test_metrics.json")))["accuracy"] > 0.95
    history = read_csv(os.path.join(run, "history.csv"))
    assert float(history[0]["val_accuracy"]) < 0.9  # the network alone had not got there
    # the saved model carries the refitted linear part and alpha, and scores as test_metrics.json says
    from fusionapp.artifacts import load_run
    from fusionapp.evaluation import evaluate

    model = load_run(run).model
    assert float(model.get_layer("head.blend").get_weights()[0]) == pytest.approx(wide["alpha"])
    assert np.abs(model.get_layer("wide.logits").get_weights()[0]).max() > 0.1
    report = evaluate(run, table, split="test", verbose=0)
    assert report == json.load(open(os.path.join(run, "test_metrics.json")))


def test_a_model_saved_before_the_wide_path_loads_without_one(tmp_path):
    """fusionapp 0.3.0 saved no `wide` setting: its models must load as they were, with no wide layers."""
    import zipfile

    import keras

    import fusionapp.preprocessing  # noqa: F401  (registers the classes model.keras holds)

    examples = word_examples(40)
    preprocessor = model_for(examples).preprocessor
    model = build_classifier(ModelSettings(modalities=("text", "tabular"), branch_units=8, fusion_units=8,
                                           wide=False), preprocessor.network_inputs(), preprocessor)
    path, old = str(tmp_path / "model.keras"), str(tmp_path / "old.keras")
    model.save(path)
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(old, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                del config["config"]["settings"]["wide"]
                data = json.dumps(config).encode()
            target.writestr(item, data)
    loaded = keras.saving.load_model(old, safe_mode=True)
    assert not {"wide.logits", "head.blend"} & {layer.name for layer in loaded.layers}
    np.testing.assert_allclose(predict_examples(loaded, examples).probabilities,
                               predict_examples(model, examples).probabilities, atol=1e-6)
