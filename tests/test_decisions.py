"""What training does beyond fitting: per-class decision offsets and balanced class weights."""

import json
import os

import numpy as np
import pytest
from sklearn.metrics import f1_score

from conftest import TINY_MODEL, read_csv, write_csv
from fusionapp.decision import tune_offsets


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


@pytest.fixture(scope="module")
def skewed_table(demo_dir, tmp_path_factory):
    """The demo table with most rows of three classes dropped from training: one class dominates."""
    rows = read_csv(demo_dir / "demo.csv")
    kept = [row for i, row in enumerate(rows) if row["split"] != "train" or row["label"] == "round_used" or i % 4 == 0]
    for row in kept:
        row["image"] = str(demo_dir / row["image"])
    return write_csv(tmp_path_factory.mktemp("skewed") / "skewed.csv", kept)


def test_balanced_class_weights_change_the_loss(skewed_table, tmp_path):
    from fusionapp import train

    losses = {}
    for mode in ("none", "balanced"):
        run = train(skewed_table, str(tmp_path / mode), epochs=1, class_weight=mode, tune_decisions=False,
                    verbose=0, **TINY_MODEL)
        losses[mode] = float(read_csv(os.path.join(run, "history.csv"))[0]["loss"])
        config = json.load(open(os.path.join(run, "config.json")))
        assert config["settings"]["training"]["class_weight"] == mode
    # the same seed, data and model: only the weighting of each row's loss differs
    assert abs(losses["balanced"] - losses["none"]) > 1e-3, losses


def test_balanced_weights_are_scikit_learns():
    from sklearn.utils.class_weight import compute_class_weight

    from fusionapp.preprocessing import adapt
    from fusionapp.config import TextSettings
    from fusionapp.data.examples import Examples
    from fusionapp.fitting import class_weights as _class_weights

    labels = ["a"] * 8 + ["b"] * 2 + ["c"] * 5
    rows = Examples(source="t", row_numbers=np.arange(1, 16), ids=[""] * 15, images=None, images_are_files=True,
                    texts=[f"t{i}" for i in range(15)], tabular={}, labels=labels, splits=None)
    preprocessor = adapt(labels, rows.texts, {}, modalities=("text",), image_size=16,
                         text=TextSettings().resolved("bag"), text_encoder="bag", tabular_kinds={})
    weights = _class_weights(preprocessor, rows, "balanced")
    expected = compute_class_weight("balanced", classes=np.array(["a", "b", "c"]), y=labels)
    assert weights == pytest.approx(dict(enumerate(expected)))
    assert _class_weights(preprocessor, rows, "none") is None
