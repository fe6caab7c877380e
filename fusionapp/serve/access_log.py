"""The access log: one line per request on stderr (`serve --access-log`, the default),

    POST /predict 200 12.4 ms batch=16
    POST /predict/batch 200 30.2 ms items=7
    POST /predict?explain=1 200 96.0 ms explained
    GET /health 200 0.3 ms

method, path (as the client sent it, query included), status, milliseconds from the request's
arrival to its answer, and for predictions the size of the batch it was predicted in, the items of a
/predict/batch, or `explained`. A client that went away before its request was read is logged with
status 499.
"""

from __future__ import annotations

import asyncio
import sys

# The scope key a route writes its note to (the batch size, the items).
NOTE = "fusionapp.note"
# Longer paths are cut: a line stays a line whatever a client sends.
MAX_PATH = 200


class AccessLog:
    """Writes the lines of one event loop turn at once: one write for the answers of a batch, not
    one per request."""

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self._lines: list[str] = []

    def request(self, scope, status: int, seconds: float) -> None:
        path = scope.get("raw_path") or scope.get("path", "").encode()
        if scope.get("query_string"):
            path += b"?" + scope["query_string"]
        # raw bytes as sent (percent-encoded, so no line break), shown as Latin-1
        shown = path[:MAX_PATH].decode("latin-1")
        if not shown.isprintable():
            shown = shown.encode("unicode_escape").decode("ascii")
        note = scope.get(NOTE)
        line = f"{scope.get('method', '-')} {shown} {status} {seconds * 1000:.1f} ms" + (f" {note}\n" if note else "\n")
        if not self._lines:
            asyncio.get_running_loop().call_soon(self._flush)
        self._lines.append(line)

    def _flush(self) -> None:
        lines, self._lines = "".join(self._lines), []
        try:
            self.stream.write(lines)
            self.stream.flush()
        except (OSError, ValueError):  # stderr closed: a request never fails over its log line
            pass
