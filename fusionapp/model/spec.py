"""What a network is built for: the sizes of its inputs and head, and what it reads of the pretrained
models it starts from. With the model settings (fusionapp.settings.ModelSettings), the whole of what
rebuilds a FusionClassifier; saved in model.keras under the key "inputs", as the plain dict earlier
fusionapp versions wrote, and read back from those dicts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fusionapp.preprocessing.configs import TextInput


@dataclass(frozen=True)
class NetworkSpec:
    num_classes: int  # logits: one per class, or per label (multi-label)
    image_size: int  # the side of the square uint8 images the image branch reads
    # === Text (every field unset without text) ===
    text_input: TextInput | None = None  # how text arrives
    text_width: int = 0  # TF-IDF input: the vectors' width; token ids: the vocabulary's size
    sequence_length: int | None = None  # token ids per text (token ids, backbone)
    # a pretrained text backbone's architecture (serialized KerasHub backbone, JSON text), read on
    # token ids and `text_mask`
    text_backbone: str | None = None
    # the width of that backbone's pooled vectors, when the network reads them (computed once by
    # the feature cache) instead of token ids
    text_features: int | None = None
    fine_tune_text: int = 0  # how many top transformer layers of the text backbone train
    text_lora: int = 0  # the rank of the LoRA adapters trained on the text backbone (0: none)
    # how that backbone's last layer becomes one vector: "mean", "cls" or "max" over the text's own
    # tokens, "+l2" scaled to unit length after (a sentence-transformers snapshot's own); None: mean
    text_pooling: str | None = None
    # the wide path's own n-gram vocabulary; None in models before 0.9, whose wide path read the
    # network's TF-IDF text
    wide_width: int | None = None
    # whether the wide path reads the text backbone's pooled vector (scaled to unit length) beside
    # its n-grams; False in models before 0.12
    wide_embedding: bool = False
    # === Tabular ===
    tabular_width: int | None = None  # encoded values per row (Preprocessor.tabular_widths); None: no tabular
    # === Image ===
    # the shape of a pretrained image backbone's feature map, when the network reads it (computed
    # once by the feature cache) instead of images
    image_features: tuple[int, ...] | None = None
    fine_tune: int = 0  # how many top layers of the pretrained image backbone train
    # a joint image-text model's architecture (CLIP, SigLIP; JSON text): its encoders make both
    # branches' vectors, from pixels scaled as x * image_scale + image_offset (per channel)
    image_text_backbone: str | None = None
    image_scale: tuple[float, ...] | None = None
    image_offset: tuple[float, ...] | None = None

    def __post_init__(self):
        if self.text_input is not None:
            object.__setattr__(self, "text_input", TextInput(self.text_input))
        for name in ("image_features", "image_scale", "image_offset"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value) if isinstance(value, (list, tuple)) else (value,) * 3)

    @classmethod
    def for_preprocessor(cls, preprocessor) -> "NetworkSpec":
        """The spec of a network that reads what `preprocessor` (fusionapp.preprocessing.Preprocessor)
        encodes: images, or through a joint model's encoders; text as it encodes it; tabular values."""
        fields = {}
        image_text, text = preprocessor.image_text, preprocessor.text
        if image_text is not None:
            fields.update(image_text_backbone=image_text.backbone, image_scale=image_text.scale,
                          image_offset=image_text.offset)
        if text is not None:
            fields.update(text_input=text.input, text_width=text.width, sequence_length=text.sequence_length)
            if text.input == TextInput.BACKBONE and image_text is None:
                fields.update(text_backbone=text.backbone, text_pooling=text.pooling)
            if preprocessor.wide_text is not None:
                fields["wide_width"] = preprocessor.wide_text.vocabulary_size
                fields["wide_embedding"] = text.input == TextInput.BACKBONE and image_text is None
        if "tabular" in preprocessor.modalities:
            fields["tabular_width"] = sum(preprocessor.tabular_widths())
        return cls(preprocessor.num_classes, preprocessor.image_size, **fields)

    @classmethod
    def from_config(cls, values: dict) -> "NetworkSpec":
        """The spec a saved dict holds (of this or an earlier version); keys a newer one wrote are ignored."""
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})

    def get_config(self) -> dict:
        """Plain JSON: the fields set (not None, not 0), tuples as lists."""
        config = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None or (value == 0 and field.default == 0):
                continue
            config[field.name] = value.value if isinstance(value, TextInput) else \
                list(value) if isinstance(value, tuple) else value
        return config
