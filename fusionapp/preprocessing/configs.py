"""The preprocessor's per-input configs: what it learnt or was given about each input, small enough to
sit in the model file's config. The large state (vocabularies, idf weights, statistics) is layer
state of the preprocessor instead.

Each config is written into model.keras as the plain JSON dict earlier fusionapp versions wrote
(`to_config`), and read back from those dicts (`from_config`), so model files of every version load.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass


class TextInput(enum.StrEnum):
    """How text reaches the network (a str, so it compares equal to, and is saved as, its value)."""

    TF_IDF = "tf_idf"  # sublinear TF-IDF n-gram vectors at unit length, `vocabulary_size` wide (bag encoder)
    TOKEN_IDS = "token_ids"  # a learnt vocabulary's token ids, `sequence_length` of them (cnn, mean encoders)
    BACKBONE = "backbone"  # a pretrained text model's tokenizer: its token ids (and their padding mask)


def _from_json(cls, values: dict, renamed: dict[str, str] | None = None):
    """`cls` from a saved dict: keys renamed to their fields, keys a newer fusionapp wrote ignored."""
    renamed = renamed or {}
    known = {field.name for field in dataclasses.fields(cls)}
    values = {renamed.get(key, key): value for key, value in values.items()}
    return cls(**{key: value for key, value in values.items() if key in known})


def _to_json(config, renamed: dict[str, str] | None = None) -> dict:
    """A config as its saved dict: fields under their saved keys, tuples as lists, unset (None) ones left out."""
    saved = {field: key for key, field in (renamed or {}).items()}
    return {saved.get(field.name, field.name): list(value) if isinstance(value, tuple) else value
            for field in dataclasses.fields(config) if (value := getattr(config, field.name)) is not None}


class _SavedForm(Mapping):
    """Read-only access by the saved keys (`config["output"]`, `config.get("categories")`), as the
    dicts of earlier versions gave it, so code written against them keeps working. fusionapp itself
    reads the typed fields."""

    def __getitem__(self, key):
        return self.to_config()[key]

    def __iter__(self):
        return iter(self.to_config())

    def __len__(self):
        return len(self.to_config())


@dataclass(frozen=True)
class TextConfig(_SavedForm):
    """How the preprocessor cuts and encodes text; saved under the key "text"."""

    input: TextInput  # saved as "output": what `encode_text_inputs` gives the network
    sequence_length: int  # token ids per text (token_ids, backbone); recorded, unused, for tf_idf
    max_chars: int | None = None  # characters of a text read, the rest cut; None (early models): all
    # A learnt vocabulary (tf_idf, token_ids): its tokens ("words" or "chars"), the longest n-gram,
    # and its size with the special slots (out-of-vocabulary; padding too for token ids), which is
    # the TF-IDF vectors' width or the range of token ids.
    tokens: str | None = None
    ngrams: int | None = None
    vocabulary_size: int | None = None
    # A pretrained text model (backbone): its tokenizer (a serialized KerasHub preprocessor, as JSON
    # text); and, unless it is a joint image-text model's text encoder (whose architecture is the
    # ImageTextConfig's), its architecture and where the preset was found (the fields of
    # fusionapp.pretrained.text_backbones.TextBackboneSource: given, kind, folder).
    tokenizer: str | None = None
    backbone: str | None = None
    name: str | None = None
    source: str | None = None
    folder: str | None = None
    # how the backbone's last layer becomes one vector (fusionapp.model.pretrained_text); None: mean
    pooling: str | None = None

    RENAMED = {"output": "input"}

    def __post_init__(self):
        object.__setattr__(self, "input", TextInput(self.input))

    @property
    def width(self) -> int:
        """The learnt vocabulary's size (the TF-IDF vectors' width); 0 with a pretrained model."""
        return self.vocabulary_size or 0

    @classmethod
    def from_config(cls, values: dict) -> "TextConfig":
        return _from_json(cls, values, cls.RENAMED)

    def to_config(self) -> dict:
        return {**_to_json(self, self.RENAMED), "output": self.input.value}


@dataclass(frozen=True)
class WideTextConfig(_SavedForm):
    """The wide path's own n-grams (fusionapp/posthoc/wide.py); saved under the key "wide_text"."""

    ngrams: int  # character n-grams up to this length
    vocabulary_size: int  # n-grams kept, plus the out-of-vocabulary slot (which weighs 0)
    min_documents: int | None = None  # an n-gram is kept when at least this many texts hold it
    tokens: str = "chars"

    @classmethod
    def from_config(cls, values: dict) -> "WideTextConfig":
        return _from_json(cls, values)

    def to_config(self) -> dict:
        return _to_json(self)


@dataclass(frozen=True)
class TabularColumn(_SavedForm):
    """One tabular column; saved as one entry of the list under the key "tabular"."""

    name: str  # the table's column name
    kind: str  # "numeric" (normalised value and a missing flag) or "categorical" (one-hot)
    # a categorical column's categories as adapted (None for a numeric one); unknown and missing
    # cells share the one-hot's extra slot
    categories: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.categories is not None:
            object.__setattr__(self, "categories", tuple(self.categories))

    @property
    def width(self) -> int:
        """How many values `Preprocessor.encode_tabular` gives the column."""
        return 2 if self.kind == "numeric" else len(self.categories or ()) + 1

    @classmethod
    def from_config(cls, values: dict) -> "TabularColumn":
        return _from_json(cls, values)

    def to_config(self) -> dict:
        return _to_json(self)


@dataclass(frozen=True)
class ImageTextConfig(_SavedForm):
    """A joint image-text model (CLIP, SigLIP: both branches' encoders); saved under "image_text"."""

    backbone: str  # its serialized architecture, as JSON text
    scale: tuple[float, ...]  # pixel (0-255) x scale + offset, per channel, as its image converter computes
    offset: tuple[float, ...]
    class_name: str | None = None  # saved as "class": the KerasHub backbone class
    # where the preset was found (TextBackboneSource's given, kind, folder)
    name: str | None = None
    source: str | None = None
    folder: str | None = None

    RENAMED = {"class": "class_name"}

    def __post_init__(self):
        object.__setattr__(self, "scale", tuple(float(v) for v in self.scale))
        object.__setattr__(self, "offset", tuple(float(v) for v in self.offset))

    @classmethod
    def from_config(cls, values: dict) -> "ImageTextConfig":
        return _from_json(cls, values, cls.RENAMED)

    def to_config(self) -> dict:
        return _to_json(self, self.RENAMED)
