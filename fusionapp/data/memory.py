"""Settings whose memory grows with the rows, checked against the memory there is before a run
starts rather than found out by the kernel's out-of-memory killer an hour in."""

from __future__ import annotations

import os

from fusionapp.errors import FusionError

# Of the memory available now, what one setting may plan to take: the model, TensorFlow and the
# input pipeline need the rest.
USABLE_SHARE = 0.7


def available_memory() -> int | None:
    """Bytes of memory available to new allocations now (MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_pixel_cache(rows: int, image_size: int, cache: str, available: int | None = None) -> None:
    """--pixel-cache memory keeps rows x size x size x 3 bytes: refuse it in one line when that
    would not fit (disk caches are mapped from a file and page out)."""
    if cache != "memory":
        return
    check_fits(f"--pixel-cache memory: {rows} rows of {image_size}x{image_size} pixels", rows * image_size ** 2 * 3,
               "use --pixel-cache disk or none", available)


def check_fits(what: str, needed: int, advice: str, available: int | None = None) -> None:
    """A FusionError `WHAT need N GiB and M GiB is available; ADVICE` when `needed` bytes would not fit."""
    available = available_memory() if available is None else available
    if available is not None and needed > USABLE_SHARE * available:
        raise FusionError(f"{what} need {needed / 2**30:.1f} GiB and {available / 2**30:.1f} GiB is available; "
                          f"{advice}")
