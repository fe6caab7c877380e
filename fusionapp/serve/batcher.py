"""Dynamic batching: items of concurrent requests gathered into one call of the raw-input function.

Requests put their items on a bounded queue and wait; one thread takes up to `max_batch` items at a
time, as soon as that many are waiting, or once it holds as many items as were in flight when the
last answers went out with no other request being read, or at the latest `wait_s` after its oldest
item arrived or after the answers of the batch before went out, whichever is later, and hands each
item its own answer. The model is called from this one thread only, so the event loop never blocks
on it.

The window counts from the previous answers, not only from the oldest arrival, so that the clients a
batch answers can send their next request and join the requests that queued while it ran: closed-loop
clients then settle into one full batch at a time instead of two alternating half batches, whose model
calls share the cores with the event loop answering and reading the other half (docs/serving.md
measures both).

Time comes from a `Clock`, so that tests can move it themselves instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque

from fusionapp.serve.prometheus import BATCH_SECONDS, BATCH_SIZE, QUEUE_DEPTH, REJECTED

# What a client refused with 503 is told to wait before it retries (the Retry-After header).
RETRY_AFTER_S = 1


class Overloaded(Exception):
    """The queue is full, or a request waited past its timeout: a 503 with Retry-After."""


class Clock:
    """Time as the batcher reads it: monotonic seconds, waits on its condition, and timers on an
    event loop. Tests give the batcher one that moves only when they say (tests/test_serve.py)."""

    def now(self) -> float:
        return time.monotonic()

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        """Wait on `condition` (held) until it is notified or `timeout` seconds have passed."""
        condition.wait(timeout)

    def call_later(self, loop: asyncio.AbstractEventLoop, delay: float, callback):
        """Call `callback` on `loop` in `delay` seconds; the handle's `cancel()` stops it."""
        return loop.call_later(delay, callback)


class _Entry:
    __slots__ = ("item", "loop", "future", "arrived", "deadline", "dropped", "batch_size")

    def __init__(self, item, loop, future, arrived: float, deadline: float):
        self.item, self.loop, self.future = item, loop, future
        self.arrived, self.deadline, self.dropped = arrived, deadline, False
        self.batch_size = 0  # the size of the batch it was predicted in


class Batcher:
    """`predict(items) -> answers` called on batches of the items `submit` is given."""

    def __init__(self, predict, max_batch: int, wait_s: float, max_queue: int, timeout_s: float,
                 clock: Clock = Clock()):
        self.predict, self.max_batch, self.wait_s = predict, max_batch, wait_s
        self.max_queue, self.timeout_s, self.clock = max_queue, timeout_s, clock
        self._pending: deque[_Entry] = deque()
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self._arriving = 0
        # How many items a batch waits for (within its window): those of the last batch whose
        # requests still wait (their clients may send again) and those that queued meanwhile.
        # Nothing known yet: the first batch waits for its window.
        self._target = max_batch
        self._batch: list[_Entry] = []  # the batch being predicted or answered
        # When the answers of the last batch were handed to their requests; None while a batch runs
        # or its answers are on their way to the event loop.
        self._answered_at: float | None = 0.0
        self._unsettled = 0  # event loops that still have answers of the last batch to hand out

    def arrival(self) -> "Arrival":
        """Called as a request that will submit items starts to be read, so that a batch window
        does not close on it (`_formed`)."""
        with self._ready:
            self._arriving += 1
        return Arrival(self)

    async def submit(self, items: list, arrival: "Arrival | None" = None) -> list:
        """The answers to `items`, in order; Overloaded when they cannot be taken or timely answered."""
        return await self.put(items, arrival).answers()

    def put(self, items: list, arrival: "Arrival | None" = None) -> "Waiting":
        """Queue `items` now (Overloaded if the queue cannot take them); `answers()` of the result
        waits for them. `arrival`, the request's, ends as its items are queued, in one step, so the
        batch window never closes between the two."""
        loop = asyncio.get_running_loop()
        now = self.clock.now()
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
        return Waiting(self, entries, loop)

    def _serve(self) -> None:
        while True:
            batch = self._next_batch()
            if batch:
                self._answer(batch)

    def _next_batch(self) -> list[_Entry]:
        """Wait for a first item, then for more until the batch is full or formed (`_formed`), or
        `wait_s` has passed since the oldest arrived and since the last answers went out; items whose
        requests gave up are dropped here, never predicted late."""
        clock = self.clock
        with self._ready:
            while not self._live():
                clock.wait(self._ready, None)
            while len(self._pending) < self.max_batch and not self._formed():
                if self._answered_at is None:  # the last answers are not out yet: no window has begun
                    if self.wait_s <= 0:
                        break
                    clock.wait(self._ready, self.wait_s)
                    continue
                left = max(self._pending[0].arrived, self._answered_at) + self.wait_s - clock.now()
                if left <= 0:
                    break
                clock.wait(self._ready, left)
            batch = [self._pending.popleft() for _ in range(min(self.max_batch, len(self._pending)))]
            QUEUE_DEPTH.set(len(self._pending))
        now = clock.now()
        return [entry for entry in batch if not entry.dropped and entry.deadline > now]

    def _formed(self) -> bool:
        """Whether the last answers are out, no request is being read and the batch holds as many
        items as were in flight when those answers went out: the clients that were there last time
        are all in, so waiting longer would only add latency (a lone client is answered at once, not
        after the window)."""
        return self._answered_at is not None and not self._arriving and len(self._pending) >= self._target

    def _live(self) -> bool:
        """Whether an item is waiting, once those of requests that gave up are let go."""
        now = self.clock.now()
        if any(entry.dropped or entry.deadline <= now for entry in self._pending):
            self._pending = deque(entry for entry in self._pending if not entry.dropped and entry.deadline > now)
            QUEUE_DEPTH.set(len(self._pending))
        return bool(self._pending)

    def _answer(self, batch: list[_Entry]) -> None:
        with self._ready:
            self._answered_at, self._batch = None, batch
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
            entry.batch_size = len(batch)
            by_loop.setdefault(entry.loop, []).append((entry.future, answer))
        with self._ready:
            self._unsettled = len(by_loop)
        for loop, settled in by_loop.items():
            try:
                # One wake-up of each event loop per batch, not one per item.
                loop.call_soon_threadsafe(self._settle, settled, failure)
            except RuntimeError:  # that loop has closed: nobody is waiting any more
                self._settled_one()

    def _settle(self, settled: list, failure: Exception | None) -> None:
        """On an event loop: hand each request its answer, then start the next batch's window."""
        for future, answer in settled:
            if future.done():  # its request timed out meanwhile
                continue
            if failure is not None:
                future.set_exception(failure)
            else:
                future.set_result(answer)
        self._settled_one()

    def _settled_one(self) -> None:
        with self._ready:
            self._unsettled -= 1
            if self._unsettled <= 0:
                now = self._answered_at = self.clock.now()
                # Requests that gave up are not waited for: their items will never be in a batch.
                waiting = sum(not entry.dropped for entry in self._batch) + \
                    sum(not entry.dropped and entry.deadline > now for entry in self._pending)
                self._target, self._batch = min(waiting, self.max_batch), []
                self._ready.notify()


class Waiting:
    """The items of one request, queued: `answers()` waits for them, and they are dropped with a
    503 once the request has waited `timeout_s`."""

    def __init__(self, batcher: Batcher, entries: list[_Entry], loop):
        self.batcher, self.entries = batcher, entries
        self._timer = batcher.clock.call_later(loop, batcher.timeout_s, self._expire)

    async def answers(self) -> list:
        try:
            if len(self.entries) == 1:  # a /predict: no gathering to pay for
                return [await self.entries[0].future]
            return list(await asyncio.gather(*(entry.future for entry in self.entries)))
        except asyncio.CancelledError:
            self._drop()
            raise
        finally:
            self._timer.cancel()

    @property
    def batch_size(self) -> int:
        """The size of the largest batch its items were predicted in."""
        return max(entry.batch_size for entry in self.entries)

    def _expire(self) -> None:
        late = [entry for entry in self.entries if not entry.future.done()]
        if not late:
            return
        self._drop()
        REJECTED.labels("timeout").inc()
        error = Overloaded(f"not answered within {self.batcher.timeout_s:g} s; retry later")
        for entry in late:
            entry.future.set_exception(error)

    def _drop(self) -> None:
        for entry in self.entries:
            entry.dropped = True


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
