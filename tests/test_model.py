import keras
import numpy as np
import pytest

from fusionapp.config import ModelSettings
from fusionapp.model import build_classifier
from fusionapp.model.blocks import branch_filters, multi_kernel_block
from fusionapp.model.branches import image_branch, tabular_branch, text_branch

PREP = {"class_names": ["a", "b", "c"], "image_size": 16, "vocabulary": [f"w{i}" for i in range(30)], "sequence_length": 12,
        "tabular": [{"name": "price", "kind": "numeric"}, {"name": "shop", "kind": "categorical",
                                                           "categories": ["x", "y"]}]}


def settings(**overrides):
    """Small model settings; the text encoder reads the token ids PREP describes."""
    return ModelSettings(**{"image_size": 16, "image_filters": (8, 16), "text_encoder": "cnn", **overrides})


def inputs(batch=2, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.integers(0, 256, (batch, size, size, 3)).astype("uint8"),
            "text": rng.integers(0, 32, (batch, 12)).astype("int64"),
            "tabular": rng.normal(size=(batch, 5)).astype("float32")}


@pytest.mark.parametrize("kernels,filters", [((1, 3, 5), 48), ((1, 3, 5, 7), 50), ((3,), 8)])
def test_multi_kernel_block_shape_and_channels(kernels, filters):
    x = keras.Input((16, 16, 8))
    y = multi_kernel_block(x, filters, kernels, name="block")
    model = keras.Model(x, y)
    assert model.output.shape == (None, 8, 8, filters)
    out = model(np.ones((2, 16, 16, 8), "float32"))
    assert tuple(out.shape) == (2, 8, 8, filters)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert sorted(layer.kernel_size[0] for layer in convs) == sorted(kernels)
    assert sum(layer.filters for layer in convs) == filters
    assert [layer.name for layer in convs] == [f"block.conv{k}x{k}" for k in kernels]


def test_branch_filters_split_exactly():
    assert branch_filters(50, (1, 3, 5, 7)) == [13, 13, 12, 12]


def test_each_branch_gives_branch_units_features():
    settings = ModelSettings(image_size=16, image_filters=(8, 16), branch_units=24)
    image = keras.Model(i := keras.Input((16, 16, 3), dtype="uint8"), image_branch(i, settings))
    assert tuple(image(inputs()["image"]).shape) == (2, 24)
    for encoder in ("cnn", "mean"):
        s = ModelSettings(text_encoder=encoder, branch_units=24)
        text = keras.Model(t := keras.Input((12,), dtype="int64"), text_branch(t, s, vocabulary_size=32))
        assert tuple(text(inputs()["text"]).shape) == (2, 24)
    tab = keras.Model(v := keras.Input((5,)), tabular_branch(v, settings))
    assert tuple(tab(inputs()["tabular"]).shape) == (2, 24)


@pytest.mark.parametrize("modalities", [("image", "text", "tabular"), ("image",), ("text",), ("text", "tabular")])
def test_classifier_builds_any_subset(modalities):
    model = build_classifier(settings(modalities=modalities), PREP)
    assert sorted(model.input) == sorted(modalities)
    probabilities = model.predict({m: inputs()[m] for m in modalities}, verbose=0)
    assert probabilities.shape == (2, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_two_classes_use_a_sigmoid_but_return_two_columns():
    model = build_classifier(settings(), {**PREP, "class_names": ["n", "p"]})
    assert model.get_layer("head.sigmoid").units == 1
    probabilities = model.predict(inputs(), verbose=0)
    assert probabilities.shape == (2, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)


def test_save_and_reload_gives_equal_outputs(tmp_path):
    model = build_classifier(settings(), PREP)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(inputs(8), np.array([0, 1, 2, 0, 1, 2, 0, 1]), epochs=1, verbose=0)  # move BN statistics
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    assert reloaded.preprocessing == PREP
    batch = inputs(4, seed=3)
    np.testing.assert_allclose(reloaded.predict(batch, verbose=0), model.predict(batch, verbose=0), rtol=1e-5, atol=1e-6)


def test_bag_text_encoder_reads_n_gram_counts():
    prep = {**PREP, "text_mode": "counts", "vocabulary": [f"w{i}" for i in range(9)],
            "idf_weights": [1.0 + i / 10 for i in range(9)]}
    model = build_classifier(settings(text_encoder="bag", modalities=("text",)), prep)
    assert model.input["text"].shape == (None, 10)  # 9 n-grams + the out-of-vocabulary slot
    idf = model.get_layer("text.sublinear_tf_idf").get_weights()[0]
    np.testing.assert_allclose(idf, [1.4] + prep["idf_weights"], rtol=1e-6)  # out-of-vocabulary: the mean
    assert model.predict({"text": np.random.rand(3, 10).astype("float32")}, verbose=0).shape == (3, 3)


def test_runs_saved_with_tf_idf_inputs_still_build_without_the_count_weighting():
    prep = {**PREP, "text_mode": "tf_idf", "vocabulary": [f"w{i}" for i in range(9)]}
    model = build_classifier(settings(text_encoder="bag", modalities=("text",)), prep)
    assert "text.sublinear_tf_idf" not in {layer.name for layer in model.layers}
    assert model.predict({"text": np.random.rand(3, 10).astype("float32")}, verbose=0).shape == (3, 3)


def test_sublinear_tf_idf_is_log_counts_times_idf_at_unit_length():
    from fusionapp.model.blocks import SublinearTfIdf

    idf = np.array([1.0, 2.0, 0.5, 3.0], dtype="float32")
    counts = np.array([[0, 1, 4, 2], [3, 0, 0, 0], [0, 0, 0, 0]], dtype="float32")
    weighted = np.log1p(counts) * idf
    expected = weighted / np.maximum(np.linalg.norm(weighted, axis=1, keepdims=True), 1e-6)
    out = np.asarray(SublinearTfIdf(4, idf)(counts))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(out[:2], axis=1), 1.0, rtol=1e-5)
    assert not out[2].any()  # an empty text stays all zeros: "missing", not a unit vector


def test_mismatched_text_encoder_and_preprocessing_is_refused():
    from fusionapp.errors import FusionError

    with pytest.raises(FusionError, match="bag"):
        build_classifier(settings(text_encoder="bag"), PREP)


def test_layer_names_say_what_they_compute():
    model = build_classifier(settings(), PREP)
    names = {layer.name for layer in model.layers}
    assert {"image.block2.conv5x5", "image.stem.conv3x3", "text.conv3", "tabular.dense", "fusion.concat"} <= names
