"""What `train --resume` may change: a run continues with the settings it recorded, except the few
that only say how long to go on or what to log; any other setting given differently is refused."""

from __future__ import annotations

import os

from fusionapp.errors import FusionError
from fusionapp.settings.flat import apply_flat, check_applies, flat_value
from fusionapp.settings.rules import NotApplicable
from fusionapp.settings.run import RunSettings

# Settings a resumed run may change: how far it trains and what it logs. The learning-rate
# schedule was built for the recorded epochs, so epochs beyond them train at its final rate.
RESUMABLE = ("epochs", "patience", "fine_tune_epochs", "tensorboard")
# Settings that name a local file or folder: recorded absolute, so a resume, evaluate or predict run
# from elsewhere finds it. The first two are always paths; the others may be preset names.
PATH_SETTINGS = ("backbone_weights", "image_root", "text_backbone", "image_text_backbone")


def check_request(resume: bool, overwrite: bool) -> None:
    """A NotApplicable for --overwrite with --resume: one replaces the run in --out, the other continues it."""
    if resume and overwrite:
        raise NotApplicable("overwrite", "to a new run, not with --resume, which continues the run in --out")


def recorded_path(name: str, value):
    """`value` as recorded: absolute where it names a local file or folder (a weights file other
    than imagenet / none; a preset folder, or what is spelt as a path: not a preset name)."""
    if name not in PATH_SETTINGS or not isinstance(value, str) or not value:
        return value
    if name == "backbone_weights" and value in ("imagenet", "none"):
        return value
    path = os.path.expanduser(value)
    spelt_as_path = os.sep in value or value.startswith((".", "~"))
    always_path = name in PATH_SETTINGS[:2]
    return os.path.abspath(path) if always_path or spelt_as_path or os.path.exists(path) else value


# Values that mean "decide for me": the recorded value is that decision, so asking again is no change.
AUTO_VALUES = {"image_size": 0, "text_tokens": "auto", "ngrams": 0, "precision": "auto", "strategy": "auto",
               "modalities": (), "augment": None, "tune_decisions": None}


def resumed_settings(recorded: RunSettings, given: dict) -> RunSettings:
    """`recorded` with the flat-named `given` values applied where a resume allows it; a one-line
    FusionError naming every other setting whose value differs from the recorded one."""
    refused, allowed = [], {}
    for name, value in given.items():
        if value is None:
            continue
        wanted = recorded_path(name, flat_value(apply_flat(recorded, {name: value}), name))
        before = flat_value(recorded, name)
        if wanted == before or wanted == AUTO_VALUES.get(name, object()):
            continue
        if name in RESUMABLE:
            allowed[name] = value
        else:
            refused.append(f"--{name.replace('_', '-')} {_show(wanted)} (recorded: {_show(before)})")
    if refused:
        raise FusionError(f"--resume continues a run with the settings it recorded, and these differ: "
                          f"{'; '.join(refused)}. Only {', '.join('--' + n.replace('_', '-') for n in RESUMABLE)} "
                          "may change; train into a new --out for the rest")
    resumed = apply_flat(recorded, allowed)
    check_applies(resumed, allowed)
    return resumed


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "(none)"
    return str(value).lower() if isinstance(value, bool) else str(value)
