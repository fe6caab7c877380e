"""Running a trained model on inputs: the one place it happens.

`RawInference` is a single TensorFlow function from raw inputs (encoded image bytes, texts, table
cells) to logits, probabilities, the predicted label and the names of the missing inputs: the
model's preprocessor, then the network, then one softmax; for a multi-label model a sigmoid per
label and the labels whose probability reaches their threshold. `predict`, `evaluate`, the server and
training's own validation call it; `export` saves it as the SavedModel's signature.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from fusionapp.data.examples import Examples, raw_columns

PREDICT_BATCH_SIZE = 256


class RawInference:
    """model.preprocessor + model -> outputs, traced once for any batch size."""

    def __init__(self, model):
        import tensorflow as tf

        self.preprocessor = model.preprocessor
        self.specs = self.preprocessor.input_specs()
        self._class_names = tf.constant(self.preprocessor.class_names)
        # A weak reference, so a cached function does not keep its model alive.
        self._model = weakref.ref(model)
        self.function = tf.function(self.outputs, input_signature=[self.specs])

    def outputs(self, raw: dict) -> dict:
        """TensorFlow ops: a batch of raw inputs (named as `specs`) -> the prediction tensors."""
        import tensorflow as tf

        model = self._model()
        logits = tf.cast(model(self.preprocessor.encode(raw), training=False), tf.float32)
        if self.preprocessor.multi_label:
            probabilities = tf.sigmoid(logits)
            thresholds = tf.broadcast_to(tf.convert_to_tensor(model.get_layer("head.thresholds").thresholds),
                                         tf.shape(probabilities))
            chosen = probabilities >= thresholds
            # Likeliest first (ties in class order), as predict's tables and answers list them.
            order = tf.argsort(probabilities, axis=-1, direction="DESCENDING", stable=True)
            names = tf.gather(self._class_names, order)
            in_order = tf.gather(chosen, order, batch_dims=1)
            return {"logits": logits, "probabilities": probabilities, "thresholds": thresholds,
                    "predicted": chosen,
                    "predicted_labels": tf.strings.reduce_join(tf.ragged.boolean_mask(names, in_order), axis=-1,
                                                               separator=self.preprocessor.label_sep),
                    "missing": self.preprocessor.missing(raw)}
        probabilities = tf.nn.softmax(logits, axis=-1)
        return {"logits": logits, "probabilities": probabilities,
                "predicted_label": tf.gather(self._class_names, tf.argmax(logits, axis=-1)),
                "confidence": tf.reduce_max(probabilities, axis=-1),
                "missing": self.preprocessor.missing(raw)}

    def __call__(self, raw: dict) -> dict:
        """numpy columns (see data.examples.raw_columns) -> numpy outputs."""
        import tensorflow as tf

        tensors = {name: tf.constant(raw[name], dtype=spec.dtype) for name, spec in self.specs.items()}
        return {name: value.numpy() for name, value in self.function(tensors).items()}


_INFERENCE = weakref.WeakKeyDictionary()


def inference_for(model) -> RawInference:
    """The model's RawInference, built once per model (tracing costs more than a small prediction)."""
    if model not in _INFERENCE:
        _INFERENCE[model] = RawInference(model)
    return _INFERENCE[model]


@dataclass
class Predictions:
    logits: np.ndarray  # [rows, classes]
    probabilities: np.ndarray  # [rows, classes]
    missing: list[list[str]]  # per row, the inputs that were missing
    # multi-label: per row and label, whether the probability reached the label's threshold
    chosen: np.ndarray | None = None
    thresholds: np.ndarray | None = None  # multi-label: the model's per-label thresholds
    # multi-label: per row, the chosen labels likeliest first, as the raw-input function orders them
    label_sets: list[list[str]] | None = None


def predict_examples(model, examples: Examples, batch_size: int = PREDICT_BATCH_SIZE,
                     progress: bool = False) -> Predictions:
    """Every row of already-checked `examples` through the raw-input function, in order."""
    inference = inference_for(model)
    preprocessor = inference.preprocessor
    classes = preprocessor.num_classes
    multi_label = preprocessor.multi_label
    from fusionapp.decision import label_thresholds

    thresholds = label_thresholds(model)
    if len(examples) == 0:
        empty = np.zeros((0, classes), np.float32)
        return Predictions(empty, empty, [], empty.astype(bool) if multi_label else None, thresholds,
                           [] if multi_label else None)
    bar = None
    if progress:
        import keras

        bar = keras.utils.Progbar(len(examples), unit_name="row")
    logits, probabilities, missing, chosen, label_sets = [], [], [], [], []
    for start in range(0, len(examples), batch_size):
        indices = range(start, min(start + batch_size, len(examples)))
        out = inference(raw_columns(examples, preprocessor.modalities, preprocessor.tabular_kinds, indices,
                                    read_images=True))
        logits.append(out["logits"])
        probabilities.append(out["probabilities"])
        if multi_label:
            chosen.append(out["predicted"])
            # No label holds the separator (fusionapp/preprocessing/labels.py), so the split is exact.
            label_sets.extend(joined.decode("utf-8").split(preprocessor.label_sep) if joined else []
                              for joined in out["predicted_labels"])
        missing.extend(names.decode("utf-8").split() for names in out["missing"])
        if bar is not None:
            bar.add(len(indices))
    return Predictions(np.concatenate(logits), np.concatenate(probabilities), missing,
                       np.concatenate(chosen) if multi_label else None, thresholds,
                       label_sets if multi_label else None)
