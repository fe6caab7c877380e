"""`fusionapp data-service dispatcher|worker`: TensorFlow's tf.data service, whose workers run the
training input pipeline (reading and decoding images) for `train --data-service`."""

from __future__ import annotations

import click

from fusionapp.cli.group import cli


@cli.group("data-service")
def data_service():
    """Run a tf.data service dispatcher or worker for `train --data-service grpc://HOST:PORT`.

    \b
    fusionapp data-service dispatcher --port 5050
    fusionapp data-service worker --dispatcher localhost:5050 --port 5051   # one per machine
    fusionapp train big.parquet --data-service grpc://localhost:5050

    Workers read the image files by the paths in the table: they need the same files at the same paths.
    """


@data_service.command()
@click.option("--port", type=click.IntRange(1, 65535), default=5050, show_default=True, help="Port to listen on.")
@click.option("--work-dir", type=click.Path(file_okay=False),
              help="Folder where the dispatcher keeps its journal, so a restarted dispatcher carries on.")
def dispatcher(port, work_dir):
    """Start a dispatcher and serve until interrupted."""
    import tensorflow as tf

    config = tf.data.experimental.service.DispatcherConfig(port=port, work_dir=work_dir,
                                                           fault_tolerant_mode=bool(work_dir))
    server = tf.data.experimental.service.DispatchServer(config)
    click.echo(f"tf.data service dispatcher at {server.target}", err=True)
    server.join()


@data_service.command()
@click.option("--dispatcher", "address", required=True, help="The dispatcher, HOST:PORT.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port to listen on (0: any free one).")
@click.option("--worker-address", help="HOST:PORT the dispatcher and clients reach this worker at "
                                       "(default: localhost and the port).")
def worker(address, port, worker_address):
    """Start a worker that registers with the dispatcher and serve until interrupted."""
    import tensorflow as tf

    address = address.split("://", 1)[-1]
    extra = {"worker_address": worker_address} if worker_address else {}
    config = tf.data.experimental.service.WorkerConfig(dispatcher_address=address, port=port, **extra)
    server = tf.data.experimental.service.WorkerServer(config)
    click.echo(f"tf.data service worker registered with {address}", err=True)
    server.join()
