"""Files written atomically (a temporary file beside the target, then one rename), so a crash never
leaves half a file; and the small readers that go with them."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import tempfile
from fnmatch import fnmatch

from fusionapp.errors import FusionError


# The process's umask, read once (reading it means setting it): what its files' modes follow.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def follow_umask(path: str) -> None:
    """Give a file (or folder) made private by `tempfile` the mode a plain `open` (or `os.makedirs`)
    would have given it, so another user or a container of another uid can read a run it was given."""
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~_UMASK)


# === Atomic writes ===
def temporary_beside(path: str, suffix: str) -> tuple[int, str]:
    """A new private temporary file in `path`'s folder (made if missing): (descriptor, its path); a
    one-line FusionError where that folder cannot be written."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        return tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=suffix)
    except OSError as error:
        raise FusionError(f"{path}: cannot write there ({error.strerror or error})") from None


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ""):
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds. The file
    gets the mode the user's umask gives new files."""
    handle, temporary = temporary_beside(path, suffix=f".tmp{suffix}")
    os.close(handle)
    try:
        yield temporary
        follow_umask(temporary)
        _signal_for_tests(path)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _signal_for_tests(path: str) -> None:
    """The crash tests' one hook, so they stop a training at an exact instant instead of polling for
    files: with FUSIONAPP_TEST_SIGNAL="KILL epoch0002.keras" (a signal name, then a glob of file
    names, or of whole paths: "KILL */trials/0001/resume/epoch0001.keras") the process sends itself that signal when the first such file is written, before its
    rename. docs/tests.md lists the instants the tests use."""
    name, _, pattern = os.environ.get("FUSIONAPP_TEST_SIGNAL", "").partition(" ")
    if pattern and (fnmatch(os.path.basename(path), pattern) or fnmatch(path, pattern)):
        del os.environ["FUSIONAPP_TEST_SIGNAL"]  # once: a process stopped here and continued runs to its end
        os.kill(os.getpid(), getattr(signal, f"SIG{name}"))


def write_text(path: str, text: str) -> None:
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


def write_json(path: str, values) -> None:
    write_text(path, json.dumps(values, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def write_csv(path: str, header: list[str], rows) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def save_model(model, path: str) -> None:
    with atomic_path(path, suffix=".keras") as temporary:
        model.save(temporary)


def save_weights(model, path: str) -> None:
    with atomic_path(path, suffix=".weights.h5") as temporary:
        model.save_weights(temporary)


def file_digest(path: str, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes, read in 1 MB blocks."""
    import hashlib

    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def read_json(path: str):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise FusionError(f"{path}: cannot read ({error})") from error
