"""TFDS sources: a small builder defined here, its data faked by tfds.testing.mock_data."""

import json
import os

import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from conftest import TINY_MODEL  # noqa: E402


class TinyCaptionedPhotos(tfds.core.GeneratorBasedBuilder):
    """Image + caption + class label, as many TFDS vision-language sets are shaped."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "photo": tfds.features.Image(shape=(None, None, 3)),
            "caption": tfds.features.Text(),
            "label": tfds.features.ClassLabel(names=["cat", "dog", "bird"]),
        }))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(), "test": self._generate_examples()}

    def _generate_examples(self):
        raise NotImplementedError("only used under tfds.testing.mock_data")


@pytest.mark.slow  # moved out of the default suite's 10 minutes (docs/tests.md)
@pytest.mark.integration
def test_train_evaluate_on_a_tfds_source(tmp_path):
    from fusionapp import evaluate, train

    with tfds.testing.mock_data(num_examples=48):
        # Under mock_data the builder knows no split names, so the split is named explicitly.
        run = train("tfds:tiny_captioned_photos:train", str(tmp_path / "run"), image_col="photo", text_col="caption",
                    epochs=1, verbose=0, **TINY_MODEL)
        report = evaluate(run, "tfds:tiny_captioned_photos:test", verbose=0)
    config = json.load(open(os.path.join(run, "config.json")))
    assert config["class_names"] == ["bird", "cat", "dog"]
    assert config["data"] == "tfds:tiny_captioned_photos:train"
    assert config["n_train"] + config["n_val"] == 48 and config["n_val"] > 0  # stratified hold-out
    assert report["n_examples"] == 48


def test_tfds_missing_feature_is_a_user_error(tmp_path):
    from fusionapp import train
    from fusionapp.errors import FusionError

    with tfds.testing.mock_data(num_examples=8):
        with pytest.raises(FusionError, match="no feature 'picture'.*photo"):
            train("tfds:tiny_captioned_photos:train", str(tmp_path / "run"), text_col="caption", image_col="picture",
                  epochs=1, verbose=0)
        with pytest.raises(FusionError, match="cannot load the TFDS data set"):
            train("tfds:no_such_data_set_here", str(tmp_path / "run2"), epochs=1, verbose=0)
