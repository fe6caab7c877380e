"""`train --config FILE`: the same settings as the flags, from TOML or JSON."""

from __future__ import annotations

import json
import os
import tomllib

from fusionapp.errors import FusionError


def read_config_file(path: str) -> dict:
    """Flat settings from `path`; keys are flag names with `-` or `_` (`batch-size`, `batch_size`)."""
    if not os.path.isfile(path):
        raise FusionError(f"{path}: no such config file")
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        if path.lower().endswith(".json") or raw.lstrip().startswith(b"{"):
            values = json.loads(raw.decode("utf-8"))
        else:
            values = tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise FusionError(f"{path}: not valid TOML or JSON ({error})") from error
    if not isinstance(values, dict):
        raise FusionError(f"{path}: expected a table of settings at the top level")
    return {key.replace("-", "_"): value for key, value in values.items()}
