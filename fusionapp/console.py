"""What commands print as they work: summary lines, and progress bars only where they help; and
TensorFlow imported without its start-up chatter."""

from __future__ import annotations

import os
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


def load_tensorflow(debug: bool = False) -> None:
    """Import TensorFlow with its start-up chatter on stderr hidden.

    TensorFlow's C++ core logs CUDA probes and oneDNN notes before any log level applies, so the
    only way to keep them from users is to point file descriptor 2 elsewhere during the import.
    """
    if debug or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    # Retracing and AutoGraph notes are for TensorFlow developers, not for our users.
    tensorflow.get_logger().setLevel("ERROR")
