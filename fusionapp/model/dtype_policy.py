"""The Keras dtype policy layers are built under: a mixed policy for training, float32 for the model
that is saved (and for a frozen backbone's features)."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def precision_policy(name: str):
    """Keras' global dtype policy for the layers built inside, restored afterwards. Mixed policies
    compute in bfloat16 / float16 and keep float32 weights."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
