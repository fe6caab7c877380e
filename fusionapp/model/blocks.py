"""The Inception-style block: parallel convolutions of several kernel sizes, concatenated."""

from __future__ import annotations

import keras
from keras import layers

# Faster-moving statistics than Keras' 0.99: with a few thousand rows an epoch is only tens of
# steps, and slow statistics make validation lag far behind training in the first epochs.
BN_MOMENTUM = 0.9


def branch_filters(filters: int, kernels) -> list[int]:
    """Split a block's output channels over its branches; the 1x1-most branch gets the remainder."""
    share, remainder = divmod(filters, len(kernels))
    return [share + (1 if i < remainder else 0) for i in range(len(kernels))]


def multi_kernel_branches(x, filters: int, kernels, name: str) -> list:
    """One `conv{k}x{k}` branch per kernel size, each seeing the same input."""
    outputs = []
    for kernel, width in zip(kernels, branch_filters(filters, kernels)):
        outputs.append(layers.Conv2D(width, kernel, padding="same", use_bias=False,
                                     name=f"{name}.conv{kernel}x{kernel}")(x))
    return outputs


def multi_kernel_block(x, filters: int, kernels, name: str, pool: bool = True):
    """Branches joined in one place, then batch norm, ReLU and 2x2 max pooling.

    The output has exactly `filters` channels whatever the number of kernels.
    """
    branches = multi_kernel_branches(x, filters, kernels, name)
    x = layers.Concatenate(axis=-1, name=f"{name}.concat")(branches) if len(branches) > 1 else branches[0]
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}.bn")(x)
    x = layers.Activation("relu", name=f"{name}.relu")(x)
    if pool:
        x = layers.MaxPooling2D(2, name=f"{name}.pool")(x)
    return x


@keras.saving.register_keras_serializable(package="fusionapp")
class TwoClassProbabilities(layers.Layer):
    """A sigmoid's p(positive) -> [p(negative), p(positive)], so every head returns one column
    per class and the rest of the code never special-cases binary problems."""

    def call(self, positive):
        return keras.ops.concatenate([1.0 - positive, positive], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 2)


@keras.saving.register_keras_serializable(package="fusionapp")
class ClassPrior(layers.Layer):
    """Shift class probabilities by per-class log offsets: softmax(log p + offsets).

    The offsets start at zero (no change) and are not trained by gradient descent; after training
    they are set to the values that maximise validation macro-F1, which moves decisions towards
    rare classes without retraining. They are weights, so they are saved with the model.
    """

    def __init__(self, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.offsets = self.add_weight(shape=(num_classes,), initializer="zeros", trainable=False, name="offsets")

    def call(self, probabilities):
        logits = keras.ops.log(keras.ops.maximum(probabilities, 1e-12)) + self.offsets
        return keras.ops.softmax(logits, axis=-1)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="fusionapp")
class SublinearTfIdf(layers.Layer):
    """n-gram counts -> log(1 + count) * idf, scaled to unit length.

    Raw TF-IDF grows with the length of a text, so long texts swamp the first dense layer and a
    repeated character counts as often as it occurs; the logarithm and the unit length fix both
    (scikit-learn's `sublinear_tf` with `norm="l2"`). On MVSA-Single this raised the text model's
    macro-F1 by about 0.03. `idf_weights` has one value per count column, out-of-vocabulary first;
    it is a weight, so it is saved with the model.
    """

    def __init__(self, size: int, idf_weights=None, **kwargs):
        # float32 whatever the policy: a sum of squares over thousands of n-grams needs it
        super().__init__(**{**kwargs, "dtype": "float32"})
        self.size = size
        initializer = keras.initializers.Constant(idf_weights) if idf_weights is not None else "ones"
        self.idf = self.add_weight(shape=(size,), initializer=initializer, trainable=False, name="idf")

    def call(self, counts):
        weighted = keras.ops.log1p(counts) * self.idf
        norm = keras.ops.sqrt(keras.ops.maximum(keras.ops.sum(weighted * weighted, axis=-1, keepdims=True), 1e-12))
        # Nothing below is trained; without the stop, backprop computes a gradient for every n-gram
        # of every row (a batch x vocabulary matmul), 12 % of a CPU training step.
        return keras.ops.stop_gradient(weighted / norm)

    def get_config(self):
        return {**super().get_config(), "size": self.size}
