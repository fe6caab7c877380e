"""The demo is built so that only a model fusing image and text can solve it: check that it does."""

import json
import os

import pytest

from conftest import TINY_MODEL, TINY_TEXT
from fusionapp.settings import applicable


@pytest.mark.slow  # three trainings; the suite's other runs hold the fused model's training
def test_fused_model_beats_each_single_modality(tmp_path):
    from fusionapp import make_demo, train

    table = make_demo(str(tmp_path / "demo"), rows=1500, seed=0)
    # The convolutional text encoder: with this tiny budget the default TF-IDF bag learns the text so
    # fast that the image branch gets little signal (the full default demo run still reaches ~97%).
    settings = {**TINY_MODEL, **TINY_TEXT, "image_filters": (24, 48, 96), "epochs": 10, "patience": 10,
                "learning_rate": 0.004, "seed": 0, "text_encoder": "cnn"}
    accuracy = {}
    for modalities in (("image", "text"), ("image",), ("text",)):
        # each model takes the settings of the inputs it reads
        run = train(table, str(tmp_path / "_".join(modalities)), verbose=0,
                    **applicable({**settings, "modalities": modalities}))
        accuracy[modalities] = json.load(open(os.path.join(run, "test_metrics.json")))["accuracy"]
    fused, image_only, text_only = accuracy.values()
    # Either modality alone can at best tell 2 of the 4 classes apart (about 50%).
    assert image_only < 0.62 and text_only < 0.62, accuracy
    assert fused > max(image_only, text_only) + 0.2, accuracy
