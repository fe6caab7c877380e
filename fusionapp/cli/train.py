"""`fusionapp train`: its flags, each checked by the rule of the setting it names."""

from __future__ import annotations

import click

from fusionapp.cli.group import cli
from fusionapp.cli.options import train_options, usage_error
from fusionapp.errors import FusionError
from fusionapp.settings import NotApplicable, RunSettings, SettingError, apply_flat, check_applies
from fusionapp.settings.resume import check_request


@cli.command()
@click.argument("data", required=False)
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (default: checkpoints/<data>-<time>).")
@train_options
@click.option("--cache", "old_pixel_cache", hidden=True)
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="TOML or JSON file with the same settings as these flags; flags win.")
@click.option("--resume", is_flag=True,
              help="Continue the interrupted run in --out from its last epoch, with the settings and data it "
                   "recorded: only --epochs, --patience, --fine-tune-epochs and --tensorboard may differ; any other "
                   "setting given with another value, or another DATA, is refused.")
@click.option("--overwrite", is_flag=True, help="Replace the run already in --out (not with --resume).")
def train(data, out, resume, overwrite, config_file, old_pixel_cache, **flags):
    """Train a classifier on DATA: a CSV, TSV, JSON Lines or Parquet table, a folder or glob of such
    shards, or tfds:NAME[:SPLIT].

    With no DATA, trains on the demo set, creating it under data/demo first.
    """
    from fusionapp.training import train as train_run

    flags["tabular_col"] = flags["tabular_col"] or None
    flags["pixel_cache"] = flags["pixel_cache"] or old_pixel_cache
    flags = {name: value for name, value in flags.items() if value is not None}
    saved = {}
    if config_file:
        saved, data, out = _config_file_settings(config_file, data, out)
    settings = _checked_flags(saved, flags, config_file, resume, overwrite)
    if resume:
        train_run(data, out, resume=True, **saved, **flags)
    else:
        train_run(data, out, overwrite=overwrite, settings=settings)


def _config_file_settings(path: str, data, out):
    """The flat settings of a --config file, checked, and DATA and --out (flags win)."""
    from fusionapp.settings.config_file import read_config_file

    saved = read_config_file(path)
    for key in ("data", "out"):
        if not isinstance(saved.get(key, ""), str):
            raise FusionError(f"{path}: {key} = {saved[key]!r}: must be a path")
    data, out = data or saved.pop("data", None), out or saved.pop("out", None)
    saved.pop("data", None)
    saved.pop("out", None)
    try:
        apply_flat(RunSettings(), saved)
    except SettingError as error:
        raise FusionError(f"{path}: {error.option} = {error.value!r}: must be {error.requirement}") from None
    except FusionError as error:
        raise FusionError(f"{path}: {error}") from None
    return saved, data, out


def _checked_flags(saved: dict, flags: dict, config_file: str | None, resume: bool, overwrite: bool) -> RunSettings:
    """The settings of the config file's values and the flags (which win). A refused flag, or one
    given where it does not apply, is a usage error; a config file's value, an error naming the file."""
    try:
        check_request(resume, overwrite)
        settings = apply_flat(apply_flat(RunSettings(), saved), flags)
        if not resume:  # a resumed run's recorded settings decide what applies (fusionapp.settings.resume)
            check_applies(settings, [*saved, *flags])
    except NotApplicable as error:
        if error.name in flags or error.name == "overwrite":
            raise
        raise FusionError(f"{config_file}: {error.option} applies {error.words}") from None
    except SettingError as error:
        raise usage_error(error) from None
    return settings
