"""Command-line options made from the settings' own fields (fusionapp.settings): each field's flat name
is the flag, and its help, rule, default and metavar are what --help shows. No option of a setting is
written by hand, so the flags, config files, Python API and docs/cli.md cannot drift apart.

Every option defaults to None, meaning "not given": the settings decide the default, and a value
given where it does not apply can be told from one left alone.
"""

from __future__ import annotations

import dataclasses

import click

from fusionapp.settings import FLAT_NAMES, PredictionSettings, SettingError, default_words, option_of, setting_field
from fusionapp.settings.flat import COLUMN_FLAGS, OLD_NAMES

# What evaluate and predict say of a column or image root they take from the run.
FROM_THE_RUN = "the run's own (as given to train)"


def _click_option(name: str, item: dataclasses.Field, default: str | None = None):
    """The click option of the setting `item`, flat-named `name`; `default` replaces its default's words."""
    option, rule = option_of(item), item.metadata["rule"]
    flag = "--" + name.replace("_", "-")
    default = default or default_words(item)
    applies = f"; applies {option.applies.words}" if option.applies else ""
    if rule.kind is bool:
        return click.option(f"{flag}/--no-{flag[2:]}", name, default=None,
                            help=f"{option.help} [default: {default}{applies}]")
    words = f"{rule.requirement}; default: {default}{applies}"
    extra = {"is_flag": False, "flag_value": option.flag_value} if option.flag_value is not None else {}
    return click.option(flag, name, type=rule.kind, multiple=option.multiple, metavar=option.metavar,
                        help=f"{option.help} [{words}]", **extra)


def _decorate(function, options):
    for option in reversed(options):
        function = option(function)
    return function


def train_options(function):
    """Every setting of a run (fusionapp.settings.RunSettings), in FLAT_NAMES' order."""
    names = [name for name in FLAT_NAMES if name not in OLD_NAMES]
    return _decorate(function, [_click_option(name, setting_field(name)) for name in names])


def run_column_options(function):
    """The column names and image root of evaluate and predict: the run's own unless given."""
    return _decorate(function, [_click_option(name, setting_field(name), FROM_THE_RUN)
                                for name in [*COLUMN_FLAGS, "image_root"]])


def table_options(function):
    """Every column name, the image root and --multi-label: how a table is read without a run."""
    names = [name for name, (section, _) in FLAT_NAMES.items() if section == "columns" and name not in OLD_NAMES]
    return _decorate(function, [_click_option(name, setting_field(name)) for name in
                                [*names, "image_root", "multi_label"]])


def fields_options(cls, names: tuple[str, ...] | None = None):
    """A decorator adding the options of settings dataclass `cls` (its fields `names`, or all)."""
    items = [item for item in dataclasses.fields(cls) if names is None or item.name in names]
    return lambda function: _decorate(function, [_click_option(item.name, item) for item in items])


def prediction_options(*names):
    return fields_options(PredictionSettings, names)


def usage_error(error: SettingError) -> click.UsageError:
    """A refused flag value as click's usage error (exit code 2)."""
    return click.BadParameter(f"{error.value!r}: must be {error.requirement}", param_hint=f"'--{error.option}'")
