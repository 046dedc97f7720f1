"""Running `async def` tasks in a worker: one event loop per worker, `concurrency` items at once.

A decorated `async def` function travels as an [AsyncCall][], and each chunk's `ChunkCall`
carries the call's `concurrency`; `run_chunk` hands such a chunk to [run_async_chunk][], so
every backend (process, thread, serial, Dask) runs them the same way.

Decisions:

* **One loop per worker, kept across chunks.** Each thread that runs chunks (a worker
  process's main thread, a thread backend's worker, a Dask worker thread, the serial
  backend's caller) gets its own event loop from an [EventLoops][] the first time it runs
  an async chunk, and keeps it, so a client or session a task caches in a global stays
  bound to a live loop. The owner closes its loops when it shuts down.
* **`concurrency` items at once, from the worker's chunk.** `concurrency` runner
  coroutines take the chunk's items in order; the core makes the chunks of such a task whole
  waves of `concurrency` items (`resolve_chunksize(wave=...)`), so a worker always has
  that many to await. A `careful` chunk (sent after a worker died, to find the item to
  blame) runs one item at a time.
* **Cancelled with its job.** The thread backend cancels a running chunk on its thread's
  loop ([EventLoops.cancel][]); the items not finished then fail with
  `asyncio.CancelledError`, and the chunk returns at once, freeing the thread.
* **Per item, as for plain tasks.** Each item has its own error, its own seed (a context
  variable, set in the runner's own context), its own `report_progress` position and, with
  `timeout`, its own deadline: the loop cancels an overrunning item at its timeout and
  records a `TaskTimeoutError`, and the worker goes on. A coroutine that blocks the loop
  (it never awaits) cannot be cancelled: in a worker process the manager then kills the
  worker [ASYNC_TIMEOUT_GRACE_SECONDS][] after the item's timeout, as for a plain task.
* **What the slot says.** With one item at a time its position is written as for plain
  tasks (a worker's death is blamed on it). With several at once the slot holds the oldest
  running item (whose deadline comes first) and `SLOT_SHARED` says that neither a death
  nor a timeout kill there can be blamed on it (the loop was blocked, by whichever item):
  the chunk is sent again one item at a time, where the culprit fails alone.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Sequence
from typing import Any

from .. import _reporting, _seeding
from ._event_loops import EventLoops
from ._protocol import (
    POSITION_RUNNING,
    SLOT_POSITION,
    SLOT_SHARED,
    SLOT_STARTED,
    AsyncCall,
    ErrorInfo,
    format_traceback,
    timeout_error,
)

#: The loop cancels an item at its timeout; the process manager kills the worker only if
#: the item is still running this much later (a coroutine that blocks the loop and so
#: cannot be cancelled). One second is far above the loop's own latency (milliseconds),
#: so a cancellable item is never killed, and short next to any timeout worth setting.
ASYNC_TIMEOUT_GRACE_SECONDS = 1.0

#: After an item is cancelled at its timeout, how long its runner waits for the
#: cancellation to finish before it moves on (a task that swallows `CancelledError`).
CANCEL_WAIT_SECONDS = 0.1


class _AsyncChunk:
    """The state of one async chunk while its runners await its items on the worker's loop."""

    def __init__(
        self,
        call: AsyncCall,
        indices: Sequence[int],
        items: Sequence[Any],
        *,
        count: int,
        concurrency: int,
        timeout: float | None,
        slot: Any,
        propagate: tuple[type[BaseException], ...],
        profile: bool,
    ) -> None:
        self.call, self.indices, self.items = call, indices, items
        self.count, self.concurrency, self.timeout = count, concurrency, timeout
        self.slot, self.propagate = slot, propagate
        self.values: list[Any] = [None] * count
        self.settled = [False] * count
        self.errors: dict[int, ErrorInfo] = {}
        self.durations: list[float] | None = [0.0] * count if profile else None
        self.running: collections.OrderedDict[int, float] = collections.OrderedDict()  # position -> started
        self.grace = ASYNC_TIMEOUT_GRACE_SECONDS if timeout is not None else 0.0
        # One item at a time: its position is exact, written for blame as on the plain path.
        # Several: written only for timeouts (the oldest item), with SLOT_SHARED set.
        self.track = slot is not None and (concurrency == 1 or timeout is not None)
        self.stopping = False  # our own cancellation of the runners (Ctrl-C): not an item's error

    async def run_all(self, seeder: _seeding.ItemSeeder | None) -> None:
        """`concurrency` runners, each taking the next item in input order until none is left."""
        positions = iter(range(self.count))

        async def runner() -> None:
            for position in positions:
                await self.run_one(position, seeder)

        runners = [asyncio.ensure_future(runner()) for _ in range(self.concurrency)]
        try:
            await asyncio.gather(*runners)
        finally:
            self.stopping = True
            for pending in runners:
                pending.cancel()
            await asyncio.wait(runners)

    async def run_one(self, position: int, seeder: _seeding.ItemSeeder | None) -> None:
        """One item, in its runner's context: its seed, its position, its deadline, its error."""
        if seeder is not None:
            seeder.seed(self.indices[position])
        _reporting.set_position(position)
        started = time.monotonic()
        self.running[position] = started
        self.mark()
        try:
            self.values[position] = await self.await_item(position)
        except self.propagate:
            raise
        except asyncio.CancelledError as error:
            if self.stopping:
                raise
            self.errors[position] = (error, format_traceback(error))  # the task cancelled itself
        except _TimedOut:
            self.errors[position] = (timeout_error(self.indices[position], self.timeout), "")
        except BaseException as error:
            self.errors[position] = (error, format_traceback(error))
        finally:
            self.settled[position] = True
            del self.running[position]
            if self.durations is not None:
                self.durations[position] = time.monotonic() - started
            self.mark()

    async def await_item(self, position: int) -> Any:
        coroutine = self.call.function(self.items[position])
        if self.timeout is None:
            return await coroutine
        item = asyncio.ensure_future(coroutine)
        finished, _ = await asyncio.wait((item,), timeout=self.timeout)
        if finished:
            return item.result()
        item.cancel()
        await asyncio.wait((item,), timeout=CANCEL_WAIT_SECONDS)
        raise _TimedOut

    def cancel_unsettled(self) -> None:
        """The chunk was cancelled with its job: the items it had not finished fail so."""
        for position, settled in enumerate(self.settled):
            if not settled:
                error = asyncio.CancelledError("cancelled with its job")
                self.errors[position] = (error, "")

    def mark(self) -> None:
        """Tell the manager which item runs (the oldest, when several do) and when its clock started."""
        if not self.track:
            return
        slot = self.slot
        if self.running:
            position, started = next(iter(self.running.items()))
            slot[SLOT_STARTED] = started + self.grace  # written before the position: see process.py
            slot[SLOT_POSITION] = position
        else:
            slot[SLOT_POSITION] = POSITION_RUNNING


class _TimedOut(Exception):
    """The item overran its timeout and was cancelled (never the item's own `TimeoutError`)."""


def run_async_chunk(
    call: AsyncCall,
    indices: Sequence[int],
    items: Sequence[Any],
    *,
    count: int,
    concurrency: int,
    loops: EventLoops,
    timeout: float | None,
    seed: int | None,
    slot: Any,
    careful: bool,
    propagate: tuple[type[BaseException], ...],
    reporter: _reporting.Reporter | None,
    item_seconds: list[float] | None,
    seed_globals: bool,
    restore_globals: bool,
) -> tuple[list[Any], dict[int, ErrorInfo], int, float]:
    """Run the first `count` items of an async chunk; return what `run_chunk` returns.

    A `careful` chunk runs one item at a time; seeded items seed the global generators only
    then (with several at once their draws would interleave: [item_rng][parmap.item_rng]
    is the reproducible one).
    """
    concurrency = 1 if careful else max(1, min(concurrency, count))
    chunk = _AsyncChunk(
        call,
        indices,
        items,
        count=count,
        concurrency=concurrency,
        timeout=timeout,
        slot=slot,
        propagate=propagate,
        profile=item_seconds is not None,
    )
    if slot is not None:
        slot[SLOT_SHARED] = 1.0 if concurrency > 1 else 0.0
    try:
        with _reporting.installed(reporter, chunk.values):
            item_seeds = _seeding.item_context(
                seed, seed_globals=seed_globals and concurrency == 1, restore_globals=restore_globals
            )
            with item_seeds as seeder:
                started = time.perf_counter()
                try:
                    loops.run(chunk.run_all(seeder))
                except asyncio.CancelledError:  # the job was cancelled (EventLoops.cancel)
                    chunk.cancel_unsettled()
                compute = time.perf_counter() - started
    finally:
        if slot is not None:
            slot[SLOT_SHARED] = 0.0
    if chunk.durations is not None and item_seconds is not None:
        item_seconds.extend(chunk.durations)
    return chunk.values, chunk.errors, count, compute
