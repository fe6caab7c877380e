"""The fusion classifier: branch features concatenated, dense layers, one logit per class (a softmax
over them), or for a multi-label model one per label (a sigmoid each); then the head's layers that
hold what is fitted after the network, reached through the classifier's own methods."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers

from fusionapp.errors import FusionError
from fusionapp.model.backbones import build_backbone, unfreeze_top
from fusionapp.model.branches import image_branch, pretrained_vector_branch, tabular_branch, text_branch
from fusionapp.model.head import ClassPrior, LogitBlend, Temperature, Thresholds, WideLinear
from fusionapp.model.pretrained_text import (JOINT_LAYER, backbone_text_features, build_text_backbone,
                                           enable_text_lora, joint_image_features, unfreeze_top_text)
from fusionapp.model.spec import NetworkSpec
from fusionapp.preprocessing.configs import TextInput
from fusionapp.settings import MODALITIES, ModelSettings, settings_from_dict


@dataclass(frozen=True)
class Backbones:
    """The pretrained models inside a network; None for one it has not, or reads as cached features."""

    image: object | None = None  # the keras.applications backbone of the image branch
    text: object | None = None  # the KerasHub text backbone of the text branch
    # a joint image-text model (CLIP, SigLIP): not a layer of the network itself, its encoders are
    image_text: object | None = None


@dataclass(frozen=True)
class Head:
    """The head's layers after the fusion: the deep logits, then each part fitted after the network
    (fusionapp/posthoc/); None where the model has no such part."""

    logits: object  # the Dense layer of the deep logits
    wide: object | None = None  # the wide path's linear model (WideLinear; a Dense before 0.9)
    blend: LogitBlend | None = None  # the wide path's weight alpha in the blend
    class_prior: ClassPrior | None = None  # a single-label model's decision offsets
    temperature: Temperature | None = None  # the calibration temperature
    thresholds: Thresholds | None = None  # a multi-label model's per-label thresholds


@dataclass(frozen=True)
class _Parts:
    backbones: Backbones
    head: Head
    image_feature_map: object  # the symbolic feature map the image branch pools, or None


@keras.saving.register_keras_serializable(package="fusionapp")
class FusionClassifier(keras.Model):
    """A functional model rebuilt from its settings and spec, so `model.keras` reloads exactly.

    It returns logits (after the wide path's blend, the class-prior offsets and the calibration
    temperature); what they mean is `fusionapp.model.head.probabilities`. `spec` is what the network
    reads (NetworkSpec: the sizes of its inputs and head, and what it takes of pretrained models).
    Its parts are attributes: `backbones` (the pretrained models inside it) and `head` (the layers
    that hold what is fitted after the network). `preprocessor`, a Keras layer that turns raw inputs
    into the network's tensors, is optional and saved with the model when given; the network itself
    never calls it.
    """

    def __init__(self, settings: ModelSettings, spec: NetworkSpec, preprocessor=None, **kwargs):
        # === Layers and functional model ===
        tensors, logits, parts = _network(settings, spec)
        super().__init__(inputs=tensors, outputs=logits, **kwargs)
        # Part of the model's definition, so a fine-tuning checkpoint reloads with the same
        # trainable weights its optimizer state belongs to.
        if spec.fine_tune and parts.backbones.image is not None:
            unfreeze_top(parts.backbones.image, spec.fine_tune)
        if spec.fine_tune_text and parts.backbones.text is not None:
            unfreeze_top_text(parts.backbones.text, spec.fine_tune_text)
        if spec.text_lora and parts.backbones.text is not None:
            enable_text_lora(parts.backbones.text, spec.text_lora)

        # === Config ===
        self.settings = settings
        self.spec = spec
        # Held in a plain dataclass, which Keras neither tracks nor saves: the layers are saved as
        # the network's, and the joint model is not one of them.
        self._parts = parts
        if preprocessor is not None:
            self.preprocessor = preprocessor

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable, "settings": dataclasses.asdict(self.settings),
                  "inputs": self.spec.get_config()}
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
        return cls(settings_from_dict(ModelSettings, config.pop("settings")), NetworkSpec.from_config(
            config.pop("inputs")), **config)

    # === Parts ===
    @property
    def backbones(self) -> Backbones:
        return self._parts.backbones

    @property
    def head(self) -> Head:
        return self._parts.head

    @property
    def image_feature_map(self):
        """The symbolic feature map the image branch pools (for Grad-CAM), or None without one."""
        return self._parts.image_feature_map

    # === What is fitted after the network ===
    @property
    def multi_label(self) -> bool:
        return self.settings.multi_label

    @property
    def has_wide_path(self) -> bool:
        return self.head.wide is not None

    def set_wide_path(self, kernel, bias) -> None:
        """The linear model's weights [features, classes] and biases, features in the order of
        fusionapp.posthoc.wide.wide_features."""
        layer = self.head.wide
        if isinstance(layer, WideLinear):
            layer.set_linear(kernel, bias)
        else:
            layer.set_weights([np.asarray(kernel, np.float32), np.asarray(bias, np.float32)])

    def set_blend(self, alpha) -> None:
        """The wide path's weight in the blend: one, or one per label (multi-label)."""
        self.head.blend.set_weights([np.asarray(alpha, np.float32)])

    def set_offsets(self, offsets) -> None:
        """A single-label model's per-class decision offsets, added to the logits."""
        self.head.class_prior.set_weights([np.asarray(offsets, np.float32)])

    def set_temperature(self, temperature: float) -> None:
        self.head.temperature.set_weights([np.float32(temperature)])

    def set_thresholds(self, thresholds) -> None:
        self.head.thresholds.set_weights([np.asarray(thresholds, np.float32)])

    @property
    def threshold_variable(self):
        """A multi-label model's per-label decision thresholds as the variable the model holds (what
        a traced function reads, so an export carries it)."""
        return self.head.thresholds.thresholds

    @property
    def thresholds(self) -> np.ndarray | None:
        """A multi-label model's per-label thresholds, as tuned (float32 weights read back to 6
        decimals, 0.3 rather than 0.30000001); None for a single-label model."""
        if not self.multi_label:
            return None
        return np.round(np.asarray(self.threshold_variable, dtype=np.float64), 6)


def _network(settings: ModelSettings, spec: NetworkSpec):
    """The functional graph: (input tensors by modality, logits, its parts)."""
    modalities = [m for m in MODALITIES if m in settings.modalities]
    if not modalities:
        raise FusionError("a model needs at least one of the modalities image, text, tabular")
    reads_joint = ("image" in modalities and spec.image_features is None) or (
        "text" in modalities and not spec.text_features)
    joint = build_text_backbone(spec.image_text_backbone, name=JOINT_LAYER) \
        if spec.image_text_backbone and reads_joint else None
    tensors, features, image_backbone, text_backbone, feature_map, text_vector = {}, [], None, None, None, None
    if "image" in modalities:
        image, image_backbone, feature_map = _image(tensors, settings, spec, joint)
        features.append(image)
    if "text" in modalities and spec.text_input == TextInput.BACKBONE:
        text, text_backbone, text_vector = _backbone_text(tensors, settings, spec, joint)
        features.append(text)
    elif "text" in modalities:
        bag = spec.text_input == TextInput.TF_IDF
        if bag != (settings.text_encoder == "bag"):
            raise FusionError("the bag text encoder reads TF-IDF vectors, the cnn / mean encoders token ids")
        shape, dtype = ((spec.text_width,), "float32") if bag else ((spec.sequence_length,), "int64")
        tensors["text"] = keras.Input(shape, dtype=dtype, name="text")
        features.append(text_branch(tensors["text"], settings, spec.text_width))
    if "text" in modalities and settings.wide and spec.wide_width:
        tensors["wide_ids"] = keras.Input((None,), dtype="int32", name="wide_ids")
        tensors["wide_weights"] = keras.Input((None,), dtype="float32", name="wide_weights")
    if "tabular" in modalities:
        tensors["tabular"] = keras.Input((spec.tabular_width,), dtype="float32", name="tabular")
        features.append(tabular_branch(tensors["tabular"], settings))
    x = layers.Concatenate(name="fusion.concat")(features) if len(features) > 1 else features[0]
    x = layers.Dense(settings.fusion_units, activation="relu", name="fusion.dense")(x)
    x = layers.Dropout(settings.dropout, name="fusion.dropout")(x)
    head = layers.Dense(spec.num_classes, name="head.logits", dtype="float32")
    logits, head = _head(head(x), head, tensors, settings, spec, text_vector)
    return tensors, logits, _Parts(Backbones(image_backbone, text_backbone, joint), head, feature_map)


def _image(tensors: dict, settings: ModelSettings, spec: NetworkSpec, joint):
    """The image branch: (its features, the image backbone inside it or None, the feature map it
    pools or None): on uint8 images, or with `image_features` on a pretrained backbone's output
    (computed once by the feature cache) instead; through a joint model's vision encoder with one."""
    size, from_features = spec.image_size, spec.image_features is not None
    shape, dtype = (spec.image_features, "float32") if from_features else ((size, size, 3), "uint8")
    tensors["image"] = keras.Input(shape, dtype=dtype, name="image")
    if spec.image_text_backbone:
        vector = tensors["image"] if from_features else joint_image_features(
            tensors["image"], joint, list(spec.image_scale), list(spec.image_offset))
        return pretrained_vector_branch(vector, settings, "image"), None, None
    backbone = build_backbone(settings.image_backbone, size) if settings.pretrained and not from_features else None
    features, feature_map = image_branch(tensors["image"], settings, backbone)
    return features, backbone, feature_map


def _backbone_text(tensors: dict, settings: ModelSettings, spec: NetworkSpec, joint):
    """A pretrained text backbone's branch: (its features, the text backbone or None, the pooled
    vector the branch starts from). On token ids
    and their mask (a joint image-text model's: on token ids), or with `text_features` on the
    backbone's vectors (computed once by the feature cache) instead."""
    length, backbone = spec.sequence_length, None
    if spec.text_features:
        tensors["text"] = keras.Input((spec.text_features,), dtype="float32", name="text")
        pooled = tensors["text"]
    elif spec.image_text_backbone:
        tensors["text"] = keras.Input((length,), dtype="int32", name="text")
        pooled = joint.get_text_embeddings(tensors["text"])
    else:
        tensors["text"] = keras.Input((length,), dtype="int32", name="text")
        tensors["text_mask"] = keras.Input((length,), dtype="int32", name="text_mask")
        backbone = build_text_backbone(spec.text_backbone)
        pooled = backbone_text_features(tensors["text"], tensors["text_mask"], backbone,
                                        frozen=not (spec.fine_tune_text or spec.text_lora),
                                        pooling=spec.text_pooling)
    return pretrained_vector_branch(pooled, settings, "text"), backbone, pooled


def _head(logits, deep, tensors: dict, settings: ModelSettings, spec: NetworkSpec, text_vector=None):
    """The wide path's blend, the offsets or thresholds and the temperature, over the deep logits
    (of the layer `deep`): (the model's logits, its Head). `text_vector`: the text backbone's pooled
    vector, which the wide path reads where the spec says so."""
    wide = wide_path_inputs(tuple(tensors), spec) if settings.wide else ()
    parts = {"logits": deep}
    if "wide_text" in wide:
        # The wide path: its own sparse n-grams and the tabular values straight to the logits.
        # Not trained with the network; fitted afterwards (fusionapp/posthoc/wide.py).
        # Its dense inputs, in the order of wide_features: the tabular values, then the text
        # backbone's vector at unit length (the scale of the n-grams' TF-IDF rows).
        dense = [tensors["tabular"]] if "tabular" in wide else []
        if "text_vector" in wide:
            dense.append(layers.UnitNormalization(name="wide.text_vector", dtype="float32")(text_vector))
        if len(dense) > 1:
            dense = [layers.Concatenate(name="wide.dense", dtype="float32")(dense)]
        read = [tensors["wide_ids"], tensors["wide_weights"], *dense]
        parts["wide"] = WideLinear(spec.wide_width, spec.num_classes, name="wide.logits", dtype="float32")
        parts["blend"] = LogitBlend(per_class=settings.multi_label, name="head.blend", dtype="float32")
        logits = parts["blend"]([logits, parts["wide"](read), tensors["wide_weights"]])
    elif wide:
        # Tabular values alone, or a model before 0.9 whose wide path read the network's TF-IDF text.
        read = [tensors[m] for m in wide]
        x = layers.Concatenate(name="wide.concat")(read) if len(read) > 1 else read[0]
        parts["wide"] = layers.Dense(spec.num_classes, kernel_initializer="zeros", trainable=False,
                                     name="wide.logits", dtype="float32")
        text = [tensors["text"]] if "text" in wide else []
        parts["blend"] = LogitBlend(per_class=settings.multi_label, name="head.blend", dtype="float32")
        logits = parts["blend"]([logits, parts["wide"](x), *text])
    if not settings.multi_label:
        parts["class_prior"] = ClassPrior(spec.num_classes, name="head.class_prior", dtype="float32")
        logits = parts["class_prior"](logits)
    if settings.calibrate:
        parts["temperature"] = Temperature(name="head.temperature", dtype="float32")
        logits = parts["temperature"](logits)
    if settings.multi_label:
        # Decisions are per-label thresholds on the sigmoid probabilities, not class offsets.
        parts["thresholds"] = Thresholds(name="head.thresholds", dtype="float32")
        logits = parts["thresholds"](logits)
    return logits, Head(**parts)


def wide_path_inputs(modalities, spec: NetworkSpec) -> tuple[str, ...]:
    """What the wide path reads, in its features' order: "wide_text", its own n-grams (when the
    preprocessor learnt a vocabulary for it), else "text" in models before 0.9 whose text input
    was TF-IDF vectors; then "tabular" (encoded values); then "text_vector", the text backbone's
    pooled vector (models since 0.12 with one)."""
    if "text" in modalities and spec.wide_width:
        return ("wide_text",) + (("tabular",) if "tabular" in modalities else ()) + (
            ("text_vector",) if spec.wide_embedding else ())
    readable = {"text": spec.text_input == TextInput.TF_IDF and not spec.wide_width, "tabular": True}
    return tuple(m for m in ("text", "tabular") if m in modalities and readable[m])


def build_classifier(settings: ModelSettings, spec: NetworkSpec, preprocessor=None, name: str = "fusion_classifier"):
    return FusionClassifier(settings, spec, preprocessor=preprocessor, name=name)
