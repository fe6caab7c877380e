"""`--strategy`: which tf.distribute strategy trains the model, and this process's part in it.

MultiWorkerMirroredStrategy must exist before the process runs any other TensorFlow op, so
`train` picks the strategy before it reads data or adapts preprocessing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from fusionapp.compat import fix_multi_worker_logs
from fusionapp.errors import FusionError, one_line

@dataclass(frozen=True)
class Placement:
    """The strategy and where this process stands in it."""

    strategy: object  # a tf.distribute.Strategy
    name: str  # the resolved name: "default", "mirrored" or "multi-worker"
    num_workers: int = 1
    worker_index: int = 0
    is_chief: bool = True

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    def global_batch_size(self, per_replica: int) -> int:
        return per_replica * self.replicas


def cluster_spec() -> dict | None:
    """The `cluster` and `task` of TF_CONFIG, or None when it is unset."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        task_type, task_index = task["type"], int(task["index"])
        size = len(cluster[task_type])
    except (ValueError, KeyError, TypeError) as error:
        raise FusionError(f"TF_CONFIG is not a valid cluster description ({error.__class__.__name__}: {error}); "
                          'expected {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", '
                          '"index": 0}}') from None
    if not 0 <= task_index < size:
        raise FusionError(f"TF_CONFIG: task index {task_index} is outside the {size} '{task_type}' addresses")
    return {"cluster": cluster, "type": task_type, "index": task_index}


def resolve_name(name: str) -> str:
    """`auto` -> multi-worker under a TF_CONFIG with several tasks, mirrored with several GPUs,
    else default. (The name itself was checked with the other settings.)"""
    if name != "auto":
        return name
    spec = cluster_spec()
    if spec and sum(len(addresses) for addresses in spec["cluster"].values()) > 1:
        return "multi-worker"
    import tensorflow as tf

    return "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "default"


def make_placement(name: str) -> Placement:
    resolved = resolve_name(name)
    spec = cluster_spec() if resolved == "multi-worker" else None
    if resolved == "multi-worker" and spec is None:
        raise FusionError("--strategy multi-worker needs TF_CONFIG describing the cluster and this worker's "
                          "place in it (see the README, 'Training on several GPUs or machines')")
    import tensorflow as tf

    if resolved == "default":
        return Placement(tf.distribute.get_strategy(), resolved)
    if resolved == "mirrored":
        # All GPUs; without GPUs, every logical CPU device (one, unless the process configured more).
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return Placement(tf.distribute.MirroredStrategy([device.name for device in devices]), resolved)
    workers = _worker_tasks(spec["cluster"])
    task = (spec["type"], spec["index"])
    if task not in workers:
        raise FusionError(f"TF_CONFIG: this task is a '{spec['type']}'; fusionapp trains on 'chief' and "
                          "'worker' tasks only")
    fix_multi_worker_logs()
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except (RuntimeError, ValueError) as error:
        raise FusionError(f"cannot start multi-worker training: {one_line(error)}") from None
    return Placement(strategy, resolved, num_workers=len(workers), worker_index=workers.index(task),
                     is_chief=task == workers[0])


def _worker_tasks(cluster: dict) -> list[tuple[str, int]]:
    """Every training task in order: the chief first (when the cluster names one), then the workers.
    The first is the chief, the only one that writes the run folder."""
    return [(kind, i) for kind in ("chief", "worker") for i in range(len(cluster.get(kind, [])))]
