"""One job: the driver that runs the scheduling core against a backend.

The decisions (what to read, send, retry, settle, yield or raise) are the pure core's
(`parmap._core.SchedulingCore`); this module is the mechanism around it, run in the
caller's thread (or the thread of a `map_async`):

    input ──Read──> slice (sequences) / read here (map) / _Feeder thread (imap)
                        │ input_read
                        v
                  SchedulingCore ──Send──> backend.submit(ChunkTask)
                        ^                         │ deliver(outcome), any thread
                        │ chunk_done / lost / ... v
                        └──────────────── SimpleQueue of events
                  Yield ──> the caller;  Save ──> checkpoint;  Progress ──> the bar

`Job.batches` is a loop of six named steps: start (obtain the pool, read its parallelism
once, build the core), apply each decision, yield each batch, wait for the next event, feed
it to the core, and drain every event already queued before applying again. No handler
submits anything itself; an inline backend's outcome (serial) is simply already in the
queue when `submit` returns.

Where the input is read (the rule `map` and `imap` document):

* lists, tuples and ranges are sliced in the job's thread;
* `map` / `starmap` read any other iterable in the calling thread, a chunk at a time, as
  `Pool.map` does (an SQLite cursor works);
* `imap` / `imap_unordered` (and `map_async`, in its background thread) read it in a
  `_Feeder` thread, in a copy of the caller's `contextvars` context taken when the method
  was called (decimal contexts, context variables), so that results keep flowing while the
  input blocks. A chunk is cut when it is full or when the input has stalled for
  `INPUT_STALL_SECONDS` with items read, so a slow stream's results flow at once.
"""

from __future__ import annotations

import collections
import contextvars
import itertools
import os
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import Any, NamedTuple, NoReturn, Protocol, Union

from . import _sharing, errors
from ._chunking import CostEstimate
from ._config import MapOptions
from ._core import (
    IN_FLIGHT_PER_WORKER,
    Decision,
    Finish,
    Progress,
    Raise,
    Read,
    Save,
    SchedulingCore,
    Send,
    Yield,
    add_index_note,
)
from ._state import NO_SHARED
from ._stats import RunStats, StatsCollector
from ._zipping import SLICED_TYPES
from .backends import (
    Backend,
    ChunkArrived,
    ChunkDone,
    ChunkFailed,
    ChunkLost,
    ChunkProgress,
    ChunkTask,
    ChunkUndecodable,
    JobSpec,
    Outcome,
)
from .backends._protocol import user_frames
from .errors import SerializationError, TaskStopIteration

__all__ = ["IN_FLIGHT_PER_WORKER", "Job", "ProgressSink", "ResultStore", "add_index_note"]

#: While a chunk of a lazy input is being read, the driver checks this often whether the
#: input stalled (nothing read since the last check) with items read, and then has those
#: sent as a chunk: a stream of 10 items/s yields each result within 0.02-0.04 s of its
#: item plus its run time, while a fast generator (4,096 items in ~1 ms) is never cut.
INPUT_STALL_SECONDS = 0.02

_job_ids = itertools.count(1)
_chunk_ids = itertools.count(1)


class ProgressSink(Protocol):
    def update(self, n: float) -> object: ...


class ResultStore(Protocol):
    """Where finished results are kept across runs (a checkpoint); the engine skips what it holds."""

    def completed(self, start: int, stop: int) -> dict[int, Any]:
        """Results already stored for input indices in `[start, stop)`."""

    def save(self, results: Sequence[tuple[int, Any]]) -> None:
        """Store newly finished `(index, result)` pairs (the store batches its commits)."""


class _InputChunk(NamedTuple):
    """The feeder read a chunk of a lazy input."""

    start: int
    items: list[Any]


class _InputEnd(NamedTuple):
    """The lazy input is exhausted (`error` is None) or raised `error`."""

    error: BaseException | None


class _Cancel(NamedTuple):
    """Another thread cancelled the job ([Job.cancel][])."""


_Event = Union[Outcome, _InputChunk, _InputEnd, _Cancel]


class _Feeder:
    """Reads a lazy input in its own thread, a chunk per credit the core granted.

    The input is read with `deque.extend(islice(...))`, at C speed, and each item lands in
    `_items` as soon as the input gives it, where the driver's `cut_if_stalled` can take it
    while the read still blocks for the next one. State: `_items` is appended by the feeder
    thread only (a deque's appends and pops at the other end are thread-safe) and taken from
    under `_condition`, by the feeder when a chunk is full or by `cut_if_stalled`;
    `_credits`, `_size`, `_taken`, `_mark` and `_stopped` are written under `_condition`.
    Every chunk taken is queued under the lock, so chunks reach the driver in input order.
    """

    def __init__(
        self,
        iterator: Iterator[Any],
        events: queue.SimpleQueue[_Event],
        context: contextvars.Context,
        stats: StatsCollector,
    ) -> None:
        self._iterator = iterator
        self._events = events
        self._stats = stats
        self._condition = threading.Condition(threading.Lock())
        self._items: collections.deque[Any] = collections.deque()
        self._taken = 0  # input index of `_items[0]`
        self._credits = 0  # chunks asked for and not yet taken
        self._size = 1
        self._mark: tuple[int, int] | None = None  # (taken, read) at the last stall check
        self._stopped = False
        self._thread = threading.Thread(target=context.run, args=(self._run,), name="parmap-feeder", daemon=True)
        self._thread.start()

    def request(self, size: int) -> None:
        """Read one more chunk of at most `size` items."""
        with self._condition:
            self._credits += 1
            self._size = size
            self._condition.notify()

    def cut_if_stalled(self) -> None:
        """Called every `INPUT_STALL_SECONDS` while a read is outstanding: if nothing was
        read since the last call, queue what was read of the current chunk as a chunk now."""
        with self._condition:
            mark = (self._taken, len(self._items))
            if mark == self._mark and self._credits and self._items and not self._stopped:
                self._take(len(self._items))
            self._mark = mark

    def stop(self) -> None:
        """Read no more (a read in progress ends on its own; the thread is a daemon)."""
        with self._condition:
            self._stopped = True
            self._condition.notify()

    def _take(self, count: int) -> None:  # under the lock
        count = min(count, self._size)
        chunk = [self._items.popleft() for _ in range(count)]
        self._events.put(_InputChunk(self._taken, chunk))
        self._taken += count
        self._credits -= 1

    def _wait_for_credit(self) -> bool:  # under the lock
        while not self._credits and not self._stopped:
            self._condition.wait()
        return not self._stopped

    def _run(self) -> None:
        items, iterator = self._items, self._iterator
        error: BaseException | None = None
        try:
            while True:
                with self._condition:
                    if not self._wait_for_credit():
                        return
                    if len(items) >= self._size:
                        self._take(self._size)
                        continue
                    wanted = self._size - len(items)
                    before = self._taken + len(items)  # items read so far (a cut moves, never drops)
                started = time.perf_counter()
                items.extend(itertools.islice(iterator, wanted))
                self._stats.input_wait_seconds += time.perf_counter() - started
                with self._condition:
                    exhausted = self._taken + len(items) - before < wanted
                    if self._credits and len(items) >= self._size and not self._stopped:
                        self._take(self._size)
                if exhausted:
                    break
        except BaseException as raised:  # the user's iterable raised: the caller gets it
            error = raised
        with self._condition:
            while items:
                if not self._wait_for_credit():
                    return
                self._take(len(items))
            if not self._stopped:
                self._events.put(_InputEnd(error))


class StopIterationEscape(Exception):
    """Carries an item's `StopIteration` out of the job's generator.

    Raised as is, PEP 479 would turn it into `RuntimeError: generator raised StopIteration`
    and lose its type; the decorator's map methods unwrap it (`map` raises the item's
    `StopIteration`, `imap` a [TaskStopIteration][parmap.TaskStopIteration] caused by it).
    """

    def __init__(self, error: StopIteration) -> None:
        super().__init__(error)
        self.error = error

    def task_error(self) -> TaskStopIteration:
        """What an iterator (`imap`, `aimap`) raises instead: a `TaskStopIteration` with the
        item's index note, caused by the item's `StopIteration`."""
        wrapped = TaskStopIteration(f"a task raised StopIteration: {self.error!r}")
        notes = getattr(self.error, "__notes__", None)
        if notes:
            setattr(wrapped, "__notes__", list(notes))  # noqa: B010 - typed only on 3.11+
        wrapped.__cause__ = self.error
        return wrapped


def surfaced(error: BaseException) -> BaseException:
    """`error` made ready for a public method to raise: parmap's frames left out.

    The traceback keeps only what follows parmap's own leading frames (the task's frames
    where it ran in this process: thread and serial backends; the input iterator's), so a
    public method that raises the result (`raise surfaced(error)`, in its own frame) shows
    the caller one parmap frame, not the engine's eight. The `__cause__` (the worker's
    [RemoteTraceback][parmap.RemoteTraceback]) and the notes stay; raising the same
    object in its own `except` block sets no new `__context__`.
    """
    return error.with_traceback(user_frames(error.__traceback__))


def _escaping(error: BaseException) -> BaseException:
    """`error`, or a [StopIterationEscape][] carrying it when it would end a generator."""
    return StopIterationEscape(error) if isinstance(error, StopIteration) else error


class Job:
    """One map call: iterate `batches()` for results; `close()` cancels what is outstanding.

    Args:
        pool: returns the backend (called once, before the first chunk is cut).
        function: what runs on each item.
        items: the input.
        options: the call's options.
        ordered: yield in input order (else in completion order).
        progress: the bar, or None.
        store: a checkpoint to resume from and save into, or None.
        profile: measure each item's duration (`stats=True`).
        on_finish: called once with the run's statistics when the job ends.
        cost: the function's cost estimate, shared by its calls.
        read_here: read a lazy input in the thread that iterates the job (`map`), not in a
            feeder thread (`imap`).
    """

    def __init__(
        self,
        pool: Callable[[], Backend],
        function: Callable[[Any], Any],
        items: Iterable[Any],
        options: MapOptions,
        *,
        ordered: bool,
        progress: ProgressSink | None = None,
        store: ResultStore | None = None,
        profile: bool = False,
        on_finish: Callable[[RunStats], None] | None = None,
        cost: CostEstimate | None = None,
        read_here: bool = False,
    ) -> None:
        self._pool = pool
        self._backend: Backend | None = None
        self._options = options
        self._ordered = ordered
        self.progress = progress
        self._store = store
        self._on_finish = on_finish
        # The function's cost estimate outlives the job: the next call starts with chunks of
        # the right size instead of probing again.
        self._cost = cost if cost is not None else CostEstimate()
        self._events: queue.SimpleQueue[_Event] = queue.SimpleQueue()
        self._spec = JobSpec(
            job_id=next(_job_ids),
            function=function,
            deliver=self._deliver,
            timeout=options.timeout,
            max_tasks_per_worker=options.max_tasks_per_worker,
            seed=options.seed,
            profile=profile,
            concurrency=options.concurrency,
            shared=None if options.shared is NO_SHARED else _sharing.identify(options.shared),
        )
        self._sequence: Sequence[Any] | None = items if type(items) in SLICED_TYPES else None  # type: ignore[assignment]
        self._items = items
        self._read_here = read_here
        self._cursor = 0  # next index to read (sequences and reads in this thread)
        self._iterator: Iterator[Any] | None = None
        self._input_over = False  # the driver saw the input end (further Reads are moot)
        self._feeder: _Feeder | None = None
        # Taken now, in the caller's thread: a feeder reads the input in the caller's context.
        self._context = contextvars.copy_context()
        self._core: SchedulingCore | None = None
        self._pid = os.getpid()
        self._thread: int | None = None  # the thread iterating the job
        self._started = 0.0
        self._closed = False
        # Set by `cancel()` from any thread (one writer of a bool, read here): an inline
        # backend runs chunks inside `_send`, so a cancel must stop the next send even
        # before the driver gets back to its queue.
        self._cancel_requested = False
        self.stats = StatsCollector()

    # ---------------------------------------------------------------- public

    @property
    def job_id(self) -> int:
        return self._spec.job_id

    def owned_here(self) -> bool:
        """False in a child forked by the caller: there the job must touch nothing."""
        return os.getpid() == self._pid

    def __iter__(self) -> Iterator[Any]:
        """Yield results one by one."""
        return itertools.chain.from_iterable(self.batches())

    def batches(self) -> Generator[list[Any], None, None]:
        """Yield results a batch (a record) at a time; on any exit cancel the rest of the job.

        An error, a `break` (the generator is closed) or Ctrl-C all end here: queued and
        prefetched chunks are withdrawn, and after a Ctrl-C raised here the running ones are
        stopped too. (A Ctrl-C in the body of the caller's loop never reaches this frame: the
        caller's iterator, `_decorator._iterate`, counts interrupts with
        `_interrupts.counting_interrupts` and calls `close(stop_running=True)`.)

        Raises:
            BaseException: the first failing item's error in input order (ordered output)
                or completion order; the input iterator's error after every result of the
                items read before it; `PoolClosedError`, `InitializerError`,
                `SerializationError` when the pool or the function cannot run.
        """
        completed = False
        try:
            pending = collections.deque(self._start())  # 1. start
            while True:
                while pending:
                    decision = pending.popleft()
                    kind = type(decision)
                    if kind is Yield:
                        yield decision.values  # type: ignore[union-attr]  # 3. yield
                    elif kind is Raise:
                        raise _escaping(decision.error)  # type: ignore[union-attr]
                    elif kind is Finish:
                        completed = True
                        self.close()
                        return
                    else:
                        pending.extend(self._apply(decision))  # 2. apply
                    del decision
                pending.extend(self._feed(self._wait()))  # 4. wait, 5. feed
                pending.extend(self._drain())  # 6. drain what is already there
        except KeyboardInterrupt:
            self.close(stop_running=True)
            raise
        finally:
            if not completed:
                self.close()

    def cancel(self) -> None:
        """Cancel the job from any thread: its thread stops queued *and* running chunks.

        Safe to call from any thread at any time: it only queues an event. The thread that
        iterates the job handles it in order with the outcomes, as the owner of the job's
        state: it calls `close(stop_running=True)` and `batches()` raises
        [CancelledError][parmap.CancelledError]. Nothing happens once the job has ended.
        No chunk is submitted after it, even by decisions already taken (the serial backend
        runs each chunk as it is submitted).
        """
        self._cancel_requested = True
        self._spec.cancelled = True  # read by the backends as they take a chunk to start
        self._events.put(_Cancel())

    def close(self, *, stop_running: bool = False) -> None:
        """Cancel the job's queued chunks (and, with `stop_running`, its running ones).

        In a child forked by the caller it does nothing at all: the job, its pool and its
        checkpoint belong to the parent.
        """
        if self._closed or not self.owned_here():
            return
        self._closed = True
        if self._feeder is not None:
            self._feeder.stop()
        core = self._core
        if core is not None and core.chunks_out and self._backend is not None:
            self._backend.cancel(self._spec.job_id, stop_running=stop_running)
        if core is not None:
            self.stats.items = core.items
            self.stats.retries = core.retries
            self.stats.lost_workers = core.lost_workers
            self.stats.timeouts = core.timeouts
            self.stats.resumed_items = core.resumed_items
        if self._on_finish is not None:
            self._on_finish(self.stats.finish(time.monotonic() - self._started))

    # ---------------------------------------------------------------- the steps

    def _start(self) -> list[Decision]:
        """Obtain the pool, read its parallelism once, build the core and ask for the first reads."""
        self._started = time.monotonic()
        self._thread = threading.get_ident()
        length = len(self._sequence) if self._sequence is not None else None
        if length == 0:
            return [Finish()]  # an empty input starts no pool
        backend = self._backend = self._pool()
        options = self._options
        self._core = SchedulingCore(
            ordered=self._ordered,
            workers=backend.workers,
            chunksize=options.chunksize,
            length=length,
            cost=self._cost,
            target_seconds=backend.target_chunk_seconds,
            max_in_flight=options.max_in_flight,
            max_tasks_per_worker=options.max_tasks_per_worker,
            wave=options.concurrency,
            retries=options.retries,
            retry_on=options.retry_on,
            return_exceptions=options.return_exceptions,
            chunk_ids=_chunk_ids,
            saving=self._store is not None,
        )
        if self._sequence is None:
            self._iterator = iter(self._items)
            if not self._read_here:
                self._feeder = _Feeder(self._iterator, self._events, self._context, self.stats)
        return self._core.start()

    def _apply(self, decision: Decision) -> list[Decision]:
        """Carry out one decision; return the decisions its immediate events led to."""
        assert self._core is not None
        kind = type(decision)
        if kind is Send:
            return self._send(decision)  # type: ignore[arg-type]
        if kind is Progress:
            if self.progress is not None:
                self.progress.update(decision.amount)  # type: ignore[union-attr]
        elif kind is Save:
            if self._store is not None:
                self._store.save(decision.results)  # type: ignore[union-attr]
        elif kind is Read:
            return self._read(decision.size)  # type: ignore[union-attr]
        return []

    def _read(self, size: int) -> list[Decision]:
        assert self._core is not None
        if self._input_over:
            return []
        if self._feeder is not None:
            self._feeder.request(size)
            return []
        start = self._cursor
        started = time.perf_counter()
        error: BaseException | None = None
        if self._sequence is not None:
            chunk: Sequence[Any] = self._sequence[start : start + size]
            ended = start + len(chunk) >= len(self._sequence)
        else:
            assert self._iterator is not None
            chunk = []
            try:
                chunk.extend(itertools.islice(self._iterator, size))  # keeps what was read before a raise
            except Exception as raised:  # the input raised: after the results of what it gave
                error = raised
            ended = error is not None or len(chunk) < size
        self.stats.input_wait_seconds += time.perf_counter() - started
        self._cursor = start + len(chunk)
        decisions = self._input_read(start, chunk) if chunk else []
        if ended:
            self._input_over = True
            decisions.extend(self._core.input_ended(error))
        return decisions

    def _input_read(self, start: int, chunk: Sequence[Any]) -> list[Decision]:
        assert self._core is not None
        stored = self._store.completed(start, start + len(chunk)) if self._store is not None else None
        return self._core.input_read(start, chunk, stored)

    def _stop_cancelled(self) -> NoReturn:
        """End the job that `cancel()` cancelled: stop its chunks, raise `CancelledError`."""
        self.close(stop_running=True)
        raise errors.CancelledError("the map was cancelled")

    def _send(self, send: Send) -> list[Decision]:
        assert self._core is not None
        assert self._backend is not None
        if self._cancel_requested:
            self._stop_cancelled()
        task = ChunkTask(
            chunk_id=send.chunk_id,
            job=self._spec,
            indices=send.indices,
            items=send.items,
            careful=send.careful,
            submitted_at=time.monotonic(),
        )
        self.stats.chunk_sizes.append(len(send.items))
        try:
            self._backend.submit(task)
        except SerializationError as error:
            return self._core.chunk_unsendable(send.chunk_id, error, self._unpicklable_items(send))
        return []

    def _unpicklable_items(self, send: Send) -> dict[int, BaseException]:
        """The positions of the items that cannot travel, each with its own error."""
        assert self._backend is not None
        if self._spec.function_payload is None:
            return {}  # the function itself cannot travel: nothing can run
        bad: dict[int, BaseException] = {}
        for position, item in enumerate(send.items):
            try:
                self._backend.check_item(item)
            except SerializationError as item_error:
                failure = SerializationError(f"item {send.indices[position]} could not be pickled: {item_error}")
                failure.__cause__ = item_error.__cause__
                bad[position] = failure
        return bad

    def _wait(self) -> _Event:
        """The next event; while the feeder owes a chunk, check every `INPUT_STALL_SECONDS`
        whether the input stalled with items read, and have them cut into a chunk."""
        assert self._core is not None
        while True:
            if self._feeder is None or not self._core.reads_pending:
                return self._events.get()
            try:
                return self._events.get(timeout=INPUT_STALL_SECONDS)
            except queue.Empty:
                self._feeder.cut_if_stalled()  # its chunk, if any, is queued now

    def _drain(self) -> list[Decision]:
        decisions: list[Decision] = []
        while True:
            try:
                decisions.extend(self._feed(self._events.get_nowait()))
            except queue.Empty:
                return decisions

    def _feed(self, event: _Event) -> list[Decision]:
        """Hand one event to the core (and its measurements to the statistics)."""
        core = self._core
        assert core is not None
        kind = type(event)
        if kind is ChunkArrived:
            arrived: ChunkArrived = event  # type: ignore[assignment]
            if not core.tracks(arrived.task.chunk_id):
                return []  # an outcome the job no longer waits for: not worth unpickling
            event = arrived.decode()
            kind = type(event)
        if kind is ChunkDone:
            done: ChunkDone = event  # type: ignore[assignment]
            task = done.task
            if core.tracks(task.chunk_id):
                self.stats.chunk_done(
                    done.worker,
                    completed=done.completed,
                    compute_seconds=done.compute_seconds,
                    transport_seconds=done.transport_seconds,
                    queue_seconds=task.dispatched_at - task.submitted_at,
                    indices=task.indices,
                    item_seconds=done.item_seconds,
                )
            return core.chunk_done(task.chunk_id, done.values, done.errors, done.completed, done.compute_seconds)
        if kind is ChunkProgress:
            report: ChunkProgress = event  # type: ignore[assignment]
            return core.chunk_progress(report.task.chunk_id, report.position, report.fraction)
        if kind is _InputChunk:
            chunk: _InputChunk = event  # type: ignore[assignment]
            return self._input_read(chunk.start, chunk.items)
        if kind is _Cancel:
            self._stop_cancelled()
        if kind is _InputEnd:
            self._input_over = True
            return core.input_ended(event.error)  # type: ignore[union-attr]
        if kind is ChunkLost:
            lost: ChunkLost = event  # type: ignore[assignment]
            return core.chunk_lost(lost.task.chunk_id, lost.position, lost.error)
        if kind is ChunkUndecodable:
            undecodable: ChunkUndecodable = event  # type: ignore[assignment]
            return core.chunk_undecodable(undecodable.task.chunk_id, undecodable.error)
        if kind is ChunkFailed:
            failed: ChunkFailed = event  # type: ignore[assignment]
            return core.chunk_failed(failed.task.chunk_id, failed.error)
        raise TypeError(f"unknown event {event!r}")

    def _deliver(self, outcome: Outcome) -> None:
        """Queue an outcome for the job's thread; a report made *in* that thread is shown at once.

        An inline backend (serial) runs tasks in the job's own thread, which cannot take its
        queue until the chunk ends: its reports would only reach the bar after the item.
        Only `Progress` can come of a report, so applying it here changes nothing else.
        """
        if type(outcome) is ChunkProgress and threading.get_ident() == self._thread and self._core is not None:
            for decision in self._core.chunk_progress(outcome.task.chunk_id, outcome.position, outcome.fraction):
                self._apply(decision)
        else:
            self._events.put(outcome)
