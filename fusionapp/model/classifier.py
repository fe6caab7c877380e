"""The fusion classifier: branch features concatenated, dense layers, class probabilities."""

from __future__ import annotations

import keras
from keras import layers

from fusionapp.config import MODALITIES, ModelSettings, settings_from_dict
from fusionapp.errors import FusionError
from fusionapp.model.blocks import ClassPrior, TwoClassProbabilities
from fusionapp.model.branches import image_branch, tabular_branch, text_branch
from fusionapp.preprocessing import Preprocessing


@keras.saving.register_keras_serializable(package="fusionapp")
class FusionClassifier(keras.Model):
    """A functional model rebuilt from its settings, so `model.keras` reloads exactly.

    `preprocessing` is the adapted state (vocabulary, statistics, class names); it does not shape
    the graph beyond its sizes, but travelling in the config makes the saved file self-sufficient.
    """

    def __init__(self, settings: dict, preprocessing: dict, **kwargs):
        model_settings = settings_from_dict(ModelSettings, settings)
        # === Layers and functional model ===
        inputs, features = {}, []
        modalities = [m for m in MODALITIES if m in model_settings.modalities]
        if not modalities:
            raise FusionError("--modalities must name at least one of: image, text, tabular")
        prep = Preprocessing.from_dict(preprocessing)
        num_classes = prep.num_classes
        if "image" in modalities:
            size = model_settings.image_size
            inputs["image"] = keras.Input((size, size, 3), dtype="uint8", name="image")
            features.append(image_branch(inputs["image"], model_settings))
        if "text" in modalities:
            bag = model_settings.text_encoder == "bag"
            if bag != (prep.text_mode in ("counts", "tf_idf")):
                raise FusionError("the bag text encoder needs n-gram counts (text_mode counts), "
                                  "and the cnn/mean encoders need token ids")
            if bag:
                # one column per vocabulary entry, plus the out-of-vocabulary slot
                inputs["text"] = keras.Input((len(prep.vocabulary) + 1,), dtype="float32", name="text")
            else:
                inputs["text"] = keras.Input((prep.sequence_length,), dtype="int64", name="text")
            idf = prep.count_idf_weights if prep.text_mode == "counts" else None
            features.append(text_branch(inputs["text"], model_settings, prep.vocabulary_size, idf))
        if "tabular" in modalities:
            inputs["tabular"] = keras.Input((prep.tabular_width,), dtype="float32", name="tabular")
            features.append(tabular_branch(inputs["tabular"], model_settings))
        x = layers.Concatenate(name="fusion.concat")(features) if len(features) > 1 else features[0]
        x = layers.Dense(model_settings.fusion_units, activation="relu", name="fusion.dense")(x)
        x = layers.Dropout(model_settings.dropout, name="fusion.dropout")(x)
        if num_classes == 2:
            positive = layers.Dense(1, activation="sigmoid", name="head.sigmoid", dtype="float32")(x)
            probabilities = TwoClassProbabilities(name="head.probabilities", dtype="float32")(positive)
        else:
            probabilities = layers.Dense(num_classes, activation="softmax", name="head.probabilities",
                                         dtype="float32")(x)
        outputs = ClassPrior(num_classes, name="head.class_prior", dtype="float32")(probabilities)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.settings = dict(settings)
        self.preprocessing = dict(preprocessing)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "settings": self.settings, "preprocessing": self.preprocessing}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def build_classifier(settings: ModelSettings, preprocessing: dict, name: str = "fusion_classifier"):
    from dataclasses import asdict

    return FusionClassifier(asdict(settings), preprocessing, name=name)
