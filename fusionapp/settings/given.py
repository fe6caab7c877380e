"""A settings dataclass from the values a command line, config file or Python call gave."""

from __future__ import annotations

import dataclasses

from fusionapp.errors import FusionError
from fusionapp.settings.options import option_of
from fusionapp.settings.rules import NotApplicable


def given_settings(cls, values: dict):
    """Settings dataclass `cls` from the `values` given (None: not given, so the default), checked:
    a refused value raises SettingError, one given where it does not apply NotApplicable, an
    unknown name a one-line FusionError."""
    given = {name: value for name, value in values.items() if value is not None}
    try:
        settings = cls(**given)
    except TypeError as error:
        raise FusionError(str(error)) from None
    for item in dataclasses.fields(cls):
        applies = option_of(item).applies
        if item.name in given and applies is not None and not applies.test(settings):
            raise NotApplicable(item.name, applies.words)
    return settings
