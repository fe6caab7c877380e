"""The pretrained joint image-text model (CLIP, SigLIP: --image-text-backbone) a run trains with: its
tokenizer, architecture and pixel scaling for the preprocessor, and its weights (kept in the run
until it ends, as a text backbone's are), frozen, as the feature extractors of both branches."""

from __future__ import annotations

import json

from fusionapp.errors import FusionError
from fusionapp.model.dtype_policy import precision_policy
from fusionapp.model.pretrained_text import joint_extractors
from fusionapp.preprocessing.configs import ImageTextConfig, TextConfig, TextInput
from fusionapp.pretrained.records import JointBranchRecord
from fusionapp.pretrained.text_backbones import load_image_text_preset, resolve_text_backbone
from fusionapp.pretrained.weights import weights_sha256
from fusionapp.runs import layout
from fusionapp.settings import RunSettings
from fusionapp.training.text_preset import keep_pretrained_weights, recorded_source

FLAG = "--image-text-backbone"


def checked_image_text_preset(settings: RunSettings, load_weights: bool = True):
    """(source, preset) of the run's joint image-text model, refused in one line if the run cannot use it."""
    source = resolve_text_backbone(settings.model.image_text_backbone, FLAG)
    preset = load_image_text_preset(source, settings.text.sequence_length, load_weights)
    if settings.model.image_size and settings.model.image_size != preset.image_size:
        raise FusionError(f"--image-size {settings.model.image_size}: {type(preset.backbone).__name__} reads "
                          f"{preset.image_size} px images; leave --image-size out")
    return source, preset


def image_text_config(settings: RunSettings, say) -> tuple[ImageTextConfig, TextConfig, object, int]:
    """(the preprocessor's image_text config, its text config, the tokenizer, the image size)."""
    import keras

    # The architecture, tokenizer and scaling only: the weights are loaded once, into the extractors.
    source, preset = checked_image_text_preset(settings, load_weights=False)
    length = settings.text.sequence_length
    name = type(preset.backbone).__name__
    say(f"Image-text model {settings.model.image_text_backbone} ({name}, {source.kind} folder {source.folder}), "
        f"{preset.image_size} px, {length} tokens")
    image_text = ImageTextConfig(json.dumps(preset.config), preset.scale, preset.offset, name, name=source.given,
                                 source=source.kind, folder=source.folder)
    text = TextConfig(TextInput.BACKBONE, length,
                      tokenizer=json.dumps(keras.saving.serialize_keras_object(preset.tokenizer)))
    return image_text, text, preset.tokenizer, preset.image_size


def frozen_image_text(settings: RunSettings, preprocessor, out: str):
    """(image extractor, its record, text extractor, its record) of the joint model, float32 with its
    pretrained weights; None for a branch the model does not have. A new run copies the weights
    into its resume folder; a resumed one reads them from there."""
    config = preprocessor.image_text
    length = preprocessor.text.sequence_length if preprocessor.text else settings.text.sequence_length
    with precision_policy("float32"):
        images, texts = joint_extractors(config.backbone, preprocessor.image_size, list(config.scale),
                                         list(config.offset), length)
    joint = images.backbone
    keep_pretrained_weights(joint, out, layout.IMAGE_TEXT_WEIGHTS,
                            lambda: load_image_text_preset(recorded_source(config), length).backbone)
    record = JointBranchRecord({"name": config.name, "source": config.source, "folder": config.folder,
                                "class": config.class_name, "weights_sha256": weights_sha256(joint)})
    image_record = JointBranchRecord({**record, "image_size": preprocessor.image_size,
                                      "feature_map": [int(images.output_shape[-1])]}) \
        if "image" in preprocessor.modalities else None
    text_record = JointBranchRecord({**record, "sequence_length": length, "hidden_dim": int(texts.output_shape[-1]),
                                     "pooling": "projection"}) if "text" in preprocessor.modalities else None
    return (images if image_record else None), image_record, (texts if text_record else None), text_record
