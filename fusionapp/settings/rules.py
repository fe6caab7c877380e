"""The rules settings are checked by: each one a field factory (`choice`, `integer`, `number`,
...) that carries the default, how the value is canonicalised and the words that describe it, and
the error a refused value raises. The modules beside this one declare the settings with them.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field

from fusionapp.errors import FusionError, UsageProblem
from fusionapp.settings.options import Option


class SettingError(FusionError):
    """A setting given a value it cannot take. `name` is its flat name (`text_encoder`)."""

    def __init__(self, name: str, value, requirement: str):
        self.name, self.value, self.requirement = name, value, requirement
        super().__init__(f"{name}={value!r}: must be {requirement}")

    @property
    def option(self) -> str:
        """The name as flags and config files spell it: `text-encoder`."""
        return self.name.replace("_", "-")

    def renamed(self, name: str) -> "SettingError":
        return SettingError(name, self.value, self.requirement)


class NotApplicable(UsageProblem):
    """A setting given where it means nothing (--ngrams with the cnn encoder), which would otherwise
    be ignored. `name` is its flat name; `words` say when it applies."""

    def __init__(self, name: str, words: str):
        self.name, self.words = name, words
        super().__init__(f"--{self.option} applies {words}")

    @property
    def option(self) -> str:
        return self.name.replace("_", "-")


@dataclass(frozen=True)
class Rule:
    """How one field is checked: `coerce(name, value)` returns the value in its canonical form
    (a tuple for lists, a float for numbers) or raises SettingError. `kind` is the type a flag
    parses its text as before the rule sees it: int, float, bool or str (lists are comma text)."""

    requirement: str
    coerce: object
    kind: type = str


def _rule_field(default, rule: Rule, about: dict):
    """A dataclass field with its rule and its Option (`about`: Option's fields, help first)."""
    metadata = {"rule": rule, "option": Option(**about)}
    return field(default=tuple(default) if isinstance(default, (list, tuple)) else default, metadata=metadata)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _range_words(low, high, low_open=False, high_open=False) -> str:
    if low is not None and high is not None:
        if low_open or high_open:
            return f"above {low} and below {high}" if low_open and high_open else \
                (f"above {low} and at most {high}" if low_open else f"at least {low} and below {high}")
        return f"from {low} to {high}"
    if low is not None:
        return f"above {low}" if low_open else f"at least {low}"
    return f"at most {high}" if high is not None else "any value"


def choice(default: str, options: tuple[str, ...], **about):
    requirement = "one of " + ", ".join(options)

    def coerce(name, value):
        if not isinstance(value, str) or value not in options:
            raise SettingError(name, value, requirement)
        return value

    return _rule_field(default, Rule(requirement, coerce), about)


def integer(default: int, low: int | None = None, high: int | None = None, auto: str | None = None, **about):
    """An integer in [low, high]; with `auto` (what 0 means, in words), 0 is accepted too."""
    requirement = f"an integer {_range_words(low, high)}" if (low, high) != (None, None) else "an integer"
    if auto:
        requirement = f"0 ({auto}) or {requirement}"

    def coerce(name, value):
        if auto and value == 0 and _is_int(value):
            return value
        if not _is_int(value) or (low is not None and value < low) or (high is not None and value > high):
            raise SettingError(name, value, requirement)
        return value

    return _rule_field(default, Rule(requirement, coerce, int), about)


def number(default: float, low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False, **about):
    requirement = f"a number {_range_words(low, high, low_open, high_open)}"

    def coerce(name, value):
        if not (_is_int(value) or isinstance(value, float)) or not math.isfinite(value):
            raise SettingError(name, value, requirement)
        if low is not None and (value < low or (low_open and value == low)):
            raise SettingError(name, value, requirement)
        if high is not None and (value > high or (high_open and value == high)):
            raise SettingError(name, value, requirement)
        return float(value)

    return _rule_field(default, Rule(requirement, coerce, float), about)


def switch(default: bool, **about):
    def coerce(name, value):
        if not isinstance(value, bool):
            raise SettingError(name, value, "true or false")
        return value

    return _rule_field(default, Rule("true or false", coerce, bool), about)


def auto_switch(**about):
    """True, False, or None (the default): decided by what else the run does."""
    def coerce(name, value):
        if value is not None and not isinstance(value, bool):
            raise SettingError(name, value, "true or false")
        return value

    return _rule_field(None, Rule("true or false", coerce, bool), about)


def _as_list(value) -> list:
    """A comma string (a flag: `1,3,5`) or a list (a config file: [1, 3, 5]) -> list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise TypeError


def integers(default: tuple[int, ...], low: int = 1, **about):
    requirement = f"a non-empty list of integers of at least {low} (e.g. 1,3,5)"

    def coerce(name, value):
        try:
            items = [int(item) if isinstance(item, str) else item for item in _as_list(value)]
        except (TypeError, ValueError):
            raise SettingError(name, value, requirement) from None
        if not items or not all(_is_int(item) and item >= low for item in items):
            raise SettingError(name, value, requirement)
        return tuple(items)

    return _rule_field(default, Rule(requirement, coerce), about)


def names(default: tuple[str, ...], options: tuple[str, ...] | None = None, non_empty: bool = True, **about):
    requirement = (f"a comma list from {', '.join(options)}" if options else "a list of names")
    requirement += ", each once" if options else ""

    def coerce(name, value):
        try:
            items = _as_list(value)
        except TypeError:
            raise SettingError(name, value, requirement) from None
        if not all(isinstance(item, str) and item.strip() for item in items) or (non_empty and not items):
            raise SettingError(name, value, requirement)
        items = [item.strip() for item in items]
        if options and (any(item not in options for item in items) or len(set(items)) != len(items)):
            raise SettingError(name, value, requirement)
        return tuple(items)

    return _rule_field(default, Rule(requirement, coerce), about)


def weights_source(default: str, **about):
    requirement = "imagenet, none, or the path of a .h5 / .weights.h5 file"

    def coerce(name, value):
        if not isinstance(value, str) or not value.strip():
            raise SettingError(name, value, requirement)
        value = value.strip()
        if value not in ("imagenet", "none") and not value.lower().endswith(".h5"):
            raise SettingError(name, value, requirement)
        return value

    return _rule_field(default, Rule(requirement, coerce), about)


def preset_source(default: str, **about):
    """A pretrained model's folder or preset name; "" for none. Checked against the machine later
    (fusionapp.pretrained.text_backbones), before anything is written."""
    requirement = "a KerasHub preset name or the path of a local preset folder"

    def coerce(name, value):
        if not isinstance(value, str):
            raise SettingError(name, value, requirement)
        return value.strip()

    return _rule_field(default, Rule(requirement, coerce), about)


def service_address(default: str, **about):
    """A tf.data service dispatcher: grpc://HOST:PORT (or HOST:PORT); "" for none."""
    requirement = "a dispatcher address, grpc://HOST:PORT"

    def coerce(name, value):
        if not isinstance(value, str):
            raise SettingError(name, value, requirement)
        value = value.strip()
        if not value:
            return ""
        address = value.split("://", 1)[-1]
        host, _, port = address.rpartition(":")
        if value.count("://") > 1 or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingError(name, value, requirement)
        return value if "://" in value else f"grpc://{value}"

    return _rule_field(default, Rule(requirement, coerce), about)


# The units a duration may be written in: `20m`, `1h30m`, `900s`, or a bare number of seconds.
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def duration(**about):
    """A wall time in seconds, written `20m`, `1h`, `1h30m`, `900s` or `900`; 0 for none."""
    requirement = "a duration such as 20m, 1h, 1h30m or 900s (0: none)"

    def coerce(name, value):
        if _is_int(value) or isinstance(value, float):
            seconds = float(value)
        elif isinstance(value, str) and value.strip():
            text = value.strip().lower().replace(" ", "")
            match = _DURATION.fullmatch(text)
            if re.fullmatch(r"\d+(?:\.\d+)?", text):
                seconds = float(text)
            elif match and any(match.groups()):
                seconds = sum(float(part) * unit for part, unit in zip(match.groups(), _DURATION_UNITS.values())
                              if part)
            else:
                raise SettingError(name, value, requirement)
        else:
            raise SettingError(name, value, requirement)
        if not math.isfinite(seconds) or seconds < 0:
            raise SettingError(name, value, requirement)
        return seconds

    return _rule_field(0.0, Rule(requirement, coerce), about)


def folder(default: str | None, **about):
    """A folder's path, or None: not given."""
    def coerce(name, value):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise SettingError(name, value, "a folder path")
        return value

    return _rule_field(default, Rule("a folder path", coerce), about)


def column(default: str, **about):
    def coerce(name, value):
        if not isinstance(value, str) or not value.strip():
            raise SettingError(name, value, "a column name")
        return value.strip()

    return _rule_field(default, Rule("a column name", coerce), about)


def separator(default: str, **about):
    requirement = "a non-empty string (e.g. |)"

    def coerce(name, value):
        if not isinstance(value, str) or not value:
            raise SettingError(name, value, requirement)
        return value

    return _rule_field(default, Rule(requirement, coerce), about)


def check_fields(settings) -> None:
    """Run every field's rule, storing the canonical values (the dataclasses are frozen)."""
    for item in dataclasses.fields(settings):
        rule = item.metadata.get("rule")
        if rule is not None:
            object.__setattr__(settings, item.name, rule.coerce(item.name, getattr(settings, item.name)))
