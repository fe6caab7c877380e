"""The audit from flat-named options, as the command line and the Python API give them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from fusionapp.audit.run_audit import AuditRequest, run_audit
from fusionapp.settings import Columns, setting_field
from fusionapp.settings.audit import AuditSettings, audit_settings
from fusionapp.settings.flat import FLAT_NAMES


def audit_request(data: str, out: str, model: str | None, options: dict) -> AuditRequest:
    """Raises SettingError for a refused value (None: not given)."""
    audit_names = {item.name for item in dataclasses.fields(AuditSettings)}
    settings = audit_settings(**{name: value for name, value in options.items() if name in audit_names})
    # A repeatable flag not given comes as () from click.
    columns = {FLAT_NAMES[name][1]: value for name, value in options.items()
               if value not in (None, ()) and name in FLAT_NAMES and FLAT_NAMES[name][0] == "columns"}
    if "tabular" in columns:
        columns["tabular"] = tuple(columns["tabular"])
    multi_label = options.get("multi_label")
    if multi_label is not None:
        setting_field("multi_label").metadata["rule"].coerce("multi_label", multi_label)
    return AuditRequest(data, out, Columns(**columns), settings, image_root=options.get("image_root"),
                        multi_label=bool(multi_label) or "label_sep" in columns, model=model,
                        given_columns=tuple(columns))


def audit_table(data: str, out: str, model: str | None = None, say: Callable[[str], None] = print,
                **options: object) -> dict:
    """Audit a table: wrong labels, duplicates and leaks, outliers, blank or unreadable inputs; or,
    with `label_next=N` and a run, the N unlabelled rows to label next.

    Args:
        data: A table (CSV, JSON Lines, Parquet) or `tfds:NAME[:SPLIT]`.
        out: The folder to write issues.csv, label_quality.csv (or .parquet), report.json and report.html
            into.
        model: A run folder: its columns are read, and label_next ranks rows by its uncertainty.
        say: Where progress lines go.
        **options: The audit's options (`folds`, `fit_rows`, `report_rows`, `label_next`,
            `time_limit`, `format`, `seed`, `overwrite`) and how the table is read (`image_col`,
            `text_col`, `label_col`, `tabular_col`, `split_col`, `id_col`, `label_sep`,
            `image_root`, `multi_label`), as the command line names them.

    Returns:
        report.json's content.

    Raises:
        fusionapp.errors.FusionError: Bad input or a refused option, in one line.
    """
    return run_audit(audit_request(data, out, model, options), say=say)
