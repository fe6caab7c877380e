"""Settings for a run, as frozen dataclasses that round-trip through plain dicts (config.json)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

MODALITIES = ("image", "text", "tabular")


@dataclass(frozen=True)
class Columns:
    """Which table columns (or TFDS features) hold each input."""

    image: str = "image"
    text: str = "text"
    label: str = "label"
    tabular: tuple[str, ...] = ()
    split: str = "split"
    id: str = "id"

    @property
    def tabular_names(self) -> tuple[str, ...]:
        return tuple(tabular_spec(spec)[0] for spec in self.tabular)

    @property
    def tabular_kinds(self) -> dict[str, str]:
        """Kinds forced with `NAME:numeric` / `NAME:categorical`; the rest are inferred."""
        return {name: kind for name, kind in map(tabular_spec, self.tabular) if kind}


TABULAR_KINDS = ("numeric", "categorical")


def tabular_spec(spec: str) -> tuple[str, str | None]:
    """`price` -> ("price", None); `zip:categorical` -> ("zip", "categorical")."""
    name, _, kind = spec.rpartition(":")
    if name and kind in TABULAR_KINDS:
        return name, kind
    return spec, None


@dataclass(frozen=True)
class ModelSettings:
    """The network's shape; everything needed to rebuild it before loading weights."""

    modalities: tuple[str, ...] = MODALITIES
    image_size: int = 64
    image_stem_filters: int = 32
    image_kernels: tuple[int, ...] = (1, 3, 5)
    image_filters: tuple[int, ...] = (48, 96, 192)
    # "cnn": parallel 1-D convolutions over token ids; "mean": pooled embeddings;
    # "bag": a dense layer over TF-IDF weighted n-gram counts
    text_encoder: str = "bag"
    text_embedding_dim: int = 64
    text_widths: tuple[int, ...] = (2, 3, 4)
    text_filters: int = 64
    tabular_units: int = 64
    branch_units: int = 128
    fusion_units: int = 256
    dropout: float = 0.3


@dataclass(frozen=True)
class TextSettings:
    """How text becomes token ids: whitespace words or single characters."""

    tokens: str = "auto"  # "words", "chars", or "auto": chars for the bag encoder, words otherwise
    max_tokens: int = 20000
    sequence_length: int = 64
    ngrams: int = 0  # n-grams up to this length for the bag encoder; 0: 5 for chars, 2 for words

    def resolved(self, text_encoder: str) -> "TextSettings":
        """The settings with "auto" values decided for this encoder (what config.json records)."""
        tokens = self.tokens if self.tokens != "auto" else ("chars" if text_encoder == "bag" else "words")
        ngrams = self.ngrams or (5 if tokens == "chars" else 2)
        return dataclasses.replace(self, tokens=tokens, ngrams=ngrams)


@dataclass(frozen=True)
class TrainingSettings:
    epochs: int = 15
    batch_size: int = 64
    learning_rate: float = 2e-3
    seed: int = 0
    val_split: float = 0.15
    patience: int = 4
    class_weight: str = "none"  # "none" or "balanced"
    augment: bool = True
    on_bad_row: str = "skip"  # "skip" or "error"
    tensorboard: bool = False
    modality_dropout: float = 0.1  # share of training rows that lose their image, and their text
    tune_decisions: bool = True  # per-class offsets chosen on validation rows for macro-F1
    cache: str = ""  # "", "memory" or "disk": keep decoded images after the first epoch
    precision: str = "auto"  # "auto", "float32", "mixed_bfloat16" or "mixed_float16"
    jit: bool = False  # XLA-compile the training step
    strategy: str = "auto"  # "auto", "default", "mirrored" or "multi-worker" (tf.distribute)


@dataclass(frozen=True)
class RunSettings:
    """Everything `fusionapp train` resolved, saved as config.json beside the model."""

    columns: Columns = field(default_factory=Columns)
    model: ModelSettings = field(default_factory=ModelSettings)
    text: TextSettings = field(default_factory=TextSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    image_root: str | None = None

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


def settings_from_dict(cls, values: dict):
    """Build a settings dataclass from a dict, turning JSON lists back into tuples."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in values.items():
        if name not in known:
            continue  # settings written by a newer fusionapp are ignored, not fatal
        kwargs[name] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


# Flat setting names, as CLI flags, config files and Python keyword arguments spell them,
# -> (section of RunSettings, field name).
FLAT_NAMES = {
    "image_col": ("columns", "image"), "text_col": ("columns", "text"), "label_col": ("columns", "label"),
    "tabular_col": ("columns", "tabular"), "split_col": ("columns", "split"), "id_col": ("columns", "id"),
    "text_tokens": ("text", "tokens"), "max_tokens": ("text", "max_tokens"),
    "sequence_length": ("text", "sequence_length"), "ngrams": ("text", "ngrams"),
    **{f.name: ("model", f.name) for f in dataclasses.fields(ModelSettings)},
    **{f.name: ("training", f.name) for f in dataclasses.fields(TrainingSettings)},
    "image_root": (None, "image_root"),
}


def apply_flat(settings: RunSettings, values: dict) -> RunSettings:
    """Return `settings` with flat-named values (None = not given) put in their sections."""
    from fusionapp.errors import FusionError

    sections = {"columns": {}, "model": {}, "text": {}, "training": {}}
    top = {}
    for name, value in values.items():
        if value is None:
            continue
        if name not in FLAT_NAMES:
            raise FusionError(f"unknown setting '{name}' (known: {', '.join(sorted(FLAT_NAMES))})")
        section, field_name = FLAT_NAMES[name]
        if isinstance(value, list):
            value = tuple(value)
        (sections[section] if section else top)[field_name] = value
    return dataclasses.replace(
        settings,
        columns=dataclasses.replace(settings.columns, **sections["columns"]),
        model=dataclasses.replace(settings.model, **sections["model"]),
        text=dataclasses.replace(settings.text, **sections["text"]),
        training=dataclasses.replace(settings.training, **sections["training"]),
        **top,
    )
