"""What each setting tells the people and programs that set it: its help text, its flat name (the
flag, config key and keyword argument), when it applies, and the range a search may try. The field
factories of fusionapp.settings.rules attach one Option to every field; the command line, the config
files, the docs and the search read them from there and write none of it again."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Applies:
    """When a setting means something. `test(run_settings)` says whether it does for these
    RunSettings; `words` finish the refusal "--NAME applies ...", e.g. "to --text-encoder bag"."""

    words: str
    test: Callable


@dataclass(frozen=True)
class Search:
    """What a search over settings may try for one field: numbers from `low` to `high` (on a log
    scale with `log`), or one of `choices`."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()

    def __post_init__(self):
        if not self.choices and (self.low is None or self.high is None or self.low >= self.high):
            raise ValueError("a search range needs choices, or low < high")


@dataclass(frozen=True)
class Option:
    """How a field is offered: `help` (one sentence, without its default or rule, which are added),
    `flat` (its flat name where it is not the field's own: `image_col` for Columns.image),
    `default_words` (what the default means, where its value does not say: "5 for chars, 2 for
    words"), `metavar`, `flag_value` (the value of the flag given without one: `--fine-tune` alone),
    `multiple` (a repeatable flag), `applies` and `search`."""

    help: str = ""
    flat: str | None = None
    default_words: str | None = None
    metavar: str | None = None
    flag_value: object = None
    multiple: bool = False
    applies: Applies | None = None
    search: Search | None = None


def option_of(item: dataclasses.Field) -> Option:
    return item.metadata.get("option", Option())


def flat_name(item: dataclasses.Field) -> str:
    return option_of(item).flat or item.name


def default_words(item: dataclasses.Field) -> str:
    """The default as --help shows it."""
    words = option_of(item).default_words
    if words is not None:
        return words
    default = item.default
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, tuple):
        return ",".join(map(str, default)) or "none"
    if isinstance(default, float):
        return f"{default:g}"
    return "none" if default in ("", None) else str(default)
