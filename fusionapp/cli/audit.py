"""`fusionapp audit`: the rows of a table to look at (wrong labels, duplicates and leaks, outliers),
or with --label-next, the rows to label next."""

from __future__ import annotations

import click

from fusionapp.cli.group import cli
from fusionapp.cli.options import fields_options, table_options, usage_error
from fusionapp.settings import SettingError
from fusionapp.settings.audit import AuditSettings


@cli.command()
@click.argument("data")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder to write issues.csv, label_quality.csv (.parquet with --format parquet), report.json, "
                   "report.html and the PNGs into (label_next.csv or .parquet with --label-next).")
@click.option("--model", type=click.Path(), help="A trained run: DATA is read with its columns (unless others are "
                                                 "given), and --label-next ranks rows by its uncertainty.")
@fields_options(AuditSettings)
@table_options
def audit(data, out, model, **options):
    """Audit the labelled rows of DATA: labels that are likely wrong (confident learning on
    cross-fitted probabilities), duplicates (and those across splits or with different labels),
    outliers, blank or unreadable inputs. With --model RUN --label-next N, write the N unlabelled rows
    to label next."""
    from fusionapp.audit.api import audit_request
    from fusionapp.audit.run_audit import run_audit

    try:
        request = audit_request(data, out, model, options)
    except SettingError as error:
        raise usage_error(error) from None
    run_audit(request, say=click.echo)
