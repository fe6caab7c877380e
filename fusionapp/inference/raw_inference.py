"""Running a trained model on inputs: the one place it happens.

`RawInference` is a single TensorFlow function from raw inputs (encoded image bytes, texts, table
cells) to logits, probabilities, the decision and the names of the missing inputs: the model's
preprocessor, then the network, then `decide`: the probabilities (fusionapp.model.head), the
predicted class (or, multi-label, the labels whose probability reaches their threshold) and every
class ranked likeliest first. `predict`, `evaluate`, the server, the explainer and training's own
scoring take their decisions from it; `export` saves it as the SavedModel's signature.
"""

from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass

import numpy as np

from fusionapp.data.examples import Examples, raw_columns
from fusionapp.model.head import probabilities as probabilities_of
from fusionapp.settings import PredictionSettings

PREDICT_BATCH_SIZE = PredictionSettings().batch_size


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

        logits = tf.cast(self._model()(self.preprocessor.encode(raw), training=False), tf.float32)
        return {**self.decide(logits), "missing": self.preprocessor.missing(raw)}

    def decide(self, logits) -> dict:
        """TensorFlow ops: logits [batch, classes] -> logits, probabilities, the decision, and
        `ranking`, the classes likeliest first (ties in class order)."""
        import tensorflow as tf

        model = self._model()
        probabilities = probabilities_of(logits, model.multi_label)
        ranking = tf.argsort(probabilities, axis=-1, direction="DESCENDING", stable=True)
        decision = {"logits": logits, "probabilities": probabilities, "ranking": ranking}
        if model.multi_label:
            thresholds = tf.broadcast_to(tf.convert_to_tensor(model.threshold_variable), tf.shape(probabilities))
            chosen = probabilities >= thresholds
            names = tf.gather(self._class_names, ranking)
            in_order = tf.gather(chosen, ranking, batch_dims=1)
            return {**decision, "thresholds": thresholds, "predicted": chosen,
                    "predicted_labels": tf.strings.reduce_join(tf.ragged.boolean_mask(names, in_order), axis=-1,
                                                               separator=self.preprocessor.label_sep)}
        predicted = ranking[:, 0]
        return {**decision, "predicted": predicted, "predicted_label": tf.gather(self._class_names, predicted),
                "confidence": tf.gather(probabilities, predicted, batch_dims=1)}

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
    # single-label: the predicted class per row; multi-label: per row and label, whether the
    # probability reached the label's threshold
    predicted: np.ndarray
    ranking: np.ndarray  # [rows, classes]: class indices, likeliest first
    thresholds: np.ndarray | None = None  # multi-label: the model's per-label thresholds
    # multi-label: per row, the chosen labels likeliest first, as the raw-input function orders them
    label_sets: list[list[str]] | None = None

    def top(self, index: int, k: int) -> list[int]:
        """Row `index`'s `k` likeliest classes."""
        return [int(i) for i in self.ranking[index, :k]]


def predict_examples(model, examples: Examples, batch_size: int = PREDICT_BATCH_SIZE,
                     progress: bool = False) -> Predictions:
    """Every row of already-checked `examples` through the raw-input function, in order."""
    inference = inference_for(model)
    preprocessor = inference.preprocessor
    bar = None
    if progress:
        import keras

        bar = keras.utils.Progbar(len(examples), unit_name="row")
    outputs = []
    for start in range(0, len(examples), batch_size):
        indices = range(start, min(start + batch_size, len(examples)))
        outputs.append(inference(raw_columns(examples, preprocessor.modalities, preprocessor.tabular_kinds, indices,
                                             read_images=True)))
        if bar is not None:
            bar.add(len(indices))
    return _predictions(model, outputs)


def join_predictions(parts: list) -> "Predictions":
    """Predictions of consecutive chunks of rows as one."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    joined = {name: np.concatenate([getattr(part, name) for part in parts])
              for name in ("logits", "probabilities", "predicted", "ranking")}
    sets = None if first.label_sets is None else [names for part in parts for names in part.label_sets]
    return dataclasses.replace(first, **joined, missing=[names for part in parts for names in part.missing],
                               label_sets=sets)


def predictions_from_logits(model, logits) -> Predictions:
    """The model's decisions on logits it gave already (scoring after post-hoc fitting), taken by
    the raw-input function's own `decide`; no input is missing."""
    import tensorflow as tf

    decided = inference_for(model).decide(tf.constant(np.asarray(logits, np.float32)))
    outputs = {name: value.numpy() for name, value in decided.items()}
    outputs["missing"] = np.full(len(outputs["logits"]), b"", dtype=object)
    return _predictions(model, [outputs])


def _predictions(model, outputs: list[dict]) -> Predictions:
    """The raw-input function's outputs, batch by batch, as one Predictions."""
    preprocessor = model.preprocessor
    multi_label, classes = preprocessor.multi_label, preprocessor.num_classes
    empty = {"logits": np.zeros((0, classes), np.float32), "probabilities": np.zeros((0, classes), np.float32),
             "predicted": np.zeros((0, classes) if multi_label else 0, bool if multi_label else np.int64),
             "ranking": np.zeros((0, classes), np.int32)}
    joined = {name: np.concatenate([out[name] for out in outputs]) if outputs else value
              for name, value in empty.items()}
    missing = [names.decode("utf-8").split() for out in outputs for names in out["missing"]]
    label_sets = None
    if multi_label:
        # No label holds the separator (fusionapp/preprocessing/labels.py), so the split is exact.
        label_sets = [joined_labels.decode("utf-8").split(preprocessor.label_sep) if joined_labels else []
                      for out in outputs for joined_labels in out["predicted_labels"]]
    return Predictions(missing=missing, thresholds=model.thresholds, label_sets=label_sets, **joined)
