"""The fusion classifier: branch features concatenated, dense layers, one logit per class (a softmax
over them), or for a multi-label model one per label (a sigmoid each); then the head's layers that
hold what is fitted after the network, reached through the classifier's own methods."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from fusionapp.errors import FusionError
from fusionapp.model.backbones import BACKBONE_LAYER, unfreeze_top
from fusionapp.model.branches import image_branch, pretrained_vector_branch, tabular_branch, text_branch
from fusionapp.model.pretrained_text import (JOINT_LAYER, TEXT_BACKBONE_LAYER, backbone_text_features,
                                           build_text_backbone, joint_image_features, unfreeze_top_text)
from fusionapp.model.head import ClassPrior, LogitBlend, Temperature, Thresholds, WideLinear
from fusionapp.settings import MODALITIES, ModelSettings, settings_from_dict

# The head's layers, named here only: other modules use the classifier's methods.
WIDE, BLEND, PRIOR, TEMPERATURE, THRESHOLDS = "wide.logits", "head.blend", "head.class_prior", "head.temperature", \
    "head.thresholds"
IMAGE_POOL = "image.global_pool"


@keras.saving.register_keras_serializable(package="fusionapp")
class FusionClassifier(keras.Model):
    """A functional model rebuilt from its settings and input sizes, so `model.keras` reloads exactly.

    It returns logits (after the wide path's blend, the class-prior offsets and the calibration
    temperature); what they mean is `fusionapp.model.head.probabilities`. `inputs` are the sizes of
    its inputs and head (`Preprocessor.network_inputs()`): num_classes, image_size, text_input
    ("tf_idf", "token_ids" or "backbone": a pretrained text backbone's token ids and `text_mask`,
    whose architecture is `text_backbone`; `text_features`, its width, when the model takes its
    pooled vectors instead, and `fine_tune_text`, how many top transformer layers train),
    text_width, sequence_length, tabular_width, wide_width (the wide path's own n-gram vocabulary;
    absent in models before 0.9, whose wide path read the TF-IDF text); `image_features`, the shape
    of a pretrained backbone's feature map, when the model takes that map instead of the image (the
    network trained on cached features), and `fine_tune`, how many top backbone layers train; and
    for a joint image-text model (CLIP, SigLIP) `image_text_backbone`, its architecture, with the
    pixel scaling `image_scale` / `image_offset`: its encoders make both branches' vectors.
    `preprocessor`, a Keras layer that turns raw inputs into those tensors, is optional and saved
    with the model when given; the network itself never calls it.
    """

    def __init__(self, settings: dict, inputs: dict, preprocessor=None, **kwargs):
        model_settings = settings_from_dict(ModelSettings, settings)
        # === Layers and functional model ===
        tensors, logits = _network(model_settings, inputs)
        super().__init__(inputs=tensors, outputs=logits, **kwargs)
        if (inputs.get("fine_tune") and model_settings.pretrained and "image" in tensors
                and "image_features" not in inputs):
            # Part of the model's definition, so a fine-tuning checkpoint reloads with the same
            # trainable weights its optimizer state belongs to.
            unfreeze_top(self.get_layer(BACKBONE_LAYER), inputs["fine_tune"])
        if inputs.get("fine_tune_text") and "text_mask" in tensors:
            unfreeze_top_text(self.get_layer(TEXT_BACKBONE_LAYER), inputs["fine_tune_text"])

        # === Config ===
        self.settings = dict(settings)
        self.network_inputs = dict(inputs)
        if preprocessor is not None:
            self.preprocessor = preprocessor

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable, "settings": self.settings,
                  "inputs": self.network_inputs}
        if getattr(self, "preprocessor", None) is not None:
            config["preprocessor"] = keras.saving.serialize_keras_object(self.preprocessor)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "inputs" not in config:
            raise FusionError("this model file was written by fusionapp 0.2 or older, whose models took "
                              "probabilities-based heads and kept their vocabulary in the config; retrain it")
        if config.get("preprocessor") is not None:
            config["preprocessor"] = keras.saving.deserialize_keras_object(config["preprocessor"])
        return cls(**config)

    # === What is fitted after the network ===
    @property
    def multi_label(self) -> bool:
        return bool(self.settings.get("multi_label", False))

    @property
    def has_wide_path(self) -> bool:
        return any(layer.name == WIDE for layer in self.layers)

    def set_wide_path(self, kernel, bias) -> None:
        """The linear model's weights [features, classes] and biases, features in the order of
        fusionapp.posthoc.wide.wide_features."""
        layer = self.get_layer(WIDE)
        if isinstance(layer, WideLinear):
            layer.set_linear(kernel, bias)
        else:
            layer.set_weights([np.asarray(kernel, np.float32), np.asarray(bias, np.float32)])

    def set_blend(self, alpha) -> None:
        """The wide path's weight in the blend: one, or one per label (multi-label)."""
        self.get_layer(BLEND).set_weights([np.asarray(alpha, np.float32)])

    def set_offsets(self, offsets) -> None:
        """A single-label model's per-class decision offsets, added to the logits."""
        self.get_layer(PRIOR).set_weights([np.asarray(offsets, np.float32)])

    def set_temperature(self, temperature: float) -> None:
        self.get_layer(TEMPERATURE).set_weights([np.float32(temperature)])

    def set_thresholds(self, thresholds) -> None:
        self.get_layer(THRESHOLDS).set_weights([np.asarray(thresholds, np.float32)])

    @property
    def threshold_variable(self):
        """A multi-label model's per-label decision thresholds as the variable the model holds (what
        a traced function reads, so an export carries it)."""
        return self.get_layer(THRESHOLDS).thresholds

    @property
    def thresholds(self) -> np.ndarray | None:
        """A multi-label model's per-label thresholds, as tuned (float32 weights read back to 6
        decimals, 0.3 rather than 0.30000001); None for a single-label model."""
        if not self.multi_label:
            return None
        return np.round(np.asarray(self.threshold_variable, dtype=np.float64), 6)

    @property
    def image_feature_map(self):
        """The symbolic feature map the image branch pools (for Grad-CAM), or None without images."""
        return self.get_layer(IMAGE_POOL).input if any(layer.name == IMAGE_POOL for layer in self.layers) else None


def _network(settings: ModelSettings, inputs: dict):
    """The functional graph: (input tensors by modality, logits)."""
    modalities = [m for m in MODALITIES if m in settings.modalities]
    if not modalities:
        raise FusionError("a model needs at least one of the modalities image, text, tabular")
    tensors, features, joint = {}, [], []

    def joint_model():  # a joint image-text model, built once for both branches when either needs it
        if not joint:
            joint.append(build_text_backbone(inputs["image_text_backbone"], name=JOINT_LAYER))
        return joint[0]

    if "image" in modalities:
        size = inputs["image_size"]
        from_features = inputs.get("image_features") is not None
        shape, dtype = (tuple(inputs["image_features"]), "float32") if from_features else ((size, size, 3), "uint8")
        tensors["image"] = keras.Input(shape, dtype=dtype, name="image")
        if inputs.get("image_text_backbone"):
            vector = tensors["image"] if from_features else joint_image_features(
                tensors["image"], joint_model(), inputs["image_scale"], inputs["image_offset"])
            features.append(pretrained_vector_branch(vector, settings, "image"))
        else:
            features.append(image_branch(tensors["image"], settings, size, from_features))
    if "text" in modalities and inputs["text_input"] == "backbone":
        features.append(_backbone_text(tensors, settings, inputs, joint_model))
    elif "text" in modalities:
        bag = inputs["text_input"] == "tf_idf"
        if bag != (settings.text_encoder == "bag"):
            raise FusionError("the bag text encoder reads TF-IDF vectors, the cnn / mean encoders token ids")
        shape, dtype = ((inputs["text_width"],), "float32") if bag else ((inputs["sequence_length"],), "int64")
        tensors["text"] = keras.Input(shape, dtype=dtype, name="text")
        features.append(text_branch(tensors["text"], settings, inputs["text_width"]))
    if "text" in modalities and settings.wide and inputs.get("wide_width"):
        tensors["wide_ids"] = keras.Input((None,), dtype="int32", name="wide_ids")
        tensors["wide_weights"] = keras.Input((None,), dtype="float32", name="wide_weights")
    if "tabular" in modalities:
        tensors["tabular"] = keras.Input((inputs["tabular_width"],), dtype="float32", name="tabular")
        features.append(tabular_branch(tensors["tabular"], settings))
    x = layers.Concatenate(name="fusion.concat")(features) if len(features) > 1 else features[0]
    x = layers.Dense(settings.fusion_units, activation="relu", name="fusion.dense")(x)
    x = layers.Dropout(settings.dropout, name="fusion.dropout")(x)
    logits = layers.Dense(inputs["num_classes"], name="head.logits", dtype="float32")(x)
    return tensors, _head(logits, tensors, settings, inputs)


def _backbone_text(tensors: dict, settings: ModelSettings, inputs: dict, joint_model):
    """A pretrained text backbone's branch: on token ids and their mask (a joint image-text model's:
    on token ids), or with `text_features` on the backbone's vectors (computed once by the feature
    cache) instead."""
    length = inputs["sequence_length"]
    if inputs.get("text_features"):
        tensors["text"] = keras.Input((inputs["text_features"],), dtype="float32", name="text")
        pooled = tensors["text"]
    elif inputs.get("image_text_backbone"):
        tensors["text"] = keras.Input((length,), dtype="int32", name="text")
        pooled = joint_model().get_text_embeddings(tensors["text"])
    else:
        tensors["text"] = keras.Input((length,), dtype="int32", name="text")
        tensors["text_mask"] = keras.Input((length,), dtype="int32", name="text_mask")
        pooled = backbone_text_features(tensors["text"], tensors["text_mask"],
                                        build_text_backbone(inputs["text_backbone"]),
                                        frozen=not inputs.get("fine_tune_text"))
    return pretrained_vector_branch(pooled, settings, "text")


def _head(logits, tensors: dict, settings: ModelSettings, inputs: dict):
    """The wide path's blend, the offsets or thresholds and the temperature, over the deep logits."""
    wide = wide_path_inputs(tuple(tensors), inputs) if settings.wide else ()
    if "wide_text" in wide:
        # The wide path: its own sparse n-grams and the tabular values straight to the logits.
        # Not trained with the network; fitted afterwards (fusionapp/posthoc/wide.py).
        read = [tensors["wide_ids"], tensors["wide_weights"]] + ([tensors["tabular"]] if "tabular" in wide else [])
        wide_logits = WideLinear(inputs["wide_width"], inputs["num_classes"], name=WIDE, dtype="float32")(read)
        logits = LogitBlend(per_class=settings.multi_label, name=BLEND, dtype="float32")(
            [logits, wide_logits, tensors["wide_weights"]])
    elif wide:
        # Tabular values alone, or a model before 0.9 whose wide path read the network's TF-IDF text.
        read = [tensors[m] for m in wide]
        x = layers.Concatenate(name="wide.concat")(read) if len(read) > 1 else read[0]
        wide_logits = layers.Dense(inputs["num_classes"], kernel_initializer="zeros", trainable=False,
                                   name=WIDE, dtype="float32")(x)
        text = [tensors["text"]] if "text" in wide else []
        logits = LogitBlend(per_class=settings.multi_label, name=BLEND, dtype="float32")([logits, wide_logits, *text])
    if not settings.multi_label:
        logits = ClassPrior(inputs["num_classes"], name=PRIOR, dtype="float32")(logits)
    if settings.calibrate:
        logits = Temperature(name=TEMPERATURE, dtype="float32")(logits)
    if settings.multi_label:
        # Decisions are per-label thresholds on the sigmoid probabilities, not class offsets.
        logits = Thresholds(name=THRESHOLDS, dtype="float32")(logits)
    return logits


def wide_path_inputs(modalities, inputs: dict) -> tuple[str, ...]:
    """What the wide path reads, in its features' order: "wide_text", its own n-grams (when the
    preprocessor learnt a vocabulary for it), else "text" in models before 0.9 whose text input
    was TF-IDF vectors; then "tabular" (encoded values)."""
    if "text" in modalities and inputs.get("wide_width"):
        return ("wide_text",) + (("tabular",) if "tabular" in modalities else ())
    readable = {"text": inputs.get("text_input") == "tf_idf" and not inputs.get("wide_width"), "tabular": True}
    return tuple(m for m in ("text", "tabular") if m in modalities and readable[m])


def build_classifier(settings: ModelSettings, inputs: dict, preprocessor=None, name: str = "fusion_classifier"):
    from dataclasses import asdict

    return FusionClassifier(asdict(settings), inputs, preprocessor=preprocessor, name=name)
