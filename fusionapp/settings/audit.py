"""The options of `audit`: how the out-of-fold probabilities are fitted, how many rows the report
shows and how many rows to label next. Their defaults live here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass

from fusionapp.settings.given import given_settings
from fusionapp.settings.options import Applies
from fusionapp.settings.rules import check_fields, choice, duration, integer, switch

LABELS = Applies("to an audit of labels, not with --label-next", lambda audit: audit.label_next == 0)


@dataclass(frozen=True)
class AuditSettings:
    folds: int = integer(5, 2, 20, help="Folds of the cross-fit that gives every labelled row probabilities from a "
                                        "model that did not learn from it.")
    fit_rows: int = integer(50_000, 100, help="Past this many labelled rows, the cross-fit learns from a seeded "
                                              "sample of this many, and the other rows are scored by its model "
                                              "(which did not learn from them either).")
    report_rows: int = integer(50, 1, 10_000, help="Rows report.html shows of each kind of issue, worst first.")
    label_next: int = integer(0, 0, help="Rank the unlabelled rows of DATA and write the N to label next "
                                         "(label_next.csv or .parquet); needs --model. 0: audit the labelled rows.",
                              metavar="N")
    time_limit: float = duration(metavar="DURATION", default_words="0: the linear model alone", applies=LABELS,
                                 help="Cross-fit the whole network too: each fold a search (train --time-limit, "
                                      "preset fast) on the other folds' rows, the searches ending within this wall "
                                      "time counted from the audit's start (scoring every row and the reports "
                                      "follow); its out-of-fold probabilities are averaged with the linear model's.")
    format: str = choice("csv", ("csv", "parquet"), help="The row tables (issues, label_quality, label_next) as "
                                                         "CSV or Parquet.")
    seed: int = integer(0, 0, help="Seed of the folds, the sample and the clustering.")
    overwrite: bool = switch(False, help="Replace what an earlier audit wrote in --out.")

    def __post_init__(self):
        check_fields(self)


def audit_settings(**values) -> AuditSettings:
    """The audit options, checked; None means the default."""
    return given_settings(AuditSettings, values)
