"""The network's shape and how text becomes its input: everything needed to rebuild the model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fusionapp.settings.rules import (SettingError, check_fields, choice, integer, integers, names, number,
                                     preset_source, switch)

MODALITIES = ("image", "text", "tabular")
TEXT_ENCODERS = ("bag", "cnn", "mean")
# "multi-kernel": the branch learnt from scratch; the others are keras.applications ImageNet models
# (fusionapp/model/backbones.py holds how each is built and where its weights come from).
IMAGE_BACKBONES = ("multi-kernel", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_v2_b0", "resnet50_v2")
BACKBONE_MIN_SIZE = 32  # keras.applications refuses smaller images
# The settings of the multi-kernel blocks, which a pretrained backbone with the pooling head has none of.
BLOCK_SETTINGS = ("image_kernels", "image_filters", "image_reduction", "image_stem_filters")


@dataclass(frozen=True)
class ModelSettings:
    # empty: every modality the data has (training records what it resolved to)
    modalities: tuple[str, ...] = names((), options=MODALITIES, non_empty=False)
    image_size: int = integer(0, 16, 1024, auto="64 px, or 224 with a pretrained backbone")
    image_backbone: str = choice("multi-kernel", IMAGE_BACKBONES)
    # what turns a pretrained backbone's last feature map into the branch's features: global pooling
    # alone, or a multi-kernel block before it (measured: docs, "Pretrained backbones")
    backbone_head: str = choice("pool", ("pool", "multi-kernel"))
    image_stem_filters: int = integer(32, 1)
    image_kernels: tuple[int, ...] = integers((1, 3, 5))
    image_filters: tuple[int, ...] = integers((48, 96, 192))
    # 1x1 convolutions before each larger kernel, with this share of the branch's output channels
    # (Inception's reductions); 0 feeds the larger kernels the full input instead
    image_reduction: float = number(0.5, 0.0, 1.0)
    # "bag": a dense layer over sublinear TF-IDF n-gram vectors; "cnn": parallel 1-D convolutions
    # over token ids; "mean": pooled embeddings
    text_encoder: str = choice("bag", TEXT_ENCODERS)
    # a pretrained KerasHub text model (a local preset folder, a local Hugging Face snapshot folder or
    # a KerasHub preset name) in place of the text encoder; "" for none (fusionapp/pretrained/text_backbones.py)
    text_backbone: str = preset_source("")
    # a pretrained joint image-text model (CLIP, SigLIP: a preset folder or name) as both the image and
    # the text branch; "" for none
    image_text_backbone: str = preset_source("")
    text_embedding_dim: int = integer(64, 1)
    text_widths: tuple[int, ...] = integers((2, 3, 4))
    text_filters: int = integer(64, 1)
    tabular_units: int = integer(64, 1)
    branch_units: int = integer(128, 1)
    fusion_units: int = integer(256, 1)
    dropout: float = number(0.3, 0.0, 0.95)
    # a linear model on the TF-IDF text features and tabular values, fitted after the network and
    # blended with its logits by a weight chosen on held-out rows
    wide: bool = switch(True)
    # one temperature dividing the logits, fitted on held-out rows for calibrated probabilities
    calibrate: bool = switch(True)
    # several labels per row: a sigmoid output per label, trained with binary cross-entropy, and a
    # decision threshold per label
    multi_label: bool = switch(False)

    def __post_init__(self):
        check_fields(self)
        if self.pretrained and 0 < self.image_size < BACKBONE_MIN_SIZE:
            raise SettingError("image_size", self.image_size,
                               f"at least {BACKBONE_MIN_SIZE} with a pretrained image backbone")
        if (self.text_backbone or self.image_text_backbone) and self.text_encoder != _DEFAULTS["text_encoder"]:
            raise SettingError("text_encoder", self.text_encoder, "left out with a pretrained text model, which "
                               "replaces it")
        if self.image_text_backbone and (self.pretrained or self.text_backbone):
            raise SettingError("image_text_backbone", self.image_text_backbone,
                               "alone: it is the image and the text branch both; leave out --image-backbone and "
                               "--text-backbone")
        if self.pretrained:
            unused = BLOCK_SETTINGS if self.backbone_head == "pool" else ("image_stem_filters",)
            for name in unused:
                if getattr(self, name) != _DEFAULTS[name]:
                    raise SettingError(name, getattr(self, name), "left out with a pretrained backbone"
                                       + (" and --backbone-head pool, which has no multi-kernel block"
                                          if self.backbone_head == "pool" else ", which replaces the stem"))

    @property
    def pretrained(self) -> bool:
        """Whether the image branch starts from a keras.applications backbone."""
        return self.image_backbone != "multi-kernel"

    @property
    def starts_pretrained(self) -> bool:
        """Whether any branch starts from a pretrained model whose features the feature cache keeps."""
        return self.pretrained or bool(self.text_backbone or self.image_text_backbone)

    def resolved(self) -> "ModelSettings":
        """The settings with "auto" values decided (what config.json records)."""
        # A joint image-text model's image size is its own, read from its preset when training starts.
        return dataclasses.replace(self, image_size=self.image_size or (
            0 if self.image_text_backbone else 224 if self.pretrained else 64))


_DEFAULTS = {item.name: item.default for item in dataclasses.fields(ModelSettings)}


@dataclass(frozen=True)
class TextSettings:
    """How text becomes model input: words or characters, n-grams, vocabulary bound."""

    tokens: str = choice("auto", ("auto", "words", "chars"))  # auto: chars for the bag encoder, words otherwise
    max_tokens: int = integer(20000, 10)
    sequence_length: int = integer(64, 1)
    ngrams: int = integer(0, 0, 8)  # n-grams up to this length for the bag encoder; 0: 5 for chars, 2 for words
    # characters of a text the model reads; the rest is cut, so one huge cell (an unbalanced quote
    # in a CSV) costs what this many characters cost
    max_chars: int = integer(10000, 1)

    def __post_init__(self):
        check_fields(self)

    def resolved(self, text_encoder: str) -> "TextSettings":
        """The settings with "auto" values decided for this encoder (what config.json records)."""
        tokens = self.tokens if self.tokens != "auto" else ("chars" if text_encoder == "bag" else "words")
        ngrams = self.ngrams or (5 if tokens == "chars" else 2)
        return dataclasses.replace(self, tokens=tokens, ngrams=ngrams)
