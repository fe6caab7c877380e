"""Prometheus metrics of the server, and the ASGI middleware that counts, times and logs every request.

With several worker processes (`serve --workers N`) each process writes its figures to files in
$PROMETHEUS_MULTIPROC_DIR and `/metrics`, whichever process answers it, sums them all
(prometheus-client's multiprocess mode); that variable must be set before this module is imported.
"""

from __future__ import annotations

import os
import time

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, \
    generate_latest

# Routes by their own names; anything else is one label, so a scan of random paths cannot grow the
# number of series without bound.
ROUTES = ("/", "/health", "/ready", "/metadata", "/metrics", "/predict", "/predict/batch")
# The status a request is counted under when its client went away before it was read (nginx's
# "client closed request"): neither answered nor the server's fault.
CLIENT_CLOSED = 499
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter("fusionapp_requests", "HTTP requests answered, by route and status.", ["route", "status"])
LATENCY = Histogram("fusionapp_request_duration_seconds", "Time from a request's arrival to its answer.",
                    ["route"], buckets=LATENCY_BUCKETS)
BATCH_SIZE = Histogram("fusionapp_batch_size", "Items per call of the raw-input function.",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
BATCH_SECONDS = Histogram("fusionapp_batch_duration_seconds", "Time of one call of the raw-input function "
                          "(row check included).", buckets=LATENCY_BUCKETS)
QUEUE_DEPTH = Gauge("fusionapp_queue_depth", "Items waiting for the model.", multiprocess_mode="livesum")
REJECTED = Counter("fusionapp_rejected_requests", "Requests answered 503: the queue was full, the request "
                   "waited past --timeout-s, or the model was still loading.", ["reason"])
MODEL_LOAD_SECONDS = Gauge("fusionapp_model_load_seconds", "Time to load the model and warm it up, per "
                           "process.", multiprocess_mode="max")


def metrics_text() -> tuple[bytes, str]:
    """The exposition text of every process's metrics, and its content type."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=folder)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def process_exited() -> None:
    """Drop this process's live gauges from the multiprocess files, so a gone worker's queue depth
    is not summed forever."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())


class RequestMetrics:
    """Count every answered request by route and status, time it, and write its line to `log`
    (fusionapp.serve.access_log.AccessLog), if any."""

    def __init__(self, app, log=None):
        self.app, self.log = app, log

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        route = path if path in ROUTES else "other"
        # A request the app returned from without answering is one whose client went away before
        # its body arrived.
        began, status = time.perf_counter(), CLIENT_CLOSED

        async def counted_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counted_send)
        except BaseException:
            if status == CLIENT_CLOSED:  # the server answers it with a 500
                status = 500
            raise
        finally:
            seconds = time.perf_counter() - began
            REQUESTS.labels(route, str(status)).inc()
            LATENCY.labels(route).observe(seconds)
            if self.log is not None:
                self.log.request(scope, status, seconds)
