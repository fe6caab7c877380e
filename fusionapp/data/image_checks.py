"""Whether each distinct image file of a table can be used: header checks in a thread pool sized to
the cores, one decode of each file that passes, and a record of the verdicts by (path, size,
modification time) so that a second run over the same images reads none of them again.

The record is an SQLite file: $FUSIONAPP_CHECK_CACHE, or ~/.cache/fusionapp/image-checks.sqlite
(`off` keeps none). A file changed since its verdict has another size or time and is checked anew.
"""

from __future__ import annotations

import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor

from fusionapp.data.images import check_image_file, find_undecodable

_OK = ""  # the verdict of a usable file


def image_file_verdicts(paths) -> dict[str, str | None]:
    """{path: why it cannot be used, or None} for each distinct non-empty path."""
    distinct = sorted({path for path in paths if path})
    if not distinct:
        return {}
    stamps = _stamps(distinct)
    cache = _open_cache()
    known = _cached(cache, stamps) if cache is not None else {}
    unknown = [path for path in distinct if path not in known]
    found = _check(unknown) if unknown else {}
    if cache is not None:
        # A file that could not be read (permissions, an I/O error) may be readable next time.
        _remember(cache, {path: reason for path, reason in found.items()
                          if stamps.get(path) and "cannot be read" not in reason}, stamps)
        cache.close()
    verdicts = {**known, **found}
    return {path: (verdicts[path] or None) for path in distinct}


def _check(paths: list[str]) -> dict[str, str]:
    threads = max(2, min(32, 4 * (os.cpu_count() or 1)))  # header reads wait on the disk, not the CPU
    with ThreadPoolExecutor(threads) as pool:
        reasons = dict(zip(paths, pool.map(check_image_file, paths)))
    readable = [path for path in paths if reasons[path] is None]
    for position, reason in find_undecodable(readable, from_files=True).items():
        reasons[readable[position]] = reason
    return {path: reason or _OK for path, reason in reasons.items()}


def _stamps(paths: list[str]) -> dict[str, tuple[int, int] | None]:
    stamps = {}
    for path in paths:
        try:
            info = os.stat(path)
            stamps[path] = (info.st_size, info.st_mtime_ns)
        except OSError:
            stamps[path] = None  # missing now; never remembered
    return stamps


def cache_path() -> str | None:
    configured = os.environ.get("FUSIONAPP_CHECK_CACHE")
    if configured == "off":
        return None
    return configured or os.path.join(os.path.expanduser("~"), ".cache", "fusionapp", "image-checks.sqlite")


def _open_cache():
    path = cache_path()
    if path is None:
        return None
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        connection = sqlite3.connect(path, timeout=30)
        connection.execute("CREATE TABLE IF NOT EXISTS verdicts (path TEXT PRIMARY KEY, size INTEGER, "
                           "mtime_ns INTEGER, reason TEXT)")
        return connection
    except (OSError, sqlite3.Error):
        return None  # a read-only home: check everything, remember nothing


def _cached(connection, stamps) -> dict[str, str]:
    known = {}
    paths = [path for path, stamp in stamps.items() if stamp]
    try:
        for start in range(0, len(paths), 500):
            part = paths[start:start + 500]
            rows = connection.execute(f"SELECT path, size, mtime_ns, reason FROM verdicts WHERE path IN "
                                      f"({','.join('?' * len(part))})", part).fetchall()
            for path, size, mtime_ns, reason in rows:
                if stamps[path] == (size, mtime_ns):
                    known[path] = reason
    except sqlite3.Error:
        return {}
    return known


def _remember(connection, reasons: dict[str, str], stamps) -> None:
    if not reasons:
        return
    try:
        with connection:
            connection.executemany("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?)",
                                   [(path, *stamps[path], reason) for path, reason in reasons.items()])
    except sqlite3.Error:
        pass  # another process holds it; the verdicts are only a shortcut
