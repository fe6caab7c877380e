"""The ImageNet backbones of keras.applications an image branch can start from, each with its own
input scaling and the weights file Keras publishes for it (without the classification top)."""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers

KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class Backbone:
    name: str  # as --image-backbone spells it
    application: str  # the keras.applications constructor
    weights_file: str  # the name Keras gives the no-top ImageNet weights in $KERAS_HOME/models
    url_folder: str
    md5: str  # Keras' published hash of that file
    scaling: str  # "inside": the model rescales 0-255 itself; "tf": x / 127.5 - 1 before it
    options: tuple = ()  # extra constructor arguments

    @property
    def weights_url(self) -> str:
        return f"{KERAS_WEIGHTS_URL}{self.url_folder}/{self.weights_file}"


BACKBONES = {backbone.name: backbone for backbone in (
    Backbone("mobilenet_v3_small", "MobileNetV3Small", "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
             "mobilenet_v3", "d3e8ec802a04aa4fc771ee12a9a9b836", "inside", (("include_preprocessing", True),)),
    Backbone("mobilenet_v3_large", "MobileNetV3Large", "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
             "mobilenet_v3", "07fb09a5933dd0c8eaafa16978110389", "inside", (("include_preprocessing", True),)),
    Backbone("efficientnet_v2_b0", "EfficientNetV2B0", "efficientnetv2-b0_notop.h5", "efficientnet_v2",
             "893217f2bb855e2983157299931e43ff", "inside", (("include_preprocessing", True),)),
    Backbone("resnet50_v2", "ResNet50V2", "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5", "resnet",
             "fac2f116257151a9d068a22e544a4917", "tf"),
)}
BACKBONE_LAYER = "image.backbone"


def build_backbone(name: str, image_size: int):
    """The backbone `name` without its classification top, randomly initialised (weights are
    loaded by the caller, from a file: nothing is ever downloaded here). It takes uint8-range RGB
    and returns its last feature map."""
    backbone = BACKBONES[name]
    model = getattr(keras.applications, backbone.application)(
        include_top=False, weights=None, input_shape=(image_size, image_size, 3), **dict(backbone.options))
    # Renamed after construction: some constructors derive the weights file name from `name`.
    model.name = BACKBONE_LAYER
    return model


def backbone_image_features(images, backbone, name: str):
    """uint8 images -> the feature map of `backbone` (built by build_backbone(name, ...)), the
    images scaled the way its ImageNet weights expect."""
    x = layers.Rescaling(1.0, name="image.to_float")(images)
    if BACKBONES[name].scaling == "tf":
        x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="image.rescale")(x)
    # Frozen unless fine-tuning unfreezes part of it; frozen batch norm runs in inference mode.
    backbone.trainable = False
    return backbone(x)


def build_feature_extractor(name: str, image_size: int):
    """uint8 images -> the backbone's feature map: the part of the image branch the feature cache
    stands in for, its backbone held as `extractor.backbone`."""
    images = keras.Input((image_size, image_size, 3), dtype="uint8", name="image")
    backbone = build_backbone(name, image_size)
    extractor = keras.Model(images, backbone_image_features(images, backbone, name), name="image.feature_extractor")
    extractor.backbone = backbone
    return extractor


def unfreeze_top(backbone, layers_count: int) -> None:
    """Make the top `layers_count` layers of a frozen backbone trainable, batch norm excepted: its
    statistics stay those of ImageNet, since a few thousand images in small batches would only
    blur them."""
    backbone.trainable = True
    trainable = set(map(id, backbone.layers[-layers_count:])) if layers_count else set()
    for layer in backbone.layers:
        layer.trainable = id(layer) in trainable and not isinstance(layer, layers.BatchNormalization)
