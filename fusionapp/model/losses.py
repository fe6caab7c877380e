"""The training loss of multi-label models: binary cross-entropy per label, on logits."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="fusionapp")
class LabelBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy on the logits of each label, averaged over labels, with the positives of
    label k weighted by `positive_weights[k]` (none: all 1). Keras' own BinaryCrossentropy has no
    per-label weights, and its `class_weight` argument reads one class per row."""

    def __init__(self, positive_weights=None, name: str = "label_binary_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.positive_weights = None if positive_weights is None else [float(w) for w in positive_weights]

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.cast(y_true, "float32")
        # -log sigmoid(z) = softplus(-z) and -log(1 - sigmoid(z)) = softplus(z), stable for any z.
        positive = y_true * ops.softplus(-y_pred)
        if self.positive_weights is not None:
            positive = positive * ops.convert_to_tensor(self.positive_weights, dtype="float32")
        return ops.mean(positive + (1.0 - y_true) * ops.softplus(y_pred), axis=-1)

    def get_config(self):
        return {**super().get_config(), "positive_weights": self.positive_weights}
