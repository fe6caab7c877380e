"""`--precision`: what `auto` picks on this hardware (the policy itself: fusionapp.model.dtype_policy)."""

from __future__ import annotations


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
