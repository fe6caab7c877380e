"""Dynamic batching: items of concurrent requests gathered into one call of the raw-input function.

Requests put their items on a bounded queue and wait; one thread takes up to `max_batch` items at a
time, as soon as that many are waiting, or `wait_s` after the oldest arrived, or once it is as large
as the last batch with no other request being read, and hands each item its own answer. The model is called from this one thread only, so the event loop never blocks on it and
a batch is formed while the previous one runs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque

from fusionapp.serve.metrics import BATCH_SECONDS, BATCH_SIZE, QUEUE_DEPTH, REJECTED

# What a client refused with 503 is told to wait before it retries (the Retry-After header).
RETRY_AFTER_S = 1


class Overloaded(Exception):
    """The queue is full, or a request waited past its timeout: a 503 with Retry-After."""


class _Entry:
    __slots__ = ("item", "loop", "future", "arrived", "deadline", "dropped")

    def __init__(self, item, loop, future, arrived: float, deadline: float):
        self.item, self.loop, self.future = item, loop, future
        self.arrived, self.deadline, self.dropped = arrived, deadline, False


class Batcher:
    """`predict(items) -> answers` called on batches of the items `submit` is given."""

    def __init__(self, predict, max_batch: int, wait_s: float, max_queue: int, timeout_s: float):
        self.predict, self.max_batch, self.wait_s = predict, max_batch, wait_s
        self.max_queue, self.timeout_s = max_queue, timeout_s
        self._pending: deque[_Entry] = deque()
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self._arriving = 0
        self._last_size = max_batch  # nothing known yet: the first batch waits for its window

    def arrival(self) -> "Arrival":
        """Called as a request that will submit items starts to be read, so that a batch window
        does not close on it (`_formed`)."""
        with self._ready:
            self._arriving += 1
        return Arrival(self)

    async def submit(self, items: list, arrival: "Arrival | None" = None) -> list:
        """The answers to `items`, in order; Overloaded when they cannot be taken or timely answered.
        `arrival`, the request's, ends as its items are queued, in one step, so the batch window
        never closes between the two."""
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        entries = [_Entry(item, loop, loop.create_future(), now, now + self.timeout_s) for item in items]
        with self._ready:
            if arrival is not None:
                arrival.end_locked()
            # An empty queue takes any request, so a /predict/batch longer than the bound still passes.
            if self._pending and len(self._pending) + len(entries) > self.max_queue:
                REJECTED.labels("queue_full").inc()
                raise Overloaded(f"the server is at capacity ({len(self._pending)} items queued); retry shortly")
            self._pending.extend(entries)
            QUEUE_DEPTH.set(len(self._pending))
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="fusionapp-batcher", daemon=True)
                self._thread.start()
            self._ready.notify()
        try:
            return await asyncio.wait_for(asyncio.gather(*(entry.future for entry in entries)), self.timeout_s)
        except asyncio.TimeoutError:
            for entry in entries:
                entry.dropped = True
            REJECTED.labels("timeout").inc()
            raise Overloaded(f"not answered within {self.timeout_s:g} s; retry later") from None

    def _serve(self) -> None:
        import os, json as _json
        trace = os.environ.get("XTRACE")
        log = []
        while True:
            t0 = time.perf_counter()
            batch = self._next_batch()
            t1 = time.perf_counter()
            if batch:
                self._answer(batch)
                if trace:
                    log.append((t0, t1, time.perf_counter(), len(batch), min(e.arrived for e in batch)))
                    if len(log) % 100 == 0:
                        with open(trace, "w") as h:
                            _json.dump(log, h)

    def _next_batch(self) -> list[_Entry]:
        """Wait for a first item, then for more until the batch is full or the oldest has waited
        `wait_s`; items whose requests gave up are dropped here, never predicted late."""
        with self._ready:
            while not self._live():
                self._ready.wait()
            window_end = self._pending[0].arrived + self.wait_s
            while len(self._pending) < self.max_batch and not self._formed() and \
                    (left := window_end - time.monotonic()) > 0:
                self._ready.wait(left)
            batch = [self._pending.popleft() for _ in range(min(self.max_batch, len(self._pending)))]
            self._last_size = len(batch)
            QUEUE_DEPTH.set(len(self._pending))
        now = time.monotonic()
        return [entry for entry in batch if not entry.dropped and entry.deadline > now]

    def _formed(self) -> bool:
        """Whether the batch is as large as the last one and no request is being read: the clients
        that were there last time are all in, so waiting longer would only add latency (a lone
        client is answered at once, not after the window)."""
        return not self._arriving and len(self._pending) >= self._last_size

    def _live(self) -> bool:
        """Whether an item is waiting, once those of requests that gave up are let go."""
        now = time.monotonic()
        if any(entry.dropped or entry.deadline <= now for entry in self._pending):
            self._pending = deque(entry for entry in self._pending if not entry.dropped and entry.deadline > now)
            QUEUE_DEPTH.set(len(self._pending))
        return bool(self._pending)

    def _answer(self, batch: list[_Entry]) -> None:
        began = time.perf_counter()
        try:
            answers, failure = self.predict([entry.item for entry in batch]), None
        except Exception as error:  # noqa: BLE001 - a bug of ours: every request of the batch gets its 500
            logging.getLogger("fusionapp.serve").exception("error while predicting a batch")
            answers, failure = [None] * len(batch), error
        BATCH_SECONDS.observe(time.perf_counter() - began)
        BATCH_SIZE.observe(len(batch))
        by_loop: dict = {}
        for entry, answer in zip(batch, answers):
            by_loop.setdefault(entry.loop, []).append((entry.future, answer))
        for loop, settled in by_loop.items():
            try:
                # One wake-up of each event loop per batch, not one per item.
                loop.call_soon_threadsafe(_settle, settled, failure)
            except RuntimeError:  # that loop has closed: nobody is waiting any more
                pass


class Arrival:
    """A request being read, from `Batcher.arrival()` until its items are submitted or it ends
    without any (`close`)."""

    def __init__(self, batcher: Batcher):
        self.batcher, self.open = batcher, True

    def end_locked(self) -> None:
        if self.open:
            self.open = False
            self.batcher._arriving -= 1
            self.batcher._ready.notify()

    def close(self) -> None:
        if self.open:  # only the event loop's thread changes it
            with self.batcher._ready:
                self.end_locked()


def _settle(settled: list, failure: Exception | None) -> None:
    for future, answer in settled:
        if future.done():  # its request timed out meanwhile
            continue
        if failure is not None:
            future.set_exception(failure)
        else:
            future.set_result(answer)
