"""The Inception-style block: parallel convolutions of several kernel sizes, concatenated."""

from __future__ import annotations

from keras import layers

# Faster-moving statistics than Keras' 0.99: with a few thousand rows an epoch is only tens of
# steps, and slow statistics make validation lag far behind training in the first epochs.
BN_MOMENTUM = 0.9


def branch_filters(filters: int, kernels) -> list[int]:
    """Split a block's output channels over its branches; the 1x1-most branch gets the remainder."""
    share, remainder = divmod(filters, len(kernels))
    return [share + (1 if i < remainder else 0) for i in range(len(kernels))]


def reduction_filters(width: int, reduction: float) -> int:
    """Channels of the 1x1 reduction before a branch of `width` output channels (0: no reduction)."""
    return max(1, round(width * reduction)) if reduction > 0 else 0


def multi_kernel_branches(x, filters: int, kernels, name: str, reduction: float = 0.0) -> list:
    """One `conv{k}x{k}` branch per kernel size, each seeing the same input.

    With `reduction` > 0, every kernel larger than 1x1 first goes through a 1x1 convolution to that
    share of its output channels, with batch norm and ReLU (`conv{k}x{k}.reduce`), as in Inception:
    the large kernels then run on few channels instead of the block's whole input.
    """
    outputs = []
    for kernel, width in zip(kernels, branch_filters(filters, kernels)):
        branch = x
        reduced = reduction_filters(width, reduction) if kernel > 1 else 0
        if reduced:
            prefix = f"{name}.conv{kernel}x{kernel}.reduce"
            branch = layers.Conv2D(reduced, 1, use_bias=False, name=prefix)(branch)
            branch = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{prefix}.bn")(branch)
            branch = layers.Activation("relu", name=f"{prefix}.relu")(branch)
        outputs.append(layers.Conv2D(width, kernel, padding="same", use_bias=False,
                                     name=f"{name}.conv{kernel}x{kernel}")(branch))
    return outputs


def multi_kernel_block(x, filters: int, kernels, name: str, pool: bool = True, reduction: float = 0.0):
    """Branches joined in one place, then batch norm, ReLU and 2x2 max pooling.

    The output has exactly `filters` channels whatever the number of kernels.
    """
    branches = multi_kernel_branches(x, filters, kernels, name, reduction)
    x = layers.Concatenate(axis=-1, name=f"{name}.concat")(branches) if len(branches) > 1 else branches[0]
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}.bn")(x)
    x = layers.Activation("relu", name=f"{name}.relu")(x)
    if pool:
        x = layers.MaxPooling2D(2, name=f"{name}.pool")(x)
    return x
