"""The wall time a search keeps to: counted from the start of the process (TensorFlow's import
included), split into the trials and the reserve that builds, calibrates, scores and saves the
ensemble after them."""

from __future__ import annotations

import os
import time

# The share of the limit kept for what follows the trials, and its floor and ceiling in seconds.
RESERVE_SHARE = 0.12
RESERVE_BOUNDS = (20.0, 300.0)
# A trial that cannot have this many seconds of training before the trials' end is not started.
SHORTEST_TRIAL_S = 8.0


def process_start() -> float:
    """When this process started (time.time()'s clock); now where the system does not say."""
    try:
        with open("/proc/self/stat") as stat:
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as system:
            boot = next(int(line.split()[1]) for line in system if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


class Budget:
    """`limit_s` seconds from `started`: `deadline` for the command, `trials_end` for its trials."""

    def __init__(self, limit_s: float, started: float | None = None, deadline: float | None = None):
        self.limit_s = limit_s
        self.deadline = deadline if deadline is not None else (started or time.time()) + limit_s
        reserve = min(max(limit_s * RESERVE_SHARE, RESERVE_BOUNDS[0]), RESERVE_BOUNDS[1])
        self.trials_end = self.deadline - min(reserve, limit_s / 2)

    def left(self) -> float:
        """Seconds until the deadline."""
        return self.deadline - time.time()

    def trials_left(self) -> float:
        return self.trials_end - time.time()

    def room_for_trial(self, after_network_s: float) -> bool:
        """Whether a trial whose work after the network takes `after_network_s` can still train."""
        return self.trials_left() - after_network_s >= SHORTEST_TRIAL_S
