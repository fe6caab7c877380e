"""The network's shape and how text becomes its input: everything needed to rebuild the model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fusionapp.settings.conditions import (BAG, BLOCKS, CNN, EMBEDDING, IMAGE, OWN_TEXT, PRETRAINED_IMAGE, STEM,
                                          TABULAR, TEXT, TOKEN_IDS)
from fusionapp.settings.options import Search
from fusionapp.settings.rules import (SettingError, check_fields, choice, integer, integers, names, number,
                                     preset_source, switch)

MODALITIES = ("image", "text", "tabular")
TEXT_ENCODERS = ("bag", "cnn", "mean")
# "multi-kernel": the branch learnt from scratch; the others are keras.applications ImageNet models
# (fusionapp/model/backbones.py holds how each is built and where its weights come from).
IMAGE_BACKBONES = ("multi-kernel", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_v2_b0", "resnet50_v2")
BACKBONE_MIN_SIZE = 32  # keras.applications refuses smaller images


@dataclass(frozen=True)
class ModelSettings:
    modalities: tuple[str, ...] = names(
        (), options=MODALITIES, non_empty=False, help="Inputs the model uses.",
        default_words="every one the data has (training records what it resolved to)")
    image_size: int = integer(0, 16, 1024, auto="64 px, or 224 with a pretrained backbone", applies=IMAGE,
                              help="Image side in pixels.", search=Search(choices=(32, 48, 64, 96)))
    image_backbone: str = choice("multi-kernel", IMAGE_BACKBONES, applies=IMAGE,
                                 help="Image branch: multi-kernel (learnt from scratch) or a pretrained ImageNet "
                                      "model (fusionapp backbones lists them).")
    # Measured: docs, "Pretrained backbones".
    backbone_head: str = choice("pool", ("pool", "multi-kernel"), applies=PRETRAINED_IMAGE,
                                help="What turns the backbone's last feature map into the branch's features: "
                                     "global pooling alone, or a multi-kernel block before it.")
    image_stem_filters: int = integer(32, 1, applies=STEM,
                                      help="Channels of the multi-kernel branch's first, strided convolution.")
    image_kernels: tuple[int, ...] = integers((1, 3, 5), applies=BLOCKS,
                                              help="Kernel sizes of each multi-kernel block.")
    image_filters: tuple[int, ...] = integers((48, 96, 192), applies=BLOCKS,
                                              help="Output channels of each multi-kernel block, one block each.")
    image_reduction: float = number(0.5, 0.0, 1.0, applies=BLOCKS,
                                    help="1x1 convolutions before each larger kernel, with this share of the "
                                         "block's output channels (Inception's reductions); 0 feeds the larger "
                                         "kernels the full input.")
    text_encoder: str = choice("bag", TEXT_ENCODERS, applies=OWN_TEXT, search=Search(choices=TEXT_ENCODERS),
                               help="Text branch: bag (a dense layer over sublinear TF-IDF n-gram vectors), cnn "
                                    "(parallel 1-D convolutions over token ids) or mean (pooled token embeddings).")
    # fusionapp/pretrained/text_backbones.py finds it, before anything is written.
    text_backbone: str = preset_source("", applies=TEXT, metavar="NAME|PATH",
                                       help="A pretrained KerasHub text model in place of --text-encoder: a local "
                                            "preset or Hugging Face snapshot folder, or a KerasHub preset name (from "
                                            "its cache, or downloaded).")
    image_text_backbone: str = preset_source("", metavar="NAME|PATH",
                                             help="A pretrained KerasHub CLIP or SigLIP model as both the image and "
                                                  "the text branch (frozen, cached): a local preset folder, or a "
                                                  "preset name.")
    text_embedding_dim: int = integer(64, 1, applies=EMBEDDING, help="Width of the token embeddings.")
    text_widths: tuple[int, ...] = integers((2, 3, 4), applies=CNN,
                                            help="Widths of the parallel 1-D convolutions, in tokens.")
    text_filters: int = integer(64, 1, applies=CNN, help="Channels of each 1-D convolution.")
    tabular_units: int = integer(64, 1, applies=TABULAR, help="Width of the tabular branch's hidden layer.")
    branch_units: int = integer(128, 1, help="Width of each branch's output projection.",
                                search=Search(choices=(64, 128, 256)))
    fusion_units: int = integer(256, 1, help="Width of the dense layer over the concatenated branches.",
                                search=Search(choices=(128, 256, 512)))
    dropout: float = number(0.3, 0.0, 0.95, help="Dropout rate.", search=Search(0.0, 0.6))
    wide: bool = switch(True, search=Search(choices=(True, False)),
                        help="Blend in a linear model on the text's own character n-grams, the tabular values "
                             "and a --text-backbone's sentence vector, fitted after the network; its weight in the "
                             "blend is chosen on held-out rows.")
    calibrate: bool = switch(True, help="Fit one temperature on the validation rows so that confidences match "
                                        "accuracy.")
    multi_label: bool = switch(False, help="Each row has a set of labels: a sigmoid output and a tuned decision "
                                           "threshold per label, trained with binary cross-entropy.")

    def __post_init__(self):
        check_fields(self)
        if self.pretrained and 0 < self.image_size < BACKBONE_MIN_SIZE:
            raise SettingError("image_size", self.image_size,
                               f"at least {BACKBONE_MIN_SIZE} with a pretrained image backbone")
        if self.image_text_backbone and (self.pretrained or self.text_backbone):
            raise SettingError("image_text_backbone", self.image_text_backbone,
                               "alone: it is the image and the text branch both; leave out --image-backbone and "
                               "--text-backbone")

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


@dataclass(frozen=True)
class TextSettings:
    """How text becomes model input: words or characters, n-grams, vocabulary bound."""

    tokens: str = choice("auto", ("auto", "words", "chars"), flat="text_tokens", applies=OWN_TEXT,
                         default_words="auto: chars for the bag encoder, words otherwise",
                         help="Words or characters (characters suit languages written without spaces).")
    max_tokens: int = integer(20000, 10, applies=OWN_TEXT, help="Bound on the text vocabulary's size.")
    sequence_length: int = integer(64, 1, applies=TOKEN_IDS, help="Tokens kept per text.")
    ngrams: int = integer(0, 0, 8, applies=BAG, default_words="0: 5 for chars, 2 for words",
                          help="N-grams up to this length for the bag encoder.")
    # One huge cell (an unbalanced quote in a CSV) then costs only what this many characters cost.
    max_chars: int = integer(10000, 1, flat="max_text_chars", applies=TEXT,
                             help="Characters of each text the model reads; the rest is cut.")

    def __post_init__(self):
        check_fields(self)

    def resolved(self, text_encoder: str) -> "TextSettings":
        """The settings with "auto" values decided for this encoder (what config.json records)."""
        tokens = self.tokens if self.tokens != "auto" else ("chars" if text_encoder == "bag" else "words")
        ngrams = self.ngrams or (5 if tokens == "chars" else 2)
        return dataclasses.replace(self, tokens=tokens, ngrams=ngrams)
