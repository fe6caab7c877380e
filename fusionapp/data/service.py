"""A tf.data service dispatcher (`train --data-service`), asked whether it answers before a run
depends on it: TensorFlow's own client waits for one forever, silently."""

from __future__ import annotations

from fusionapp.errors import FusionError


def wait_for_dispatcher(address: str, timeout_s: float, say) -> None:
    """Return once the dispatcher at `address` (grpc://HOST:PORT) accepts a connection; a one-line
    FusionError naming it when none does within `timeout_s` seconds."""
    import grpc

    say(f"Waiting up to {timeout_s:g} s for the tf.data service dispatcher at {address} ...")
    channel = grpc.insecure_channel(address.split("://", 1)[-1])
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        raise FusionError(f"--data-service {address}: no dispatcher answered within {timeout_s:g} s (start one "
                          "with `fusionapp data-service dispatcher`, or wait longer with "
                          "--data-service-timeout)") from None
    finally:
        channel.close()
