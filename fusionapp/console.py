"""What commands print as they work: summary lines, and progress bars only where they help."""

from __future__ import annotations

import sys


def printer(verbose: int):
    """A function printing a summary line (flushed, so logs show it at once), or doing nothing."""
    return (lambda message: print(message, flush=True)) if verbose else (lambda message: None)


def show_progress(verbose: int) -> bool:
    """Progress bars only on a terminal; in logs they would print one line per batch."""
    return bool(verbose) and sys.stdout.isatty()


def keras_verbosity(verbose: int) -> int:
    """Keras' `verbose` for fit: a bar on a terminal, one line per epoch in a log."""
    if not verbose:
        return 0
    return 1 if sys.stdout.isatty() else 2
