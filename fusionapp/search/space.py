"""What a search tries: the settings fields that declare a `Search` range, as wide as the preset
asks, each proposed only where it applies to what was proposed before it (define-by-run, so TPE
learns conditional settings), plus the pretrained models the user named as candidates."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fusionapp.settings import RunSettings, apply_flat, option_of, setting_field
from fusionapp.settings.search import SearchSettings


@dataclass(frozen=True)
class Preset:
    fields: tuple[str, ...]  # the flat names of the settings searched, in the order they are proposed
    epochs: int  # each trial's most epochs, and its early stopping's patience, unless given
    patience: int
    ensemble_size: int  # the most distinct trials in the ensemble


_FAST = ("learning_rate", "dropout", "class_weight", "wide")
_BALANCED = ("text_encoder", "image_size", "branch_units", "fusion_units", "modality_dropout", *_FAST)
PRESETS = {
    "fast": Preset(_FAST, epochs=8, patience=3, ensemble_size=3),
    "balanced": Preset(_BALANCED, epochs=15, patience=4, ensemble_size=5),
    "best": Preset(_BALANCED, epochs=30, patience=5, ensemble_size=8),
}
# The candidate pretrained models come first: whether a text backbone is used decides whether the
# text encoder applies.
CANDIDATES = {"text_backbone": "search_text_backbone", "image_backbone": "search_image_backbone"}
# Sizes a pretrained image backbone decides itself (224 px), searched only for the multi-kernel branch.
_OWN_SIZE = ("image_size",)


def searched_fields(preset: Preset, search: SearchSettings, asked: tuple[str, ...]) -> tuple[str, ...]:
    """The flat names the search proposes: the preset's, less those the user set (a given value is
    kept in every trial), after the candidate models the user named (unless a model was given)."""
    candidates = tuple(name for name, source in CANDIDATES.items() if getattr(search, source) and name not in asked)
    return (*candidates, *(name for name in preset.fields if name not in asked))


def trial_settings(base: RunSettings, preset: Preset, search: SearchSettings, asked: tuple[str, ...],
                   modalities: tuple[str, ...], suggest) -> tuple[RunSettings, dict]:
    """(the settings of one trial, the values proposed for it). `suggest(name, rule)` proposes one
    value: `rule` is the field's Search, or a tuple of choices for a candidate model. A setting is
    proposed only where it applies to the inputs the data has (`modalities`)."""
    training = base.training
    settings = apply_flat(base, {"epochs": training.epochs if "epochs" in asked else preset.epochs,
                                 "patience": training.patience if "patience" in asked else preset.patience})
    proposed = {}
    for name in searched_fields(preset, search, asked):
        applies = option_of(setting_field(name)).applies
        reading = dataclasses.replace(settings, model=dataclasses.replace(settings.model, modalities=modalities))
        if (applies is not None and not applies.test(reading)) or (name in _OWN_SIZE and settings.model.pretrained):
            continue
        if name in CANDIDATES:
            own = "" if name == "text_backbone" else "multi-kernel"
            value = suggest(name, (own, *getattr(search, CANDIDATES[name])))
        else:
            value = suggest(name, option_of(setting_field(name)).search)
        proposed[name] = value
        settings = apply_flat(settings, {name: value})
    return settings, proposed


def optuna_suggest(trial):
    """`suggest` for trial_settings, asking an Optuna trial."""

    def suggest(name: str, rule):
        if isinstance(rule, tuple):
            return trial.suggest_categorical(name, rule)
        if rule.choices:
            return trial.suggest_categorical(name, rule.choices)
        if isinstance(rule.low, int) and isinstance(rule.high, int) and not rule.log:
            return trial.suggest_int(name, rule.low, rule.high)
        return trial.suggest_float(name, rule.low, rule.high, log=rule.log)

    return suggest
