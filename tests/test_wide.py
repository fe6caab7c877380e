"""The wide path: a converged linear model on the TF-IDF text and tabular values, blended with the
network's logits; at alpha = 1 the model is exactly that linear model."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from sklearn.linear_model import LogisticRegression

from conftest import TINY_MODEL, read_csv, write_csv
from fusionapp.config import ModelSettings, TextSettings
from fusionapp.data.examples import Examples
from fusionapp.model import build_classifier
from fusionapp.preprocessing import adapt
from fusionapp.wide import fit_linear, wide_features

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


def model_for(examples):
    preprocessor = adapt(examples.labels, examples.texts, examples.tabular, modalities=("text", "tabular"),
                         image_size=16, text=TextSettings(tokens="words").resolved("bag"), text_encoder="bag",
                         tabular_kinds={"price": "numeric"})
    settings = ModelSettings(modalities=("text", "tabular"), branch_units=8, fusion_units=8)
    return build_classifier(settings, preprocessor.network_inputs(), preprocessor)


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


def test_at_alpha_one_the_model_is_the_linear_model():
    from fusionapp.inference import predict_examples

    examples = word_examples(80)
    model = model_for(examples)
    preprocessor = model.preprocessor
    features = wide_features(preprocessor, examples)
    # the wide path reads what the model's own layers read: TF-IDF vectors, then tabular encodings
    assert features.shape[1] == preprocessor.network_inputs()["text_width"] + 2
    labels = preprocessor.label_indices(examples.labels)
    kernel, bias = fit_linear(features, labels, preprocessor.num_classes, "none")
    model.get_layer("wide.logits").set_weights([kernel, bias])
    model.get_layer("head.blend").set_weights([np.float32(1.0)])
    reference = LogisticRegression(C=4.0, max_iter=1000).fit(features, labels)
    np.testing.assert_allclose(predict_examples(model, examples).probabilities, reference.predict_proba(features),
                               atol=1e-4)


def test_without_the_wide_path_there_is_no_wide_layer():
    examples = word_examples(8)
    model = model_for(examples)
    assert {"wide.logits", "head.blend"} <= {layer.name for layer in model.layers}
    preprocessor = model.preprocessor
    plain = build_classifier(ModelSettings(modalities=("text", "tabular"), wide=False),
                             preprocessor.network_inputs(), preprocessor)
    assert not {"wide.logits", "head.blend"} & {layer.name for layer in plain.layers}


def test_training_blends_in_the_linear_model_where_it_is_better(tmp_path):
    from fusionapp import train

    examples = word_examples(400, seed=3)
    splits = ["train", "train", "val", "test"]  # by blocks of four rows, so every split has every label
    rows = [{"text": text, "price": price, "label": label, "split": splits[(i // 4) % 4]}
            for i, (text, price, label) in enumerate(zip(examples.texts, examples.tabular["price"], examples.labels))]
    table = write_csv(tmp_path / "words.csv", rows)
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
