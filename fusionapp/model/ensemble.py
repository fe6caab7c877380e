"""An ensemble of fusion classifiers as one model: what a search (`train --time-limit`) saves.

Each member reads the raw inputs through its own preprocessor (members may differ in image size,
text encoder or backbone); their probabilities are averaged with the weights greedy ensemble
selection gave them; the average is turned back into logits (log-probabilities, or log-odds per
label) and divided by one temperature fitted after the selection. So `probabilities(logits)` is the
calibrated ensemble, and predict, evaluate, the server and the SavedModel take it as they take one
classifier's.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from fusionapp.model.head import Temperature, Thresholds, probabilities

# Probabilities are clipped this far from 0 and 1 before their logarithm.
EPSILON = 1e-7


@keras.saving.register_keras_serializable(package="fusionapp")
class FusionEnsemble(keras.Model):
    """`members`: FusionClassifiers, each with its preprocessor; `weights`: their shares, summing to 1."""

    def __init__(self, members, weights, **kwargs):
        super().__init__(**kwargs)
        self.members = list(members)
        self.member_weights = [float(weight) for weight in weights]
        multi_label = self.members[0].multi_label
        self.temperature_layer = Temperature(name="temperature", dtype="float32")
        self.temperature_layer.build((None, self.members[0].preprocessor.num_classes))
        self.thresholds_layer = None
        if multi_label:
            self.thresholds_layer = Thresholds(name="thresholds", dtype="float32")
            self.thresholds_layer.build((None, self.members[0].preprocessor.num_classes))
        self.preprocessor = EnsembleInputs(self.members)

    def call(self, inputs, training=False):
        mixed = None
        for member, weight, member_inputs in zip(self.members, self.member_weights, inputs):
            share = weight * probabilities(ops.cast(member(dict(member_inputs), training=False), "float32"),
                                           self.multi_label)
            mixed = share if mixed is None else mixed + share
        mixed = ops.clip(mixed, EPSILON, 1.0 - EPSILON)
        logits = ops.log(mixed) - ops.log(1.0 - mixed) if self.multi_label else ops.log(mixed)
        return self.temperature_layer(logits)

    def get_config(self):
        return {"name": self.name, "members": [keras.saving.serialize_keras_object(member) for member in self.members],
                "weights": self.member_weights}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        members = [keras.saving.deserialize_keras_object(member) for member in config.pop("members")]
        return cls(members, config.pop("weights"), **config)

    # === What a FusionClassifier answers too ===
    @property
    def multi_label(self) -> bool:
        return self.members[0].multi_label

    @property
    def spec(self):
        """The first (heaviest) member's spec: what the ensemble's inputs are sized by."""
        return self.members[0].spec

    def set_temperature(self, temperature: float) -> None:
        self.temperature_layer.set_weights([np.asarray(temperature, np.float32)])

    def set_thresholds(self, thresholds) -> None:
        self.thresholds_layer.set_weights([np.asarray(thresholds, np.float32)])

    @property
    def threshold_variable(self):
        return self.thresholds_layer.thresholds

    @property
    def thresholds(self) -> np.ndarray | None:
        if not self.multi_label:
            return None
        return np.round(np.asarray(self.threshold_variable, dtype=np.float64), 6)


class EnsembleInputs:
    """The ensemble's preprocessor: every member's encoding of the same raw inputs, one each, and
    for the rest (classes, columns, modalities, label separator) its first member's, which every
    member shares: they were trained on the same rows. Not a layer: the members' preprocessors are
    saved with the members."""

    def __init__(self, members):
        self._members = members
        self._first = members[0].preprocessor

    @property
    def preprocessors(self) -> list:
        return [member.preprocessor for member in self._members]

    def input_specs(self) -> dict:
        specs = {}
        for preprocessor in self.preprocessors:
            specs.update(preprocessor.input_specs())
        return specs

    def encode(self, raw: dict) -> tuple:
        return tuple(preprocessor.encode(raw) for preprocessor in self.preprocessors)

    @property
    def image_size(self) -> int:
        """The largest member's: the size an image is worth sending at."""
        return max(preprocessor.image_size for preprocessor in self.preprocessors)

    def describe(self) -> dict:
        return {"members": [preprocessor.describe() for preprocessor in self.preprocessors]}

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._first, name)


def member_models(model) -> list:
    """The classifiers inside `model`: its members, or the model itself."""
    return list(getattr(model, "members", [model]))
