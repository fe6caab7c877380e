"""`--precision`: the Keras dtype policy training runs under, and what `auto` picks."""

from __future__ import annotations

import contextlib


def resolve_precision(name: str) -> str:
    """`auto` -> mixed_bfloat16 where the hardware computes bfloat16 natively (GPUs of compute
    capability 8.0 or more; CPUs with AVX512-BF16 or AMX), float32 elsewhere, where bfloat16 would
    be emulated and slower. Call after the distribution strategy exists: this may start TensorFlow.
    (The name itself was checked with the other settings.)"""
    if name != "auto":
        return name
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capabilities = [tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))
                        for gpu in gpus]
        return "mixed_bfloat16" if min(capabilities) >= (8, 0) else "float32"
    return "mixed_bfloat16" if cpu_has_native_bfloat16() else "float32"


def cpu_has_native_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    try:
        with open(cpuinfo) as handle:
            flags = next((line for line in handle if line.startswith("flags")), "").split()
    except OSError:
        return False  # not Linux: no cheap way to ask, and float32 is never wrong
    return "avx512_bf16" in flags or "amx_bf16" in flags


@contextlib.contextmanager
def precision_policy(name: str):
    """Keras' global dtype policy for the layers built inside, restored afterwards.

    Mixed policies compute in bfloat16 / float16 and keep float32 weights. Only training runs
    under it: the saved model is rebuilt in float32 (see training._fit).
    """
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
