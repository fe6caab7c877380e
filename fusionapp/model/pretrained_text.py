"""A pretrained KerasHub text backbone as the text branch: token ids and padding mask -> the mean of
its last layer over the text's tokens -> dropout -> projection. Frozen unless fine-tuning unfreezes
its top transformer layers. A joint image-text model (CLIP, SigLIP) gives both branches their
vectors: its vision encoder's projected embedding of the image, its text encoder's of the text."""

from __future__ import annotations

import json

import keras
from keras import layers, ops

from fusionapp.compat import sublayers
from fusionapp.errors import FusionError

TEXT_BACKBONE_LAYER = "text.backbone"
JOINT_LAYER = "image_text.backbone"  # the joint model itself is not a layer of the network: its encoders are


def build_text_backbone(config: str, name: str = TEXT_BACKBONE_LAYER):
    """The backbone of a serialized architecture (`keras.saving.serialize_keras_object` of a
    KerasHub backbone, as JSON text), randomly initialised, frozen, at the current precision policy:
    its weights come from the preset, the feature cache's extractor or the model file."""
    import keras_hub  # noqa: F401 - registers the backbone classes the config names

    config = json.loads(config)
    config["config"]["name"] = name
    # The preset records float32; the run's policy decides (mixed precision runs it in half), for a
    # joint model's encoders too, whose own configs would otherwise keep theirs.
    policy = keras.config.dtype_policy().name
    config["config"]["dtype"] = policy
    for part in ("vision_encoder", "text_encoder"):
        if isinstance(config["config"].get(part), dict):
            config["config"][part]["config"]["dtype"] = policy
    backbone = keras.saving.deserialize_keras_object(config)
    backbone.trainable = False
    return backbone


@keras.saving.register_keras_serializable(package="fusionapp")
class TokenPooling(layers.Layer):
    """[batch, length, hidden] and the 0/1 padding mask -> [batch, hidden]: the first token's vector
    ("cls"), or each feature's largest over the text's own tokens ("max")."""

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, sequence, padding_mask):
        if self.mode == "cls":
            return sequence[:, 0, :]
        own = ops.expand_dims(ops.cast(padding_mask, "bool"), -1)
        return ops.max(ops.where(own, sequence, ops.full_like(sequence, -1e9)), axis=1)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def backbone_text_features(token_ids, padding_mask, backbone, frozen: bool = True, pooling: str | None = None):
    """[batch, length] token ids and 0/1 mask -> [batch, hidden]: the last layer's vectors pooled over
    the text's own tokens (padding left out): `pooling` "mean" (None too), "cls" (the first token's)
    or "max", with "+l2" scaled to unit length after, as a sentence-transformers model pools. Frozen,
    it runs in inference mode (no dropout), as the vectors the feature cache holds were computed."""
    inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
    if "segment_ids" in backbone.input:
        inputs["segment_ids"] = ops.zeros_like(token_ids)  # one segment: the whole text
    outputs = backbone(inputs, training=False) if frozen else backbone(inputs)
    sequence = outputs["sequence_output"] if isinstance(outputs, dict) else outputs
    kind, _, scaled = (pooling or "mean").partition("+")
    mask = ops.cast(padding_mask, "bool")
    if kind in ("cls", "max"):
        pooled = TokenPooling(kind, name=f"text.{kind}_pool", dtype="float32")(sequence, padding_mask)
    else:
        pooled = layers.GlobalAveragePooling1D(name="text.mean_pool", dtype="float32")(sequence, mask=mask)
    if scaled == "l2":
        pooled = layers.UnitNormalization(name="text.unit_norm", dtype="float32")(pooled)
    return pooled


def text_features_extractor(config: str, sequence_length: int, pooling: str | None = None):
    """Token ids and mask -> the pooled vector: the part of the text branch the feature cache stands
    in for, its backbone held as `extractor.backbone`."""
    token_ids = keras.Input((sequence_length,), dtype="int32", name="text")
    mask = keras.Input((sequence_length,), dtype="int32", name="text_mask")
    backbone = build_text_backbone(config)
    features = backbone_text_features(token_ids, mask, backbone, pooling=pooling)
    extractor = keras.Model({"text": token_ids, "text_mask": mask}, features, name="text.feature_extractor")
    extractor.backbone = backbone
    return extractor


def joint_image_features(images, joint, scale, offset):
    """uint8 images -> the joint model's projected image embedding, pixels scaled as its image
    converter scales them."""
    x = layers.Rescaling(scale, offset, name="image.normalize")(images)
    return joint.get_vision_embeddings(x)


def joint_extractors(config: str, image_size: int, scale, offset, sequence_length: int):
    """(uint8 images -> image embeddings, token ids -> text embeddings): the parts of both branches
    the feature cache stands in for, each holding the one joint model as `extractor.backbone`."""
    joint = build_text_backbone(config, name=JOINT_LAYER)
    images = keras.Input((image_size, image_size, 3), dtype="uint8", name="image")
    token_ids = keras.Input((sequence_length,), dtype="int32", name="text")
    extractors = (keras.Model(images, joint_image_features(images, joint, scale, offset), name="image.extractor"),
                  keras.Model({"text": token_ids}, joint.get_text_embeddings(token_ids), name="text.extractor"))
    for extractor in extractors:
        extractor.backbone = joint
    return extractors


def transformer_stack(backbone) -> list:
    """The backbone's transformer layers, bottom to top; a FusionError where it has no list of them
    of its own (ALBERT shares one layer's weights across its depth: nothing to unfreeze at the top)."""
    stack = getattr(backbone, "transformer_layers", None)
    if not stack or any(isinstance(layer, (list, tuple)) for layer in stack):
        raise FusionError(f"--fine-tune-text: {type(backbone).__name__} has no stack of transformer layers to "
                          "unfreeze the top of; train it frozen")
    return list(stack)


def unfreeze_top_text(backbone, layers_count: int) -> None:
    """Make the top `layers_count` transformer layers of a frozen text backbone trainable; the
    embeddings and the layers below stay as pretrained."""
    stack = transformer_stack(backbone)
    backbone.trainable = True
    trainable = set(map(id, stack[-layers_count:]))
    for layer in backbone.layers:
        layer.trainable = id(layer) in trainable


def enable_text_lora(backbone, rank: int) -> None:
    """Rank-`rank` LoRA adapters on the backbone's attention query and value projections (KerasHub's
    `enable_lora`: their low-rank updates and their biases train, every other weight of it frozen)."""
    check_lora_targets(backbone)
    backbone.enable_lora(rank)


def check_lora_targets(backbone) -> None:
    """A FusionError where the backbone has no attention query / value projection LoRA can adapt."""
    names = set(backbone.default_lora_layer_names())
    if not any(layer.name in names and hasattr(layer, "enable_lora")
               for layer in sublayers(backbone)):
        raise FusionError(f"--text-lora: {type(backbone).__name__} has no attention query / value layers to adapt; "
                          "train it frozen or with --fine-tune-text")
