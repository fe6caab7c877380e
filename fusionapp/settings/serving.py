"""The options of `serve`: how requests are batched, queued, timed out and drained, how many
server processes share the port, and whether each request is logged. Their defaults live here and
nowhere else."""

from __future__ import annotations

from dataclasses import dataclass

from fusionapp.settings.given import given_settings
from fusionapp.settings.rules import check_fields, integer, number, switch

# The most items one /predict/batch request may carry; a batch of the model never needs more.
MAX_BATCH_ITEMS = 256


@dataclass(frozen=True)
class ServeSettings:
    max_batch: int = integer(64, 1, MAX_BATCH_ITEMS, help="Most items gathered into one call of the model, and the "
                                                           "largest batch the warm-up traces; 1: no batching.")
    # Less once the batch is as large as the last one and no request is being read.
    batch_wait_ms: float = number(5.0, 0.0, 1000.0, help="How long a batch's first item waits for others to join it.")
    max_queue: int = integer(256, 1, help="Items waiting for the model past which requests get 503 with "
                                          "Retry-After at once.")
    timeout_s: float = number(30.0, 0.0, 3600.0, low_open=True,
                              help="A request not answered in this many seconds gets 503, and its work is dropped.")
    workers: int = integer(1, 1, 64, help="Server processes on the port, each with the model loaded once.")
    grace_s: float = number(30.0, 0.0, 3600.0, help="After SIGTERM, how long requests in flight may take to finish "
                                                    "before the server exits anyway.")
    max_body_mb: int = integer(16, 1, 4096, help="Request body limit, in MB.")
    access_log: bool = switch(True, help="One line per request on stderr: method, path, status, milliseconds, batch "
                                         "size or items.")

    def __post_init__(self):
        check_fields(self)


def serve_settings(**values) -> ServeSettings:
    """The serve options, checked; None means the default."""
    return given_settings(ServeSettings, values)
