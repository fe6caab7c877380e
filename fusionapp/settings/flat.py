"""Flat setting names, as flags, config files and Python keyword arguments spell them
(`image_col`, `epochs`, ...), and how they land in the sections of RunSettings."""

from __future__ import annotations

import dataclasses

from fusionapp.errors import FusionError
from fusionapp.settings.columns import RENAMABLE, Columns
from fusionapp.settings.model import ModelSettings, TextSettings
from fusionapp.settings.options import flat_name, option_of
from fusionapp.settings.rules import NotApplicable, SettingError
from fusionapp.settings.run import RunSettings
from fusionapp.settings.training import PredictionSettings, TrainingSettings

_SECTIONS = {"columns": Columns, "model": ModelSettings, "text": TextSettings, "training": TrainingSettings}
# Names settings had before, still read from config files and flags: the pixel cache was `cache` before 0.7.
OLD_NAMES = {"cache": ("training", "pixel_cache")}
# flat name -> (section of RunSettings, field); None: a field of RunSettings itself. In --help's order.
FLAT_NAMES = {
    **{flat_name(item): (section, item.name) for section, cls in _SECTIONS.items() for item in dataclasses.fields(cls)},
    **{flat_name(item): (None, item.name) for item in dataclasses.fields(RunSettings) if item.name not in _SECTIONS},
}
# flat name -> Columns field, of the columns evaluate and predict may rename: image_col -> image, ...
COLUMN_FLAGS = {flat_name(item): item.name for item in dataclasses.fields(Columns) if item.name in RENAMABLE}
# (section, field) -> the flat name errors use (today's name).
_FLAT_OF = {place: name for name, place in FLAT_NAMES.items()}
FLAT_NAMES.update(OLD_NAMES)


def setting_field(name: str) -> dataclasses.Field:
    """The dataclass field of a flat-named setting, with its rule and its Option."""
    section, field_name = FLAT_NAMES[name]
    cls = _SECTIONS[section] if section else RunSettings
    return next(item for item in dataclasses.fields(cls) if item.name == field_name)


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


def flat_value(settings: RunSettings, name: str):
    """The value of the flat-named setting in `settings`."""
    section, field_name = FLAT_NAMES[name]
    return getattr(getattr(settings, section) if section else settings, field_name)


def given_settings(settings: RunSettings) -> dict:
    """The flat-named values of `settings` that differ from the defaults: what was asked for."""
    defaults = RunSettings()
    return {name: flat_value(settings, name) for name in _FLAT_OF.values()
            if flat_value(settings, name) != flat_value(defaults, name)}


def applicable(values: dict) -> dict:
    """The flat-named `values` that apply alongside the rest of them (a search's proposal, a config
    shared by several runs): those that check_applies would refuse are left out."""
    settings = apply_flat(RunSettings(), values)
    rules = {name: option_of(setting_field(name)).applies for name in values}
    return {name: value for name, value in values.items() if rules[name] is None or rules[name].test(settings)}


def check_applies(settings: RunSettings, names) -> None:
    """A NotApplicable for the first of the flat-named settings `names` that means nothing with the
    rest of `settings` (--ngrams without the bag encoder): a value given there would be ignored."""
    for name in sorted(set(names) - {None}, key=list(FLAT_NAMES).index):
        applies = option_of(setting_field(name)).applies
        if applies is not None and not applies.test(settings):
            raise NotApplicable(name, applies.words)


def requirement(name: str) -> str:
    """What the flat-named setting accepts, in words, for help texts."""
    return setting_field(name).metadata["rule"].requirement


def prediction_settings(**values) -> PredictionSettings:
    """The evaluate / predict options, checked; None means the default."""
    try:
        return PredictionSettings(**{name: value for name, value in values.items() if value is not None})
    except TypeError as error:
        raise FusionError(str(error)) from None
