"""The commands around a run: the demo data, export, serve, info, the feature cache, the backbones."""

from __future__ import annotations

import json
import os

import click

from fusionapp.cli.group import cli
from fusionapp.cli.options import fields_options, usage_error
from fusionapp.settings import ServeSettings, SettingError, serve_settings


@cli.command()
@click.option("--out", type=click.Path(file_okay=False),
              help="Folder to write images/ and demo.csv into [default: data/demo, or data/demo-multilabel].")
@click.option("--rows", default=3000, show_default=True, type=click.IntRange(min=40), help="Number of examples.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--multi-label", is_flag=True, help="Label each pair with a set of tags (joined by |) instead.")
def demo(out, rows, seed, multi_label):
    """Write the synthetic demo set, whose label needs both the image and the text."""
    from fusionapp.data.demo import make_demo

    table = make_demo(out or ("data/demo-multilabel" if multi_label else "data/demo"), rows=rows, seed=seed,
                      multi_label=multi_label)
    click.echo(f"Wrote {rows} examples to {table} (with a split column: train / val / test)")


@cli.command()
@click.argument("model")
@click.option("--out", required=True, type=click.Path(), help="Folder to write the SavedModel into.")
@click.option("--overwrite", is_flag=True, help="Replace what is already in --out.")
def export(model, out, overwrite):
    """Write the run MODEL as a TensorFlow SavedModel taking raw inputs (for TF Serving)."""
    from fusionapp.inference.export import export_run

    export_run(model, out, overwrite=overwrite)
    click.echo(f"Wrote the SavedModel to {out} (signature serving_default)")


@cli.command()
@click.argument("model")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@fields_options(ServeSettings)
def serve(model, host, port, **options):
    """Serve the run MODEL over HTTP: /predict, /predict/batch, /health, /ready, /metrics, /metadata and a
    page at /.

    Concurrent predictions are batched into one call of the model; past --max-queue waiting items,
    requests get 503 with Retry-After. SIGTERM stops accepting, answers what is in flight, exits 0.
    """
    from fusionapp.runs.load import resolve_run_dir
    from fusionapp.serve.process import run_server

    try:
        settings = serve_settings(**options)
    except SettingError as error:
        raise usage_error(error) from None
    resolve_run_dir(model)
    click.echo(f"Serving {model} on http://{host}:{port}/ with {settings.workers} worker(s) (Ctrl+C to stop)",
               err=True)
    run_server(model, host, port, settings)


@cli.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def info(model, as_json):
    """Show a run's classes, columns, settings, metrics and versions."""
    from fusionapp.runs.info import format_info, run_info

    details = run_info(model)
    click.echo(json.dumps(details, indent=2, ensure_ascii=False) if as_json else format_info(details))


def _feature_cache(action):
    """Show (info) or empty (clear) the feature cache of frozen backbones.

    It lives in $FUSIONAPP_CACHE_DIR (default ~/.cache/fusionapp/features) and keeps to
    $FUSIONAPP_CACHE_LIMIT_GB (default 10), dropping the least recently used features first.
    """
    from fusionapp.pretrained.cache import cache_limit_bytes, cache_usage, clear_cache, cache_root

    if action == "clear":
        click.echo(f"Removed {clear_cache() / 1e6:.1f} MB of cached features from {cache_root()}")
        return
    usage = cache_usage()
    click.echo(f"{usage['folder']}: {usage['entries']} feature files, {usage['bytes'] / 1e6:.1f} MB of "
               f"{cache_limit_bytes() / 1e9:g} GB allowed, {usage['setups']} backbone setups")


_ACTION = click.argument("action", type=click.Choice(["info", "clear"]), default="info")
feature_cache = cli.command("feature-cache")(_ACTION(_feature_cache))
# Its name before 0.7, kept for scripts.
cli.command("cache", hidden=True)(_ACTION(_feature_cache))


@cli.command()
def backbones():
    """List the pretrained image backbones, the weights file each needs, and whether it is here."""
    from fusionapp.model.backbones import BACKBONES
    from fusionapp.pretrained.weights import keras_models_dir

    folder = keras_models_dir()
    click.echo(f"ImageNet weights are read from {folder}")
    for backbone in BACKBONES.values():
        here = "present" if os.path.isfile(os.path.join(folder, backbone.weights_file)) else "missing"
        click.echo(f"{backbone.name:<20} {here:<8} {backbone.weights_file}\n{'':<30}{backbone.weights_url}")
