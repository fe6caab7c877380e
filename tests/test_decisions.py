"""What training does beyond fitting: per-class decision offsets and balanced class weights."""

import numpy as np
import pytest
from sklearn.metrics import f1_score

from fusionapp.posthoc.decisions import tune_offsets


def skewed_logits(seed: int, rows: int = 600):
    """Three classes, the last one rare (6 %), with a model that under-scores it."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=rows, p=[0.64, 0.30, 0.06])
    logits = rng.normal(size=(rows, 3)) + 2.0 * np.eye(3)[y]
    logits[:, 2] -= 2.5
    return y, logits


def macro_f1(y, logits):
    return f1_score(y, logits.argmax(axis=1), average="macro", labels=[0, 1, 2], zero_division=0)


def test_offsets_raise_macro_f1_on_a_skewed_set_and_on_rows_they_were_not_tuned_on():
    y, logits = skewed_logits(0)
    offsets = tune_offsets(y, logits)
    assert offsets[0] == 0 and offsets[2] > 1.0  # the rare, under-scored class is moved up
    assert macro_f1(y, logits + offsets) > macro_f1(y, logits) + 0.05
    held_out_y, held_out_logits = skewed_logits(1)
    assert macro_f1(held_out_y, held_out_logits + offsets) > macro_f1(held_out_y, held_out_logits) + 0.05


def test_offsets_stay_zero_when_nothing_improves():
    y = np.array([0, 1, 2] * 20)
    np.testing.assert_array_equal(tune_offsets(y, 5.0 * np.eye(3)[y]), [0, 0, 0])


def test_balanced_class_weights_weigh_each_rows_loss_by_its_class():
    """The first step's loss of a fit with `--class-weight balanced` is the mean over rows of each
    row's cross-entropy times n / (classes x rows of its class), computed here by hand."""
    import keras

    from fusionapp.data.examples import Examples
    from fusionapp.model import NetworkSpec, build_classifier
    from fusionapp.preprocessing import adapt
    from fusionapp.settings import ModelSettings, TextSettings
    from fusionapp.training.loss import class_weights, training_loss

    labels = ["a"] * 12 + ["b"] * 3 + ["c"] * 5
    rng = np.random.default_rng(0)
    cells = [f"{value:.3f}" for value in rng.normal(size=len(labels))]
    rows = Examples(source="t", row_numbers=np.arange(1, 21), ids=[""] * 20, images=None, images_are_files=True,
                    texts=None, tabular={"x": cells}, labels=labels, splits=None)
    preprocessor = adapt(labels, None, rows.tabular, modalities=("tabular",), image_size=16, text=TextSettings(),
                         text_encoder="bag", tabular_kinds={"x": "numeric"})
    keras.utils.set_random_seed(0)
    # No dropout and no batch norm in this model: its logits are the same in training and inference.
    model = build_classifier(ModelSettings(modalities=("tabular",), dropout=0.0, tabular_units=8, branch_units=8,
                                           fusion_units=8), NetworkSpec.for_preprocessor(preprocessor), preprocessor)
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss=training_loss(preprocessor, rows, "balanced"))
    import tensorflow as tf

    x = {"tabular": preprocessor.encode_tabular({"tabular_x": tf.constant(np.array(cells, np.float32))}).numpy()}
    y = preprocessor.label_indices(labels)
    logits = np.asarray(model(x), np.float64)
    cross_entropy = -(logits[np.arange(20), y] - np.log(np.exp(logits).sum(axis=1)))
    by_hand = {0: 20 / (3 * 12), 1: 20 / (3 * 3), 2: 20 / (3 * 5)}
    weights = class_weights(preprocessor, rows, "balanced")
    assert weights == pytest.approx(by_hand)
    history = model.fit(x, y, batch_size=20, epochs=1, class_weight=weights, shuffle=False, verbose=0).history
    expected = np.mean([by_hand[label] * loss for label, loss in zip(y, cross_entropy)])
    assert history["loss"][0] == pytest.approx(expected, rel=1e-5)
    assert abs(expected - cross_entropy.mean()) > 0.01  # the weights make a difference here
    assert class_weights(preprocessor, rows, "none") is None


def test_offsets_are_tuned_by_default_only_without_class_weights():
    """Balanced class weights already move decisions towards rare classes; by default offsets are
    tuned only without them, multi-label thresholds always; an explicit choice is kept."""
    from fusionapp.settings import TrainingSettings

    default = TrainingSettings()
    assert default.tune_decisions is None and not default.tunes_offsets and default.tunes_thresholds
    assert TrainingSettings(class_weight="none").tunes_offsets
    assert TrainingSettings(tune_decisions=True).tunes_offsets
    off = TrainingSettings(tune_decisions=False, class_weight="none")
    assert not off.tunes_offsets and not off.tunes_thresholds


def test_a_default_run_keeps_zero_offsets_and_one_without_class_weights_tunes_them(trained_run, demo_table,
                                                                                   tmp_path):
    import json
    import os

    from conftest import TINY_MODEL
    from fusionapp import train
    from fusionapp.runs.load import load_run

    config = json.load(open(os.path.join(trained_run, "config.json")))
    assert "class_offsets" not in config and config["settings"]["training"]["tune_decisions"] is None
    assert not load_run(trained_run).model.head.class_prior.get_weights()[0].any()
    from fusionapp.settings import applicable

    run = train(demo_table, str(tmp_path / "run"), epochs=1, class_weight="none", verbose=0,
                **applicable({**TINY_MODEL, "wide": False, "calibrate": False, "modalities": ("text",)}))
    assert "class_offsets" in json.load(open(os.path.join(run, "config.json")))
