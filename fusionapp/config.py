"""Settings for a run, as frozen dataclasses that check their own values and round-trip through
plain dicts (config.json).

Every setting is checked here and nowhere else: the flags, `--config` files and the Python API all
build these dataclasses, so a value one of them refuses is refused by all of them. Each field's
rule (fusionapp/setting_rules.py: `choice`, `integer`, `number`, ...) sits beside its default;
`requirement(name)` words it for help texts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from fusionapp.errors import FusionError
from fusionapp.setting_rules import (SettingError, check_fields, choice, column, integer, integers, names, number,
                                     separator, switch, weights_source)

MODALITIES = ("image", "text", "tabular")
TABULAR_KINDS = ("numeric", "categorical")


# === The settings ===
@dataclass(frozen=True)
class Columns:
    """Which table columns (or TFDS features) hold each input."""

    image: str = column("image")
    text: str = column("text")
    label: str = column("label")
    tabular: tuple[str, ...] = names((), non_empty=False)
    split: str = column("split")
    id: str = column("id")
    # with a multi-label model: what joins the labels of a row in the label column (a JSON list
    # is read as a set too), and in the predicted_labels column of predictions
    label_sep: str = separator("|")

    def __post_init__(self):
        check_fields(self)
        seen = set()
        for spec in self.tabular:
            name, kind = tabular_spec(spec)
            if name in seen:
                raise SettingError("tabular", self.tabular, f"a list of different columns ('{name}' is named twice)")
            if name in (self.label, self.image, self.text):
                raise SettingError("tabular", self.tabular,
                                   f"a list of columns other than the image, text and label columns ('{name}')")
            seen.add(name)

    @property
    def tabular_names(self) -> tuple[str, ...]:
        return tuple(tabular_spec(spec)[0] for spec in self.tabular)

    @property
    def tabular_kinds(self) -> dict[str, str]:
        """Kinds forced with `NAME:numeric` / `NAME:categorical`; the rest are inferred."""
        return {name: kind for name, kind in map(tabular_spec, self.tabular) if kind}


def tabular_spec(spec: str) -> tuple[str, str | None]:
    """`price` -> ("price", None); `zip:categorical` -> ("zip", "categorical")."""
    name, _, kind = spec.rpartition(":")
    if name and kind in TABULAR_KINDS:
        return name, kind
    return spec, None


TEXT_ENCODERS = ("bag", "cnn", "mean")
# "multi-kernel": the branch learnt from scratch; the others are keras.applications ImageNet models
# (fusionapp/model/backbones.py holds how each is built and where its weights come from).
IMAGE_BACKBONES = ("multi-kernel", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_v2_b0", "resnet50_v2")
BACKBONE_MIN_SIZE = 32  # keras.applications refuses smaller images


@dataclass(frozen=True)
class ModelSettings:
    """The network's shape; everything needed to rebuild it before loading weights."""

    # empty: every modality the data has (training records what it resolved to)
    modalities: tuple[str, ...] = names((), options=MODALITIES, non_empty=False)
    image_size: int = integer(0, 16, 1024, auto="64 px, or 224 with a pretrained backbone")
    image_backbone: str = choice("multi-kernel", IMAGE_BACKBONES)
    # what turns a pretrained backbone's last feature map into the branch's features: global pooling
    # alone, or a multi-kernel block before it (measured: README, "Pretrained backbones")
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
    text_embedding_dim: int = integer(64, 1)
    text_widths: tuple[int, ...] = integers((2, 3, 4))
    text_filters: int = integer(64, 1)
    tabular_units: int = integer(64, 1)
    branch_units: int = integer(128, 1)
    fusion_units: int = integer(256, 1)
    dropout: float = number(0.3, 0.0, 0.95)
    # a linear model on the TF-IDF text features and tabular values, fitted after the network and
    # blended with its logits by a weight chosen on the validation rows
    wide: bool = switch(True)
    # one temperature dividing the logits, fitted on the validation rows for calibrated probabilities
    calibrate: bool = switch(True)
    # several labels per row: a sigmoid output per label, trained with binary cross-entropy, and a
    # decision threshold per label
    multi_label: bool = switch(False)

    def __post_init__(self):
        check_fields(self)
        if self.pretrained and 0 < self.image_size < BACKBONE_MIN_SIZE:
            raise SettingError("image_size", self.image_size,
                               f"at least {BACKBONE_MIN_SIZE} with a pretrained image backbone")

    @property
    def pretrained(self) -> bool:
        """Whether the image branch starts from a keras.applications backbone."""
        return self.image_backbone != "multi-kernel"

    def resolved(self) -> "ModelSettings":
        """The settings with "auto" values decided (what config.json records)."""
        return dataclasses.replace(self, image_size=self.image_size or (224 if self.pretrained else 64))


@dataclass(frozen=True)
class TextSettings:
    """How text becomes model input: words or characters, n-grams, vocabulary bound."""

    tokens: str = choice("auto", ("auto", "words", "chars"))  # auto: chars for the bag encoder, words otherwise
    max_tokens: int = integer(20000, 10)
    sequence_length: int = integer(64, 1)
    ngrams: int = integer(0, 0, 8)  # n-grams up to this length for the bag encoder; 0: 5 for chars, 2 for words

    def __post_init__(self):
        check_fields(self)

    def resolved(self, text_encoder: str) -> "TextSettings":
        """The settings with "auto" values decided for this encoder (what config.json records)."""
        tokens = self.tokens if self.tokens != "auto" else ("chars" if text_encoder == "bag" else "words")
        ngrams = self.ngrams or (5 if tokens == "chars" else 2)
        return dataclasses.replace(self, tokens=tokens, ngrams=ngrams)


PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("auto", "default", "mirrored", "multi-worker")
ON_BAD_ROW = ("skip", "error")


@dataclass(frozen=True)
class TrainingSettings:
    epochs: int = integer(15, 1)
    batch_size: int = integer(64, 1)
    learning_rate: float = number(2e-3, 0.0, 10.0, low_open=True)
    seed: int = integer(0, 0)
    val_split: float = number(0.15, 0.0, 1.0, low_open=True, high_open=True)
    patience: int = integer(4, 1)
    class_weight: str = choice("balanced", ("none", "balanced"))
    augment: bool = switch(True)
    on_bad_row: str = choice("skip", ON_BAD_ROW)
    tensorboard: bool = switch(False)
    # share of training rows that lose their image, and (separately) their text; never both
    modality_dropout: float = number(0.3, 0.0, 0.5)
    tune_decisions: bool = switch(True)  # per-class offsets chosen on validation rows for macro-F1
    cache: str = choice("none", ("none", "memory", "disk"))  # keep decoded images after the first pass
    precision: str = choice("auto", PRECISIONS)
    jit: bool = switch(False)  # XLA-compile the training step
    strategy: str = choice("auto", STRATEGIES)  # tf.distribute
    # where a pretrained backbone's weights come from: Keras' cache ($KERAS_HOME/models), random, a file
    backbone_weights: str = weights_source("imagenet")
    # compute each image's backbone features once (frozen backbone) and reuse them across epochs and runs
    feature_cache: bool = switch(True)
    fine_tune: int = integer(0, 0)  # top backbone layers unfrozen in a second phase; 0: none
    fine_tune_epochs: int = integer(5, 1)
    fine_tune_learning_rate: float = number(2e-4, 0.0, 10.0, low_open=True)
    # multi-label: labels on fewer training rows than this are reported and dropped
    min_label_count: int = integer(2, 1)

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True)
class PredictionSettings:
    """The options of `evaluate` and `predict`."""

    batch_size: int = integer(256, 1)
    on_bad_row: str = choice("skip", ON_BAD_ROW)
    top_k: int = integer(1, 1)

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True)
class RunSettings:
    """Everything `fusionapp train` resolved, saved as config.json beside the model."""

    columns: Columns = field(default_factory=Columns)
    model: ModelSettings = field(default_factory=ModelSettings)
    text: TextSettings = field(default_factory=TextSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    image_root: str | None = None

    def __post_init__(self):
        if self.image_root is not None and not isinstance(self.image_root, str):
            raise SettingError("image_root", self.image_root, "a folder path")
        if self.training.fine_tune and not self.model.pretrained:
            raise SettingError("fine_tune", self.training.fine_tune, "0 unless --image-backbone names a pretrained "
                               "backbone (the multi-kernel branch is trained whole)")
        if self.training.fine_tune and self.model.modalities and "image" not in self.model.modalities:
            raise SettingError("fine_tune", self.training.fine_tune, "0 when the model reads no image")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "RunSettings":
        return cls(
            columns=settings_from_dict(Columns, values.get("columns", {})),
            model=settings_from_dict(ModelSettings, values.get("model", {})),
            text=settings_from_dict(TextSettings, values.get("text", {})),
            training=settings_from_dict(TrainingSettings, values.get("training", {})),
            image_root=values.get("image_root"),
        )


# What a dict saved before a setting existed meant by leaving it out, where that differs from
# today's default: models of fusionapp 0.3.0 have no wide path, those before 0.5.0 no temperature.
ABSENT_FROM_SAVED = {ModelSettings: {"wide": False, "calibrate": False}}


def settings_from_dict(cls, values: dict):
    """Build a settings dataclass from a saved dict; names a newer fusionapp wrote are ignored."""
    known = {f.name for f in dataclasses.fields(cls)}
    values = {**ABSENT_FROM_SAVED.get(cls, {}), **values}
    return cls(**{name: value for name, value in values.items() if name in known})


# Flat setting names, as CLI flags, config files and Python keyword arguments spell them,
# -> (section of RunSettings, field name).
FLAT_NAMES = {
    "image_col": ("columns", "image"), "text_col": ("columns", "text"), "label_col": ("columns", "label"),
    "tabular_col": ("columns", "tabular"), "split_col": ("columns", "split"), "id_col": ("columns", "id"),
    "text_tokens": ("text", "tokens"), "max_tokens": ("text", "max_tokens"),
    "label_sep": ("columns", "label_sep"),
    "sequence_length": ("text", "sequence_length"), "ngrams": ("text", "ngrams"),
    **{f.name: ("model", f.name) for f in dataclasses.fields(ModelSettings)},
    **{f.name: ("training", f.name) for f in dataclasses.fields(TrainingSettings)},
    "image_root": (None, "image_root"),
}
_SECTIONS = {"columns": Columns, "model": ModelSettings, "text": TextSettings, "training": TrainingSettings}


def apply_flat(settings: RunSettings, values: dict) -> RunSettings:
    """Return `settings` with flat-named values (None = not given) put in their sections and checked.

    A refused value raises SettingError under its flat name; an unknown name raises FusionError.
    Naming a label separator asks for a multi-label model, unless `multi_label` is given too.
    """
    if values.get("label_sep") is not None and values.get("multi_label") is None:
        values = {**values, "multi_label": True}
    changes = {section: {} for section in _SECTIONS}
    top = {}
    for name, value in values.items():
        if value is None:
            continue
        if name not in FLAT_NAMES:
            raise FusionError(f"unknown setting '{name}' (known: {', '.join(sorted(FLAT_NAMES))})")
        section, field_name = FLAT_NAMES[name]
        (changes[section] if section else top)[field_name] = value
    flat = {(section, field_name): name for name, (section, field_name) in FLAT_NAMES.items()}
    replaced = {}
    for section, section_changes in changes.items():
        try:
            replaced[section] = dataclasses.replace(getattr(settings, section), **section_changes)
        except SettingError as error:
            raise error.renamed(flat.get((section, error.name), error.name)) from None
    return dataclasses.replace(settings, **replaced, **top)


def requirement(name: str) -> str:
    """What the flat-named setting accepts, in words, for help texts."""
    section, field_name = FLAT_NAMES[name]
    if section is None:
        return "a folder path"
    item = next(f for f in dataclasses.fields(_SECTIONS[section]) if f.name == field_name)
    return item.metadata["rule"].requirement


def prediction_settings(**values) -> PredictionSettings:
    """The evaluate / predict options, checked; None means the default."""
    try:
        return PredictionSettings(**{name: value for name, value in values.items() if value is not None})
    except TypeError as error:
        raise FusionError(str(error)) from None
