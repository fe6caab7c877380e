"""A machine's share of a table's rows: one type for the training workers of a multi-worker strategy
and for `predict --shard K/N`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusionapp.errors import FusionError, UsageProblem


@dataclass(frozen=True)
class Shard:
    """Rows `index`, `index + count`, `index + 2 * count`, ... (0-based row numbers) of a table
    shared by `count` machines."""

    index: int
    count: int

    def __post_init__(self):
        if not (isinstance(self.index, int) and isinstance(self.count, int) and 0 <= self.index < self.count):
            raise FusionError(f"a shard is an index from 0 to count - 1 (got index {self.index} of {self.count})")

    @classmethod
    def parse(cls, given: str | None) -> "Shard | None":
        """`predict --shard K/N` (1-based K, as Slurm array and Kubernetes indexed Job numbers are
        written) -> Shard(K - 1, N); None stays None."""
        if given is None:
            return None
        index, _, count = str(given).partition("/")
        if not (index.strip().isdigit() and count.strip().isdigit()) or not 1 <= int(index) <= int(count):
            raise UsageProblem(f"--shard {given}: expected K/N with 1 <= K <= N (this machine's share K of N)")
        return cls(int(index) - 1, int(count))

    def of_rows(self, row_numbers: np.ndarray) -> np.ndarray:
        """The positions in `row_numbers` (1-based rows of the whole table, as Examples number
        them) of the rows in this share."""
        return np.flatnonzero((np.asarray(row_numbers) - 1 - self.index) % self.count == 0)

    def of_positions(self, size: int) -> np.ndarray:
        """The positions 0 .. size - 1 in this share."""
        return np.arange(size)[self.index::self.count]

    def __str__(self) -> str:
        return f"{self.index + 1}/{self.count}"
