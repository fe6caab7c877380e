"""The preprocessor: raw inputs -> the network's tensors, with everything adapted on the training rows.

One object serves every consumer: the training pipeline maps `decode_image` per example and
`encode_text` / `encode_tabular` per batch; prediction, the server and the exported SavedModel call
`encode` on raw batches. It is a Keras layer saved inside model.keras (the classifier's
`preprocessor`), so a run carries it wherever the model goes.
"""

from __future__ import annotations

import json

import keras
import numpy as np

from fusionapp.compat import all_sublayers
from fusionapp.preprocessing.configs import ImageTextConfig, TabularColumn, TextConfig, TextInput, WideTextConfig
from fusionapp.preprocessing.image import decode_or_blank
from fusionapp.preprocessing.text import text_vectorizer, wide_vectorizer
from fusionapp.preprocessing.raw_values import (cut_text, missing_inputs, normalize_category, normalize_text,
                                                tabular_key)
from fusionapp.settings import MODALITIES
from fusionapp.preprocessing.labels import label_matrix


@keras.saving.register_keras_serializable(package="fusionapp")
class Preprocessor(keras.layers.Layer):
    """Raw inputs -> network inputs.

    The config holds what is small: class names (and `label_sep`: None for one label per row, else
    a multi-label model whose label cells join labels with it), modalities, image size, and one
    typed config per input (fusionapp/preprocessing/configs.py): `text` (how text is cut and what
    the network reads of it), `tabular` (the columns), `wide_text` (the wide path's own n-grams, or
    None) and `image_text` (a joint image-text model, or None). The large state is layer state,
    saved in the model file beside the weights: the text vocabularies (assets of the
    TextVectorization layers), the idf weights and the numeric columns' statistics.
    """

    def __init__(self, class_names, modalities, image_size: int, text: TextConfig | None = None,
                 tabular: tuple[TabularColumn, ...] = (), label_sep: str | None = None,
                 wide_text: WideTextConfig | None = None, text_tokenizer=None,
                 image_text: ImageTextConfig | None = None, **kwargs):
        super().__init__(**{**kwargs, "dtype": "float32", "trainable": False})
        self.class_names = [str(name) for name in class_names]
        self.label_sep = label_sep
        self.modalities = tuple(m for m in MODALITIES if m in modalities)
        self.image_size = int(image_size)
        self.text = text if "text" in self.modalities else None
        self.tabular = tuple(tabular)
        self.wide_text = wide_text if "text" in self.modalities else None
        self.image_text = image_text

        # === Layers ===
        self._text_layers(text_tokenizer)
        numeric = [column for column in self.tabular if column.kind == "numeric"]
        if numeric:
            self.numeric_mean = self.add_weight(shape=(len(numeric),), initializer="zeros", trainable=False,
                                                name="numeric_mean")
            self.numeric_std = self.add_weight(shape=(len(numeric),), initializer="ones", trainable=False,
                                               name="numeric_std")
        # One-hot with slot 0 for an unknown or missing category; a column that had no categories
        # in training has that slot only.
        self.category_lookups = [
            keras.layers.StringLookup(vocabulary=list(column.categories), num_oov_indices=1, output_mode="one_hot",
                                      name=f"categories_{i}")
            for i, column in enumerate(self.tabular) if column.kind == "categorical" and column.categories]
        for layer in [getattr(self, "text_vectorizer", None), getattr(self, "wide_vectorizer", None),
                      *self.category_lookups]:
            if layer is not None:
                layer.build((None,))
        # These layers run in the input pipeline, never inside the model's compiled step; riding
        # along with the model, they must not make Keras turn --jit off.
        for layer in all_sublayers(self):
            layer.supports_jit = True
        self.built = True

    def _text_layers(self, text_tokenizer) -> None:
        text = self.text
        if text is not None and text.input == TextInput.BACKBONE:
            # A pretrained text backbone's own tokenizer; its vocabulary is an asset of the model file.
            # Loaded from a model file, it gets its vocabulary after this, and builds (its packer
            # reads the vocabulary's special tokens) on first use.
            self.text_tokenizer = text_tokenizer or keras.saving.deserialize_keras_object(json.loads(text.tokenizer))
        elif text is not None:
            self.text_vectorizer = text_vectorizer(text.tokens, text.ngrams, text.input, text.sequence_length)
            if text.input == TextInput.TF_IDF:
                self.idf = self.add_weight(shape=(text.vocabulary_size,), initializer="ones", trainable=False,
                                           name="idf")
        if self.wide_text is not None:
            self.wide_vectorizer = wide_vectorizer(self.wide_text.ngrams)
            self.wide_idf = self.add_weight(shape=(self.wide_text.vocabulary_size,), initializer="zeros",
                                            trainable=False, name="wide_idf")

    # === State set by adapt ===
    def set_state(self, vocabulary=None, idf=None, means=None, stds=None, wide_vocabulary=None,
                  wide_idf=None) -> None:
        if vocabulary is not None:
            self.text_vectorizer.set_vocabulary(list(vocabulary))
        if idf is not None:
            self.idf.assign(np.asarray(idf, dtype=np.float32))
        if wide_vocabulary is not None:
            self.wide_vectorizer.set_vocabulary(list(wide_vocabulary))
            self.wide_idf.assign(np.asarray(wide_idf, dtype=np.float32))
        if means is not None:
            self.numeric_mean.assign(np.asarray(means, dtype=np.float32))
            self.numeric_std.assign(np.asarray(stds, dtype=np.float32))

    # === Raw inputs ===
    @property
    def tabular_columns(self) -> list[tuple[str, str]]:
        return [(column.name, column.kind) for column in self.tabular]

    @property
    def tabular_kinds(self) -> dict[str, str]:
        return dict(self.tabular_columns)

    def input_specs(self) -> dict:
        """The raw inputs, by name: `image` (encoded bytes), `text`, and `tabular_<column>` (float32
        with NaN for a missing number, or string for a category); each a [batch] tensor."""
        import tensorflow as tf

        specs = {}
        if "image" in self.modalities:
            specs["image"] = tf.TensorSpec([None], tf.string, name="image")
        if "text" in self.modalities:
            specs["text"] = tf.TensorSpec([None], tf.string, name="text")
        if "tabular" in self.modalities:
            for name, kind in self.tabular_columns:
                key = tabular_key(name)
                specs[key] = tf.TensorSpec([None], tf.float32 if kind == "numeric" else tf.string, name=key)
        return specs

    # === Raw -> network inputs (TensorFlow ops) ===
    def decode_image(self, encoded):
        """One encoded image (empty bytes: missing) -> uint8 [size, size, 3]."""
        return decode_or_blank(encoded, self.image_size)

    def encode_text_inputs(self, texts) -> dict:
        """[batch] strings -> the network's text inputs: `text`, and with a pretrained text backbone
        `text_mask` (1 on the text's tokens, 0 on padding)."""
        import tensorflow as tf

        if self.text.input != TextInput.BACKBONE:
            return {"text": self.encode_text(texts)}
        texts = normalize_text(cut_text(texts, self.text.max_chars))
        if self.image_text is not None:
            # A joint model's preprocessor reads prompts and images; its text encoder, token ids alone.
            return {"text": tf.cast(self.text_tokenizer({"images": None, "prompts": texts})["token_ids"], tf.int32)}
        packed = self.text_tokenizer(texts)
        return {"text": tf.cast(packed["token_ids"], tf.int32), "text_mask": tf.cast(packed["padding_mask"], tf.int32)}

    def encode_text(self, texts):
        """[batch] strings -> sublinear TF-IDF vectors at unit length, or token ids."""
        import tensorflow as tf

        tokens = self.text_vectorizer(normalize_text(cut_text(texts, self.text.max_chars)))
        if self.text.input == TextInput.TOKEN_IDS:
            return tf.cast(tokens, tf.int64)
        # log(1 + count) x idf at unit length, as scikit-learn's sublinear_tf with norm="l2": raw
        # counts let long texts and repeated characters swamp the first dense layer.
        weighted = tf.math.log1p(tf.cast(tokens, tf.float32)) * tf.convert_to_tensor(self.idf)
        norm = tf.sqrt(tf.maximum(tf.reduce_sum(weighted * weighted, axis=-1, keepdims=True), 1e-12))
        return weighted / norm

    def encode_wide_text(self, texts) -> dict:
        """[batch] strings -> the wide path's sparse sublinear TF-IDF vectors at unit length, as
        `wide_ids` (int32 [batch, n], 0 = none) and `wide_weights` (float32 [batch, n]): each row's
        n-grams, padded to the batch's longest, so no [batch, vocabulary] matrix is ever made."""
        import tensorflow as tf

        counts = self.wide_vectorizer(normalize_text(cut_text(texts, self.text.max_chars)))
        rows, ids = counts.indices[:, 0], tf.cast(counts.indices[:, 1], tf.int32)
        # scikit-learn's sublinear_tf, 1 + log(count): the wide path is the standard linear text model.
        weights = (1.0 + tf.math.log(tf.cast(counts.values, tf.float32))) * tf.gather(
            tf.convert_to_tensor(self.wide_idf), ids)
        batch = tf.shape(texts, out_type=tf.int64)[0]
        norms = tf.sqrt(tf.maximum(tf.math.unsorted_segment_sum(weights * weights, rows, batch), 1e-12))
        weights = weights / tf.gather(norms, rows)

        def padded(values):
            ragged = tf.RaggedTensor.from_value_rowids(values, rows, nrows=batch)
            width = tf.maximum(tf.reduce_max(ragged.row_lengths()), 1)
            return ragged.to_tensor(shape=tf.stack([batch, tf.cast(width, tf.int64)]))

        return {"wide_ids": padded(ids), "wide_weights": padded(weights)}

    def blank_wide_text(self, batch_size):
        """What the network trains on in place of the wide path's inputs: one empty n-gram per row.
        The wide path is fitted after the network, and weighs nothing until then."""
        import tensorflow as tf

        return {"wide_ids": tf.zeros([batch_size, 1], tf.int32), "wide_weights": tf.zeros([batch_size, 1], tf.float32)}

    def encode_tabular(self, raw: dict):
        """Raw cells -> float32 [batch, width]: per numeric column its normalised value (0 when
        missing) and a missing flag; per categorical column a one-hot over unknown + categories."""
        import tensorflow as tf

        parts, numeric_index = [], 0
        lookups = iter(self.category_lookups)
        for column in self.tabular:
            value = raw[tabular_key(column.name)]
            if column.kind == "numeric":
                value = tf.cast(value, tf.float32)
                missing = tf.math.is_nan(value)
                mean = tf.convert_to_tensor(self.numeric_mean)[numeric_index]
                std = tf.convert_to_tensor(self.numeric_std)[numeric_index]
                normalised = tf.where(missing, tf.zeros_like(value), (value - mean) / std)
                parts.append(tf.stack([normalised, tf.cast(missing, tf.float32)], axis=-1))
                numeric_index += 1
            elif column.categories:
                parts.append(tf.cast(next(lookups)(normalize_category(value)), tf.float32))
            else:
                parts.append(tf.ones_like(tf.cast(tf.strings.length(value), tf.float32))[:, None])
        return tf.concat(parts, axis=-1)

    def encode(self, raw: dict) -> dict:
        """A batch of raw inputs -> the network's inputs."""
        import tensorflow as tf

        inputs = {}
        if "image" in self.modalities:
            size = self.image_size
            inputs["image"] = tf.map_fn(self.decode_image, raw["image"],
                                        fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8))
        if "text" in self.modalities:
            inputs.update(self.encode_text_inputs(raw["text"]))
            if self.wide_text is not None:
                inputs.update(self.encode_wide_text(raw["text"]))
        if "tabular" in self.modalities:
            inputs["tabular"] = self.encode_tabular(raw)
        return inputs

    def missing(self, raw: dict):
        """[batch] strings naming each row's missing inputs (see preprocessing.raw_values)."""
        return missing_inputs(raw, self.modalities, self.tabular_columns)

    # === Labels ===
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def multi_label(self) -> bool:
        return self.label_sep is not None

    def label_indices(self, labels) -> np.ndarray:
        index = {name: i for i, name in enumerate(self.class_names)}
        return np.array([index[label] for label in labels], dtype=np.int32)

    def label_targets(self, cells) -> np.ndarray:
        """Label cells -> what the model is trained and scored against: class indices [rows], or for
        a multi-label model a 0/1 float32 matrix [rows, labels] (labels it does not know are left out)."""
        return label_matrix(cells, self.class_names, self.label_sep) if self.multi_label else self.label_indices(cells)

    def tabular_widths(self) -> list[int]:
        """How many values `encode_tabular` gives each column, in order: a numeric column its value
        and missing flag, a categorical one a one-hot over unknown + its categories."""
        return [column.width for column in self.tabular]

    # === Config ===
    def get_config(self):
        return {**super().get_config(), "class_names": self.class_names, "modalities": list(self.modalities),
                "image_size": self.image_size, "text": self.text and self.text.to_config(),
                "tabular": [column.to_config() for column in self.tabular], "label_sep": self.label_sep,
                "wide_text": self.wide_text and self.wide_text.to_config(),
                "image_text": self.image_text and self.image_text.to_config()}

    @classmethod
    def from_config(cls, config):
        """The saved dicts (of this or an earlier fusionapp version) as typed configs."""
        typed = {"text": TextConfig, "wide_text": WideTextConfig, "image_text": ImageTextConfig}
        config = {**config, **{key: kind.from_config(config[key]) for key, kind in typed.items() if config.get(key)},
                  "tabular": tuple(TabularColumn.from_config(column) for column in config.get("tabular") or ())}
        return super().from_config(config)

    def describe(self) -> dict:
        """The adapted state as plain JSON, for people (preprocessing.json); loading uses the model file."""
        config = self.get_config()
        summary = {key: config[key] for key in ("class_names", "label_sep", "modalities", "image_size", "text",
                                                "wide_text")}
        summary["tabular"] = []
        if self.text is not None and self.text.input != TextInput.BACKBONE:
            vocabulary = [str(token) for token in self.text_vectorizer.get_vocabulary()]
            summary["vocabulary"] = vocabulary
            if self.text.input == TextInput.TF_IDF:
                summary["idf"] = [round(float(w), 6) for w in np.asarray(self.idf)]
        numeric_index = 0
        for column in self.tabular:
            entry = column.to_config()
            if column.kind == "numeric":
                entry.update(mean=float(np.asarray(self.numeric_mean)[numeric_index]),
                             std=float(np.asarray(self.numeric_std)[numeric_index]))
                numeric_index += 1
            summary["tabular"].append(entry)
        return summary
