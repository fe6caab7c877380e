"""What `train --time-limit` asks of a search: the budget, how wide the search is, where its study
lives, and the pretrained models it may try besides the model's own encoders. The settings of each
model it trains are RunSettings; these are of the search itself, and config files, flags and the
Python API name them as they do the rest."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fusionapp.settings.given import given_settings
from fusionapp.settings.model import IMAGE_BACKBONES
from fusionapp.settings.options import Applies
from fusionapp.settings.rules import (Rule, SettingError, _rule_field, check_fields, choice, duration,
                                     names)

PRESETS = ("fast", "balanced", "best")
SEARCHING = Applies("with --time-limit", lambda search: search.time_limit > 0)
STORAGE_SCHEMES = ("sqlite:///", "postgresql://", "postgresql+psycopg2://", "mysql://", "mysql+pymysql://")


def storage_url(default: str, schemes: tuple[str, ...], **about):
    """A database URL starting with one of `schemes`; "" for the default store."""
    requirement = "a storage URL: " + " or ".join(f"{scheme}..." for scheme in schemes[:2])

    def coerce(name, value):
        if not isinstance(value, str) or (value.strip() and not value.strip().startswith(schemes)):
            raise SettingError(name, value, requirement)
        return value.strip()

    return _rule_field(default, Rule(requirement, coerce), about)


@dataclass(frozen=True)
class SearchSettings:
    time_limit: float = duration(metavar="DURATION", default_words="0: no search, train the one model the flags "
                                                                   "describe",
                                 help="Search for the best model for the data within this wall time (the whole "
                                      "command: trials, ensemble, calibration and reports), and save the ensemble "
                                      "of the best trials as the run.")
    preset: str = choice("balanced", PRESETS, applies=SEARCHING,
                         help="How wide the search is: fast (learning rate, dropout, class weights, the wide "
                              "path; trials of 8 epochs at most, an ensemble of 3), balanced (also the text encoder, "
                              "widths, image size, modality dropout; 15 epochs, 5), best (as balanced; 30 epochs, 8).")
    search_storage: str = storage_url("", STORAGE_SCHEMES, applies=SEARCHING, metavar="URL",
                                      default_words="SQLite in RUN/search",
                                      help="Where the search's study lives: an Optuna RDB storage URL (PostgreSQL) "
                                           "that several processes or machines join with `fusionapp search-join`.")
    search_text_backbone: tuple[str, ...] = names((), non_empty=False, applies=SEARCHING, metavar="PATHS",
                                                  help="Pretrained text models (local preset or snapshot folders, "
                                                       "comma-separated) the search may try in place of the "
                                                       "model's own text encoder, in every preset.")
    search_image_backbone: tuple[str, ...] = names((), IMAGE_BACKBONES, non_empty=False, applies=SEARCHING,
                                                   metavar="NAMES",
                                                   help="Pretrained image backbones (fusionapp backbones lists "
                                                        "them) the search may try in place of the multi-kernel "
                                                        "branch, in every preset.")

    def __post_init__(self):
        check_fields(self)

    @property
    def searching(self) -> bool:
        return self.time_limit > 0


SEARCH_NAMES = tuple(item.name for item in dataclasses.fields(SearchSettings))


def search_settings(values: dict) -> SearchSettings:
    """The search settings among flat-named `values` (None = not given), checked: a refused value
    raises SettingError; one given without --time-limit, NotApplicable."""
    return given_settings(SearchSettings, {name: value for name, value in values.items() if name in SEARCH_NAMES})
