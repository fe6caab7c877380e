"""What an audit is asked: the table, how to read it, the run (for --label-next) and the options."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusionapp.settings import Columns
from fusionapp.settings.audit import AuditSettings


@dataclass(frozen=True)
class AuditRequest:
    """What to audit and how: the table, its columns, the run (for --label-next) and the options."""

    data: str
    out: str
    columns: Columns
    settings: AuditSettings
    image_root: str | None = None
    multi_label: bool = False
    model: str | None = None
    # The Columns fields the user named: with a run, these replace the run's own (a name given equal
    # to the default still counts).
    given_columns: tuple[str, ...] = ()


def sample_of(rows: np.ndarray, size: int, seed: int) -> np.ndarray:
    """`rows`, or a seeded sample of `size` of them (in order) where there are more."""
    if len(rows) <= size:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, size, replace=False))
