"""The network alone: blocks, branches, the logits head, save and reload."""

import dataclasses
import json

import keras
import numpy as np
import pytest

from fusionapp.settings import ModelSettings
from fusionapp.model import NetworkSpec, build_classifier, copy_weights
from fusionapp.model.backbones import build_backbone
from fusionapp.model.blocks import branch_filters, multi_kernel_block
from fusionapp.model.branches import image_branch, tabular_branch, text_branch
from fusionapp.preprocessing.configs import TextInput

# What a Preprocessor's network reads: token ids of 12 over 32 ids for the cnn / mean encoders.
SPEC = NetworkSpec(num_classes=3, image_size=16, text_input=TextInput.TOKEN_IDS, text_width=32, sequence_length=12,
                   tabular_width=5)


def settings(**overrides):
    return ModelSettings(**{"image_size": 16, "image_filters": (8, 16), "text_encoder": "cnn",
                            "modalities": ("image", "text", "tabular"), **overrides})


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


def test_reductions_put_a_1x1_convolution_before_each_larger_kernel():
    x = keras.Input((16, 16, 64))
    model = keras.Model(x, multi_kernel_block(x, 48, (1, 3, 5), name="block", reduction=0.5))
    convs = {layer.name: layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)}
    assert set(convs) == {"block.conv1x1", "block.conv3x3.reduce", "block.conv3x3", "block.conv5x5.reduce",
                          "block.conv5x5"}
    # each reduction has half its branch's 16 output channels, and the large kernel reads only those
    assert convs["block.conv5x5.reduce"].filters == 8 and convs["block.conv5x5"].input.shape[-1] == 8
    assert convs["block.conv1x1"].input.shape[-1] == 64
    assert model.output.shape == (None, 8, 8, 48)


def test_reductions_cut_the_image_branch_multiply_adds():
    def macs(reduction):
        model = build_classifier(settings(modalities=("image",), image_reduction=reduction,
                                          image_filters=(48, 96, 192), image_size=64),
                                 dataclasses.replace(SPEC, image_size=64))
        return sum(int(np.prod(layer.output.shape[1:-1])) * int(np.prod(layer.kernel_size))
                   * layer.input.shape[-1] * layer.filters
                   for layer in model.layers if isinstance(layer, keras.layers.Conv2D))

    assert macs(0.5) < 0.6 * macs(0.0)


@pytest.mark.parametrize("head", ["multi-kernel", "pool"])
def test_a_backbone_branch_takes_images_or_their_feature_maps(head):
    """The whole branch and the one trained on cached feature maps share every layer but the
    backbone, under the same names, and give branch_units features."""
    blocks = {"image_filters": (8, 16)} if head == "multi-kernel" else {}  # the pool head has no block
    s = ModelSettings(image_size=32, image_backbone="mobilenet_v3_small", backbone_head=head, branch_units=24, **blocks)
    backbone = build_backbone("mobilenet_v3_small", 32)
    whole = keras.Model(i := keras.Input((32, 32, 3), dtype="uint8"), image_branch(i, s, backbone)[0])
    on_features = keras.Model(f := keras.Input((1, 1, 576)), image_branch(f, s)[0])
    images = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    assert tuple(whole(images).shape) == (2, 24)
    assert tuple(on_features(np.ones((2, 1, 1, 576), "float32")).shape) == (2, 24)
    names = {layer.name for layer in whole.layers if layer.weights}
    assert names - {layer.name for layer in on_features.layers if layer.weights} == {backbone.name}
    concatenates = [layer for layer in whole.layers if isinstance(layer, keras.layers.Concatenate)]
    assert bool(concatenates) == (head == "multi-kernel")
    assert not backbone.trainable


def test_branch_filters_split_exactly():
    assert branch_filters(50, (1, 3, 5, 7)) == [13, 13, 12, 12]


def test_each_branch_gives_branch_units_features():
    s = ModelSettings(image_size=16, image_filters=(8, 16), branch_units=24)
    image = keras.Model(i := keras.Input((16, 16, 3), dtype="uint8"), image_branch(i, s)[0])
    assert tuple(image(inputs()["image"]).shape) == (2, 24)
    for encoder in ("cnn", "mean"):
        text_settings = ModelSettings(text_encoder=encoder, branch_units=24)
        text = keras.Model(t := keras.Input((12,), dtype="int64"), text_branch(t, text_settings, vocabulary_size=32))
        assert tuple(text(inputs()["text"]).shape) == (2, 24)
    bag = keras.Model(b := keras.Input((40,)), text_branch(b, ModelSettings(branch_units=24), vocabulary_size=40))
    assert tuple(bag(np.random.rand(2, 40).astype("float32")).shape) == (2, 24)
    tab = keras.Model(v := keras.Input((5,)), tabular_branch(v, s))
    assert tuple(tab(inputs()["tabular"]).shape) == (2, 24)


@pytest.mark.parametrize("modalities", [("image", "text", "tabular"), ("image",), ("text",), ("text", "tabular")])
def test_classifier_builds_any_subset_and_returns_one_logit_per_class(modalities):
    model = build_classifier(settings(modalities=modalities), SPEC)
    assert sorted(model.input) == sorted(modalities)
    logits = model.predict({m: inputs()[m] for m in modalities}, verbose=0)
    assert logits.shape == (2, 3)
    assert model.head.logits.activation.__name__ == "linear"


def test_two_classes_use_the_same_softmax_head():
    model = build_classifier(settings(), dataclasses.replace(SPEC, num_classes=2))
    assert model.head.logits.units == 2
    assert model.predict(inputs(), verbose=0).shape == (2, 2)


def test_class_prior_offsets_shift_the_logits():
    model = build_classifier(settings(), SPEC)
    batch = inputs(4, seed=5)
    before = model.predict(batch, verbose=0)
    model.set_offsets([0.0, 1.5, -2.0])
    np.testing.assert_allclose(model.predict(batch, verbose=0) - before, [[0.0, 1.5, -2.0]] * 4, atol=1e-5)


def test_save_and_reload_gives_equal_outputs(tmp_path):
    model = build_classifier(settings(), SPEC)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(inputs(8), np.array([0, 1, 2, 0, 1, 2, 0, 1]), epochs=1, verbose=0)  # move BN statistics
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    assert reloaded.spec == SPEC and reloaded.settings == model.settings
    assert reloaded.head.class_prior is not None and reloaded.head.thresholds is None
    batch = inputs(4, seed=3)
    np.testing.assert_allclose(reloaded.predict(batch, verbose=0), model.predict(batch, verbose=0), rtol=1e-5, atol=1e-6)


def test_mismatched_text_encoder_and_inputs_is_refused():
    from fusionapp.errors import FusionError

    with pytest.raises(FusionError, match="bag"):
        build_classifier(settings(text_encoder="bag"), SPEC)


def test_layer_names_say_what_they_compute():
    model = build_classifier(settings(), SPEC)
    names = {layer.name for layer in model.layers}
    assert {"image.block2.conv5x5", "image.block2.conv5x5.reduce", "image.stem.conv3x3", "text.conv3",
            "tabular.dense", "fusion.concat", "head.logits", "head.class_prior"} <= names


def test_the_spec_is_saved_as_the_plain_dict_earlier_versions_wrote_and_read_back_from_it():
    """model.keras keeps the spec under "inputs" as JSON: what a model of 0.10 holds is read back as
    the same spec, and written again as that dict (no unset field, no enum, no tuple)."""
    saved = {"num_classes": 3, "image_size": 16, "text_input": "token_ids", "text_width": 32, "sequence_length": 12,
             "tabular_width": 5, "image_features": [1, 1, 576], "fine_tune": 0}
    spec = NetworkSpec.from_config({**saved, "a_later_key": 1})
    assert spec == dataclasses.replace(SPEC, image_features=(1, 1, 576))
    assert spec.text_input is TextInput.TOKEN_IDS
    written = spec.get_config()
    assert written == {key: value for key, value in saved.items() if key != "fine_tune"}
    assert json.loads(json.dumps(written)) == written


def test_weights_copy_between_a_whole_network_and_one_that_reads_cached_features():
    """A network that reads a backbone's feature maps takes every weight of the whole one but the
    backbone's, which stays its own; a network of another spec is refused."""
    s = settings(image_size=32, image_backbone="mobilenet_v3_small", image_filters=(48, 96, 192))
    spec = dataclasses.replace(SPEC, image_size=32)
    whole = build_classifier(s, spec)
    reader = build_classifier(s, dataclasses.replace(spec, image_features=(1, 1, 576)))
    assert whole.backbones.image is not None and reader.backbones.image is None
    copy_weights(whole, reader)
    batch = {**inputs(2, size=32, seed=1), "image": np.random.default_rng(2).integers(0, 255, (2, 32, 32, 3))}
    features = whole.backbones.image(batch["image"].astype("float32"))  # this backbone rescales by itself
    np.testing.assert_allclose(reader.predict({**batch, "image": np.asarray(features)}, verbose=0),
                               whole.predict(batch, verbose=0), rtol=1e-4, atol=1e-5)
    with pytest.raises(RuntimeError, match="not networks of one spec"):
        copy_weights(whole, build_classifier(settings(), SPEC))
