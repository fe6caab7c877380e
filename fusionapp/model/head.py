"""The head's layers after the logits, none trained by gradient: each holds what is fitted after the
network (fusionapp/posthoc/) as weights, so the model file, the server and the SavedModel carry it;
and what logits mean (`probabilities`), the one rule every consumer applies."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops


def probabilities(logits, multi_label: bool):
    """A softmax over the classes, or for a multi-label model a sigmoid per label."""
    return ops.sigmoid(logits) if multi_label else ops.softmax(logits, axis=-1)


@keras.saving.register_keras_serializable(package="fusionapp")
class ClassPrior(layers.Layer):
    """Shift each class's logit by a constant offset: logits + offsets.

    The offsets start at zero (no change) and are not trained by gradient descent; after training
    they are set to the values that maximise validation macro-F1, which moves decisions towards
    rare classes without retraining (a prior correction). They are weights, so they are saved
    with the model.
    """

    def __init__(self, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.offsets = self.add_weight(shape=(num_classes,), initializer="zeros", trainable=False, name="offsets")

    def call(self, logits):
        return logits + self.offsets

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="fusionapp")
class WideLinear(layers.Layer):
    """The wide path's linear model over its own sparse n-grams and its dense values (the tabular
    values, the text backbone's vector): sum_j weight_j x kernel[id_j] (+ dense @ tabular_kernel)
    + bias. The n-grams arrive as ids and weights padded per batch (id 0 weighs nothing), so a
    vocabulary of 100,000s costs a gather, not a [batch, vocabulary] matrix. Fitted after the network (fusionapp/posthoc/wide.py), never by gradient.
    Inputs: [ids, weights] or [ids, weights, dense]. (The dense kernel keeps the name it had when
    the tabular values were all it read.)"""

    def __init__(self, vocabulary_size: int, units: int, **kwargs):
        super().__init__(**{**kwargs, "trainable": False})
        self.vocabulary_size, self.units = int(vocabulary_size), int(units)

    def build(self, input_shapes):
        self.text_kernel = self.add_weight(shape=(self.vocabulary_size, self.units), initializer="zeros",
                                           trainable=False, name="text_kernel")
        self.tabular_kernel = None
        if len(input_shapes) > 2:
            self.tabular_kernel = self.add_weight(shape=(input_shapes[2][-1], self.units), initializer="zeros",
                                                  trainable=False, name="tabular_kernel")
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", trainable=False, name="bias")

    def call(self, inputs):
        ids, weights = inputs[0], inputs[1]
        rows = ops.take(self.text_kernel, ops.cast(ids, "int32"), axis=0)
        logits = ops.sum(rows * ops.cast(weights, rows.dtype)[..., None], axis=1) + self.bias
        if self.tabular_kernel is not None:
            logits = logits + ops.matmul(ops.cast(inputs[2], logits.dtype), self.tabular_kernel)
        return logits

    def set_linear(self, kernel, bias) -> None:
        """A linear model's kernel [n-grams (+ dense values), classes] and bias, in the order of
        `wide_features` (fusionapp/posthoc/wide.py)."""
        kernel = np.asarray(kernel, np.float32)
        parts = [kernel[:self.vocabulary_size]]
        if self.tabular_kernel is not None:
            parts.append(kernel[self.vocabulary_size:])
        self.set_weights([*parts, np.asarray(bias, np.float32)])

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], self.units)

    def get_config(self):
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size, "units": self.units}


@keras.saving.register_keras_serializable(package="fusionapp")
class LogitBlend(layers.Layer):
    """(1 - alpha) x deep logits + alpha x wide logits, with alpha a weight, not trained by gradient.

    It starts at 0, so the network trains as if the wide path were not there; after training the
    wide path is fitted and alpha chosen on validation rows (fusionapp/posthoc/wide.py). Given the
    wide path's text weights (or, in models before 0.9, the TF-IDF text vectors) as a third input,
    rows whose vector is all zeros (an empty text) keep the deep logits: the linear model never saw
    such rows, while the network learnt them from modality dropout.
    """

    def __init__(self, per_class: bool = False, **kwargs):
        super().__init__(**kwargs)
        # A weight per class (multi-label models, whose labels are separate questions: the linear
        # model on the text may know one label and nothing of another), or one for all.
        self.per_class = per_class

    def build(self, input_shapes):
        shape = (input_shapes[0][-1],) if self.per_class else ()
        self.alpha = self.add_weight(shape=shape, initializer="zeros", trainable=False, name="alpha")

    def call(self, inputs):
        deep, wide = inputs[0], inputs[1]
        weight = self.alpha
        if len(inputs) > 2:
            present = ops.any(ops.not_equal(inputs[2], 0), axis=-1, keepdims=True)
            weight = weight * ops.cast(present, deep.dtype)
        return deep + weight * (wide - deep)

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def get_config(self):
        return {**super().get_config(), "per_class": self.per_class}


@keras.saving.register_keras_serializable(package="fusionapp")
class Temperature(layers.Layer):
    """logits / T, with T a weight not trained by gradient: 1 (no change) until fitted on the
    validation rows after training (fusionapp/posthoc/temperature.py). Dividing by T leaves every row's
    ranking of the classes, hence its decision, as it was; only how sure the probabilities are
    changes."""

    def build(self, input_shape):
        self.temperature = self.add_weight(shape=(), initializer="ones", trainable=False, name="temperature")

    def call(self, logits):
        return logits / self.temperature

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="fusionapp")
class Thresholds(layers.Layer):
    """A multi-label model's decision thresholds, one probability per label (0.5 until tuned on the
    validation rows after training: fusionapp/posthoc/decisions.py). The logits pass through unchanged; the
    layer is where the thresholds are kept, so the model file, the server and the SavedModel carry
    them with the weights."""

    def build(self, input_shape):
        self.thresholds = self.add_weight(shape=(input_shape[-1],), initializer=keras.initializers.Constant(0.5),
                                          trainable=False, name="thresholds")

    def call(self, logits):
        return logits

    def compute_output_shape(self, input_shape):
        return input_shape
