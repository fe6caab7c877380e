"""`fusionapp train`: its flags, each checked by the rule of the setting it names."""

from __future__ import annotations

import click

from fusionapp.cli.group import cli
from fusionapp.cli.options import fields_options, train_options, usage_error
from fusionapp.errors import FusionError
from fusionapp.settings import NotApplicable, RunSettings, SettingError, apply_flat, check_applies
from fusionapp.search.budget import process_start
from fusionapp.settings.resume import check_request
from fusionapp.settings.search import SEARCH_NAMES, SearchSettings, search_settings


@cli.command()
@click.argument("data", required=False)
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (default: checkpoints/<data>-<time>).")
@train_options
@fields_options(SearchSettings)
@click.option("--cache", "old_pixel_cache", hidden=True)
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="TOML or JSON file with the same settings as these flags; flags win.")
@click.option("--resume", is_flag=True,
              help="Continue the interrupted run in --out from its last epoch, with the settings and data it "
                   "recorded: only --epochs, --patience, --fine-tune-epochs and --tensorboard may differ; any other "
                   "setting given with another value, or another DATA, is refused. A search (--time-limit) goes "
                   "on where it stopped: its finished trials kept, the one it was in run again, within the "
                   "--time-limit given (default: the one it recorded), counted afresh.")
@click.option("--overwrite", is_flag=True, help="Replace the run already in --out (not with --resume).")
def train(data, out, resume, overwrite, config_file, old_pixel_cache, **flags):
    """Train a classifier on DATA: a CSV, TSV, JSON Lines or Parquet table, a folder or glob of such
    shards, or tfds:NAME[:SPLIT].

    With no DATA, trains on the demo set, creating it under data/demo first.
    """
    from fusionapp.search.api import train as train_run

    flags["tabular_col"] = flags["tabular_col"] or None
    flags["pixel_cache"] = flags["pixel_cache"] or old_pixel_cache
    flags = {name: value for name, value in flags.items() if value is not None}
    saved = {}
    if config_file:
        saved, data, out = _config_file_settings(config_file, data, out)
    search_flags = {name: flags.pop(name) for name in SEARCH_NAMES if name in flags}
    searching = {**{name: saved.pop(name) for name in SEARCH_NAMES if name in saved}, **search_flags}
    _checked_search(searching, config_file, search_flags)
    settings = _checked_flags(saved, flags, config_file, resume, overwrite)
    if resume or searching.get("time_limit") is not None:
        # by name, so that a search keeps every setting given (one equal to its default too) in each trial
        train_run(data, out, resume=resume, overwrite=overwrite, **saved, **flags, **searching,
                  started=process_start())
    else:
        train_run(data, out, overwrite=overwrite, settings=settings, started=process_start())


def _checked_search(values: dict, config_file: str | None, flags: dict) -> None:
    """The search's settings (--time-limit and what goes with it): a refused flag is a usage error;
    a config file's value, an error naming the file."""
    try:
        search_settings(values)
    except NotApplicable as error:
        if config_file is None or error.name in flags:
            raise
        raise FusionError(f"{config_file}: {error.option} applies {error.words}") from None
    except SettingError as error:
        if config_file is not None and error.name not in flags:
            raise FusionError(f"{config_file}: {error.option} = {error.value!r}: must be {error.requirement}") \
                from None
        raise usage_error(error) from None


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
        apply_flat(RunSettings(), {name: value for name, value in saved.items() if name not in SEARCH_NAMES})
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


@cli.command("search-join")
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--search-storage", metavar="URL",
              help="The study's storage URL, where the search's own (recorded in RUN/search/search.json) names no "
                   "password this machine has. [default: the search's own]")
def search_join(run, search_storage):
    """Run trials of the search in RUN, which `fusionapp train --time-limit ... --search-storage URL --out RUN`
    leads on another process or machine, until its trials' end.

    RUN must be a folder both reach (a shared volume): each trial is written into RUN/trials, and
    the leading process ensembles them.
    """
    from fusionapp.search.run_search import join_search

    if search_storage is not None:
        try:
            search_settings({"search_storage": search_storage, "time_limit": 1})
        except SettingError as error:
            raise usage_error(error) from None
    finished = join_search(run, search_storage or "")
    click.echo(f"Finished {finished} trial(s) of the search in {run}")
