"""The server processes: uvicorn on one port, one process or `--workers N`, each loading the model
once; drained on SIGTERM (fusionapp.serve.draining). A single process loads in the background while
it already answers `/health`; each of several workers loads before it accepts connections.

Kubernetes' probes want two answers: `/health` (the process is alive; it answers while the model
loads) and `/ready` (503 until the model is loaded and warmed up, then 200), decided by the app
(fusionapp.serve.app.ServingApp.ready).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time

import uvicorn

from fusionapp.console import load_tensorflow
from fusionapp.errors import FusionError, one_line
from fusionapp.runs.load import load_run, resolve_run_dir
from fusionapp.serve.app import ServingApp, create_app
from fusionapp.serve.draining import DrainingHttp, DrainingServer
from fusionapp.serve.prometheus import MODEL_LOAD_SECONDS, process_exited
from fusionapp.settings import ServeSettings

# How `--workers` processes learn what to serve: they are spawned afresh and import the app by name.
CONFIG_VARIABLE = "FUSIONAPP_SERVE_CONFIG"


def run_server(model: str, host: str, port: int, settings: ServeSettings) -> None:
    """Serve `model` until SIGTERM or Ctrl+C; returns once in-flight requests are answered."""
    resolve_run_dir(model)  # a wrong path is the user's one-line error, before any process starts
    leave_a_core_to_the_event_loop(settings.workers)
    options = dict(host=host, port=port, log_level="warning", access_log=False, lifespan="on",
                   timeout_graceful_shutdown=settings.grace_s, http=DrainingHttp)
    # uvicorn raises SIGTERM again once it has drained; a handler that ignores it lets the command
    # return, so a deliberate stop exits 0 as orchestrators expect.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    temporary = None
    try:
        if settings.workers == 1:
            process = ServerProcess(model, settings)
            DrainingServer(uvicorn.Config(process, **options)).run()
            if process.error is not None:
                raise process.error
            return
        os.environ[CONFIG_VARIABLE] = json.dumps({"model": model, "settings": dataclasses.asdict(settings)})
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            temporary = tempfile.mkdtemp(prefix="fusionapp-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = temporary
        # uvicorn's worker processes run its own server: they drain connections (DrainingHttp) but
        # not the accept queue the processes share.
        uvicorn.run(f"{__name__}:{worker_app.__name__}", factory=True, workers=settings.workers, **options)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)


def leave_a_core_to_the_event_loop(workers: int) -> None:
    """TensorFlow's ops of each server process use the cores but one (at least one), unless
    TF_NUM_INTRAOP_THREADS says otherwise; set before the first op, so it holds for every process.

    By default they take every core, and then a batch and the event loop (reading requests, writing
    answers) fight for them: on 2 cores, one intra-op thread gave about 10% more requests/s under
    load than TensorFlow's default of two."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(max(1, cores // workers - 1)))


def worker_app():
    """The app of one `--workers` process (uvicorn calls this in each process it spawns), with the
    model loaded: a worker accepts connections only once it is ready, so with several workers
    sharing the port none answers 503 while another is still loading."""
    config = json.loads(os.environ[CONFIG_VARIABLE])
    load_tensorflow()
    process = ServerProcess(config["model"], ServeSettings(**config["settings"]))
    process.load()
    if process.error is not None:
        raise process.error
    return process


class ServerProcess:
    """The ASGI app of a server process: the serving app (fusionapp.serve.app), one without a model
    (not ready) while the model loads in a thread at start-up, then the one over it."""

    def __init__(self, model: str, settings: ServeSettings):
        self.model, self.settings = model, settings
        self.app = ServingApp(settings)
        self.error: Exception | None = None

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        await self.app(scope, receive, send)

    async def _lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if not self.app.ready:
                    threading.Thread(target=self.load, args=(True,), name="fusionapp-load", daemon=True).start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                process_exited()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def load(self, stop_on_error: bool = False) -> None:
        """Load the model and warm it up; on failure keep the error, and with `stop_on_error` stop
        the server, which can never be ready."""
        began = time.perf_counter()
        try:
            run = load_run(self.model)
            loaded = time.perf_counter() - began
            app = create_app(run, self.settings, self.settings.max_batch, loaded)
        except Exception as error:  # noqa: BLE001 - kept for run_server to report as one line
            self.error = error if isinstance(error, FusionError) else FusionError(
                f"cannot load {self.model}: {type(error).__name__}: {one_line(error)}")
            if stop_on_error:
                os.kill(os.getpid(), signal.SIGTERM)
            return
        MODEL_LOAD_SECONDS.set(time.perf_counter() - began)
        # TensorFlow and Keras leave hundreds of thousands of long-lived objects behind; a full
        # garbage collection walking them all stalls every request in flight for a few hundred ms.
        gc.collect()
        gc.freeze()
        self.app = app
        warmed = app.model.predictor.warmed
        print(f"Ready in {time.perf_counter() - began:.1f} s: the model loaded in {loaded:.1f} s, warmed up at "
              f"batch sizes 1-{warmed.largest} of {self.settings.max_batch} in {warmed.seconds:.1f} s",
              file=sys.stderr, flush=True)
