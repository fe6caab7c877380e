"""`fusionapp evaluate` and `fusionapp predict`: a trained run on labelled rows, new rows or one pair."""

from __future__ import annotations

import json

import click

from fusionapp.cli.group import cli
from fusionapp.cli.options import prediction_options, run_column_options, usage_error
from fusionapp.settings import SettingError, prediction_settings


@cli.command()
@click.argument("model")
@click.argument("data")
@click.option("--split", help="Use only the rows of this split (e.g. test).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the report as JSON here.")
@click.option("--predictions", type=click.Path(dir_okay=False), help="Write per-row predictions (CSV) here.")
@click.option("--skipped", type=click.Path(dir_okay=False), help="List the skipped bad rows (CSV) here.")
@click.option("--ablate", is_flag=True, help="Also score with each modality blanked, to show what each contributes.")
@click.option("--plots", type=click.Path(file_okay=False),
              help="Write confusion-matrix (single-label), ROC, precision-recall and reliability PNGs here.")
@prediction_options("batch_size", "on_bad_row", "sample")
@run_column_options
def evaluate(model, data, on_bad_row, batch_size, sample, **options):
    """Score the run MODEL on the labelled rows of DATA (scikit-learn metrics). DATA is read with
    the run's own column names and image root unless others are given."""
    from fusionapp.evaluation import evaluate as evaluate_run

    checked_prediction_options(on_bad_row=on_bad_row, batch_size=batch_size, sample=sample)
    evaluate_run(model, data, on_bad_row=on_bad_row, batch_size=batch_size, sample=sample, **options)


@cli.command()
@click.argument("model")
@click.argument("data", required=False)
@click.option("--image", type=str, help="Image file of a single pair.")
@click.option("--text", type=str, help="Text of a single pair.")
@click.option("--tabular", multiple=True, metavar="COL=VALUE", help="Tabular value of a single pair (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the single pair's answer as JSON.")
@click.option("--split", help="A table's rows of this split only.")
@click.option("--out", type=click.Path(dir_okay=False),
              help="Write a table's predictions here: CSV, or Parquet for a .parquet name (default: CSV on stdout).")
@click.option("--shard", metavar="K/N", help="Predict only this machine's share of the rows: rows K, K+N, K+2N, ... "
                                             "(1 <= K <= N), for a Slurm array or a Kubernetes indexed Job.")
@click.option("--explain", is_flag=True, help="Explain a single pair: what each input, word, image region and "
                                             "column did for the prediction (with --json: the full object).")
@click.option("--explain-dir", type=click.Path(file_okay=False),
              help="Explain every row of DATA into this folder: a heat map PNG per row and explanations.csv.")
@click.option("--heatmap-out", type=click.Path(dir_okay=False),
              help="With --explain, write the single pair's image heat map to this PNG file.")
@prediction_options("batch_size", "on_bad_row", "top_k")
@run_column_options
def predict(model, data, image, text, tabular, as_json, explain, heatmap_out, **options):
    """Label one pair (--image/--text) or every row of DATA with the run MODEL. DATA is read with the
    run's own column names and image root unless others are given."""
    from fusionapp.inference import predict as predict_run
    from fusionapp.data.sharding import Shard
    from fusionapp.inference.answers import format_pair
    from fusionapp.inference.predict import check_predict_request

    checked_prediction_options(top_k=options["top_k"], on_bad_row=options["on_bad_row"],
                               batch_size=options["batch_size"])
    tabular = _tabular_values(tabular)
    check_predict_request(data, image=image, text=text, tabular=tabular, explain=explain, as_json=as_json,
                          heatmap_out=heatmap_out,
                          table_options={name: value for name, value in options.items() if name != "top_k"})
    if data is None:
        result = predict_run(model, image=image, text=text, tabular=tabular, top_k=options["top_k"], explain=explain,
                             heatmap_out=heatmap_out)
        click.echo(json.dumps(result, ensure_ascii=False) if as_json else format_pair(result))
        if heatmap_out:
            click.echo(f"Wrote the heat map to {heatmap_out}", err=True)
        return
    Shard.parse(options["shard"])  # a bad one is refused before the model loads
    predict_run(model, data, **{**options, "out": options["out"] or "-"})


def checked_prediction_options(**values):
    """evaluate / predict options checked by their settings' rules; a refused one is a usage error."""
    try:
        return prediction_settings(**values)
    except SettingError as error:
        raise usage_error(error) from None


def _tabular_values(items) -> dict:
    values = {}
    for item in items:
        name, separator, value = item.partition("=")
        if not separator or not name:
            raise click.UsageError(f"--tabular expects COL=VALUE (got '{item}')")
        values[name] = value
    return values
