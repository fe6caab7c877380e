"""Flat setting names, as flags, config files and Python keyword arguments spell them
(`image_col`, `epochs`, ...), and how they land in the sections of RunSettings."""

from __future__ import annotations

import dataclasses

from fusionapp.errors import FusionError
from fusionapp.settings.columns import Columns
from fusionapp.settings.model import ModelSettings, TextSettings
from fusionapp.settings.rules import SettingError
from fusionapp.settings.run import RunSettings
from fusionapp.settings.training import PredictionSettings, TrainingSettings

# flat name -> (section of RunSettings, field name); None: a field of RunSettings itself.
FLAT_NAMES = {
    "image_col": ("columns", "image"), "text_col": ("columns", "text"), "label_col": ("columns", "label"),
    "tabular_col": ("columns", "tabular"), "split_col": ("columns", "split"), "id_col": ("columns", "id"),
    "label_sep": ("columns", "label_sep"),
    "text_tokens": ("text", "tokens"), "max_tokens": ("text", "max_tokens"),
    "sequence_length": ("text", "sequence_length"), "ngrams": ("text", "ngrams"),
    "max_text_chars": ("text", "max_chars"),
    **{f.name: ("model", f.name) for f in dataclasses.fields(ModelSettings)},
    "cache": ("training", "pixel_cache"),  # its name before 0.7, still read from config files and flags
    **{f.name: ("training", f.name) for f in dataclasses.fields(TrainingSettings)},
    "image_root": (None, "image_root"),
}
_SECTIONS = {"columns": Columns, "model": ModelSettings, "text": TextSettings, "training": TrainingSettings}
# (section, field) -> the flat name errors use: the last one listed (today's name).
_FLAT_OF = {place: name for name, place in FLAT_NAMES.items()}


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
    replaced = {}
    for section, section_changes in changes.items():
        try:
            replaced[section] = dataclasses.replace(getattr(settings, section), **section_changes)
        except SettingError as error:
            raise error.renamed(_FLAT_OF.get((section, error.name), error.name)) from None
    try:
        return dataclasses.replace(settings, **replaced, **top)
    except SettingError as error:
        raise error.renamed(_FLAT_OF.get(("training", error.name), error.name)) from None


def given_settings(settings: RunSettings) -> dict:
    """The flat-named values of `settings` that differ from the defaults: what was asked for."""
    defaults = RunSettings()
    given = {}
    for name, (section, field_name) in FLAT_NAMES.items():
        if name == _FLAT_OF[(section, field_name)]:
            value = getattr(getattr(settings, section) if section else settings, field_name)
            default = getattr(getattr(defaults, section) if section else defaults, field_name)
            if value != default:
                given[name] = value
    return given


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
