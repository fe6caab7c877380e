"""`fusionapp evaluate` and `fusionapp predict`: a trained run on labelled rows, new rows or one pair."""

from __future__ import annotations

import json

import click

from fusionapp.errors import FusionError
from fusionapp.cli.group import COLUMN_FLAGS, checked_prediction_options, cli, column_options, prediction_options


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
@prediction_options
@column_options
def evaluate(model, data, on_bad_row, batch_size, **options):
    """Score the run MODEL on the labelled rows of DATA (scikit-learn metrics)."""
    from fusionapp.evaluation import evaluate as evaluate_run

    checked_prediction_options(on_bad_row=on_bad_row, batch_size=batch_size)
    evaluate_run(model, data, on_bad_row=on_bad_row, batch_size=batch_size, **options)


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
@click.option("--top-k", type=int, help="Also list the K likeliest labels [default: 1].")
@click.option("--explain", is_flag=True, help="Explain a single pair: what each input, word, image region and "
                                             "column did for the prediction (with --json: the full object).")
@click.option("--explain-dir", type=click.Path(file_okay=False),
              help="Explain every row of DATA into this folder: a heat map PNG per row and explanations.csv.")
@prediction_options
@column_options
def predict(model, data, image, text, tabular, as_json, explain, **options):
    """Label one pair (--image/--text) or every row of DATA with the run MODEL."""
    from fusionapp.inference import predict as predict_run

    checked_prediction_options(top_k=options["top_k"], on_bad_row=options["on_bad_row"],
                               batch_size=options["batch_size"])
    if data is None:
        if image is None and text is None and not tabular:
            raise click.UsageError("give DATA (a table) or a single pair with --image/--text")
        table_only = [name for name in ("split", "out", "shard", "explain_dir", "on_bad_row", "batch_size", *COLUMN_FLAGS)
                      if options[name] is not None]
        if table_only:
            raise click.UsageError(f"--{table_only[0].replace('_', '-')} applies to a table (DATA), not to a single "
                                   "pair")
        from fusionapp.inference.answers import format_pair

        result = predict_run(model, image=image, text=text, tabular=_tabular_values(tabular),
                             top_k=options["top_k"], explain=explain)
        click.echo(json.dumps(result, ensure_ascii=False) if as_json else format_pair(result))
        return
    if image or text or tabular:
        raise click.UsageError("give either DATA or --image/--text/--tabular, not both")
    if explain:
        raise click.UsageError("--explain explains a single pair; use --explain-dir DIR for a table")
    if as_json:
        raise click.UsageError("--json prints a single pair's answer; a table's predictions are CSV (--out)")
    from fusionapp.data.sharding import Shard

    try:
        Shard.parse(options["shard"])
    except FusionError as error:
        raise click.BadParameter(str(error).split(": ", 1)[-1], param_hint="'--shard'") from None
    predict_run(model, data, **{**options, "out": options["out"] or "-"})


def _tabular_values(items) -> dict:
    values = {}
    for item in items:
        name, separator, value = item.partition("=")
        if not separator or not name:
            raise click.UsageError(f"--tabular expects COL=VALUE (got '{item}')")
        values[name] = value
    return values
