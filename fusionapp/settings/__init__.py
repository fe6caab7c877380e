"""What a run is asked to do: frozen dataclasses that check their own values, their flat names as
flags, config files and keyword arguments spell them, and the rule of what `--resume` may change.

Every setting is checked here and nowhere else: the flags, `--config` files and the Python API all
build these dataclasses, so a value one of them refuses is refused by all of them.
"""

from fusionapp.settings.columns import TABULAR_KINDS, Columns, tabular_spec
from fusionapp.settings.flat import (FLAT_NAMES, applicable, apply_flat, check_applies, flat_value, given_settings,
                                     prediction_settings, requirement, setting_field)
from fusionapp.settings.model import IMAGE_BACKBONES, MODALITIES, TEXT_ENCODERS, ModelSettings, TextSettings
from fusionapp.settings.options import Applies, Option, Search, default_words, option_of
from fusionapp.settings.rules import NotApplicable, SettingError
from fusionapp.settings.run import RunSettings, settings_from_dict
from fusionapp.settings.serving import MAX_BATCH_ITEMS, ServeSettings, serve_settings
from fusionapp.settings.training import PredictionSettings, TrainingSettings

__all__ = ["Applies", "Columns", "FLAT_NAMES", "IMAGE_BACKBONES", "MAX_BATCH_ITEMS", "MODALITIES", "ModelSettings",
           "NotApplicable", "Option", "PredictionSettings", "RunSettings", "Search", "ServeSettings", "SettingError",
           "TABULAR_KINDS", "TEXT_ENCODERS", "TextSettings", "TrainingSettings", "applicable", "apply_flat",
           "check_applies", "default_words", "flat_value", "given_settings", "option_of", "prediction_settings",
           "requirement",
           "serve_settings", "setting_field", "settings_from_dict", "tabular_spec"]
