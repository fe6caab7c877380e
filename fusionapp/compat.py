"""Every use of a third-party library's private internals, in one place, each with the versions it
was checked against. A release that moves one of these breaks here (and in the test named beside
it), not across the code.

Checked against: Keras 3.15.1, KerasHub 0.32.0, TensorFlow 2.21.0.
"""

from __future__ import annotations

# === Keras: multi-worker training (tests/test_distributed.py runs a real two-worker cluster) ===
# Keras 3's `fit` under MultiWorkerMirroredStrategy trips over two of its own reductions. Both only
# touch how Keras summarises values (shapes for the first build, logs after each step); the
# gradients are all-reduced by the strategy as usual.


def build_from_local_batch(model, dataset) -> None:
    """Keras builds the model by all-reducing the first batch as one value, which fails for a batch
    of several inputs (keras-team/keras#20329). Only shapes and dtypes matter for that build, so
    hand it one batch of this worker's own dataset instead (`Model._maybe_symbolic_build`)."""
    sample = next(iter(dataset.take(1)))
    build = model._maybe_symbolic_build
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: build(data_batch=sample)


def fix_multi_worker_logs() -> None:
    """Keras averages each scalar log over axis 0 across workers, which fails for scalars
    (tensorflow/tensorflow#72388). Average them over the replicas instead
    (`keras.src.backend.tensorflow.trainer.reduce_per_replica`)."""
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica
    if getattr(original, "fusionapp_fix", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return tree.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return original(values, strategy, reduction)

    reduce_per_replica.fusionapp_fix = True
    trainer.reduce_per_replica = reduce_per_replica


# === Keras: layers ===


def all_sublayers(layer) -> list:
    """`layer` and every layer inside it, however deep (`Layer._flatten_layers`; the public
    `Model.layers` lists only the top level)."""
    return list(layer._flatten_layers())


# === KerasHub: presets (tests/test_text_backbones.py) ===


def preset_config_file() -> str:
    """The name of a preset folder's own config file (`keras_hub.src.utils.preset_utils.CONFIG_FILE`)."""
    from keras_hub.src.utils.preset_utils import CONFIG_FILE

    return CONFIG_FILE


def builtin_presets() -> dict:
    """KerasHub's registered preset names -> their metadata, `kaggle_handle` among it
    (`keras_hub.src.utils.preset_utils.BUILTIN_PRESETS`)."""
    import keras_hub  # noqa: F401 - registers the built-in presets

    from keras_hub.src.utils.preset_utils import BUILTIN_PRESETS

    return BUILTIN_PRESETS


# === Keras: LoRA (tests/test_text_backbones.py, the --text-lora run) ===
# A LoRA-enabled Dense / EinsumDense keeps its frozen kernel as `_kernel`; its public `kernel` is
# that plus the LoRA update. Loading weights (a checkpoint) merges the update in and zeroes both
# factors, after which neither factor has a gradient.


def sublayers(model) -> list:
    """Every layer inside `model`, nested ones too (`Layer._flatten_layers`)."""
    return list(model._flatten_layers(include_self=False))


def lora_merged_kernels(backbone) -> dict:
    """{id of each LoRA layer's frozen kernel variable: the kernel with its LoRA update merged in},
    in float32 (the public `kernel` casts it to the compute dtype: bfloat16 under mixed precision)."""
    import numpy as np

    merged = {}
    for layer in sublayers(backbone):
        if getattr(layer, "lora_enabled", False):
            update = np.matmul(np.asarray(layer.lora_kernel_a.numpy(), np.float32),
                               np.asarray(layer.lora_kernel_b.numpy(), np.float32))
            merged[id(layer._kernel)] = (np.asarray(layer._kernel.numpy(), np.float32)
                                         + (layer.lora_alpha / layer.lora_rank) * update)
    return merged


def restart_lora(backbone, seed: int) -> None:
    """Re-draw the first factor of each LoRA layer whose factors a load zeroed (the second stays
    zero, so the layer computes what it did) so that training can go on."""
    import keras

    for number, layer in enumerate(sublayers(backbone)):
        if getattr(layer, "lora_enabled", False) and not layer.lora_kernel_a.numpy().any():
            initializer = keras.initializers.HeUniform(seed=seed + number)
            layer.lora_kernel_a.assign(initializer(layer.lora_kernel_a.shape))
