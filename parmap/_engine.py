"""One job: cut the input into indexed chunks, keep a bounded number in flight, collect results.

The engine runs in the caller's thread (or the thread of a ``map_async``). It reads the
input lazily, sends chunks to a :class:`~parmap.backends.Backend`, and turns the backend's
outcomes into results, in input order or in completion order::

    input ──iter_chunks──> _Record (a contiguous run of items, its result slots)
                             │ submit ChunkTask (all of a record, or some of its items)
                             v
                           backend ──> deliver(outcome) ──> SimpleQueue ──> _handle()
                                                                          │
          ordered: yield head records once complete <─────────────────────┘
          unordered: yield each record as it completes

It never creates processes and never imports tqdm. It owns the job-level decisions:
how big the next chunk is (``_chunking``), how many chunks are outstanding, which failed
items are retried, which failures end the job, and cancelling what is left when it ends.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, Union

from ._chunking import CostEstimate, iter_chunks, resolve_chunksize
from ._config import MapOptions
from ._stats import RunStats, StatsCollector
from .backends import Backend, ChunkDone, ChunkFailed, ChunkLost, ChunkProgress, ChunkTask, JobSpec, Outcome
from .errors import ParmapError, SerializationError, TaskTimeoutError, WorkerLostError

#: Default bound on outstanding chunks (sent or finished but not yet yielded), per worker.
#: Four keeps every worker fed while one slow chunk holds up ordered output, yet bounds
#: the memory of a stream to a few chunks per worker, whatever the input's length.
IN_FLIGHT_PER_WORKER = 4

#: In-task progress reports are rounded to this many steps per item (see ``_on_progress``).
_FRACTION_STEPS = 1024

_job_ids = itertools.count(1)
_chunk_ids = itertools.count(1)


class ProgressSink(Protocol):
    def update(self, n: float) -> object: ...


class ResultStore(Protocol):
    """Where finished results are kept across runs (a checkpoint); the engine skips what it holds."""

    def completed(self, start: int, stop: int) -> dict[int, Any]:
        """Results already stored for input indices in ``[start, stop)``."""

    def save(self, results: Sequence[tuple[int, Any]]) -> None:
        """Store newly finished ``(index, result)`` pairs (the store batches its commits)."""


@dataclasses.dataclass
class _InputChunk:
    """The feeder thread read a chunk of a lazy input."""

    start: int
    items: Sequence[Any]


@dataclasses.dataclass
class _InputEnd:
    """The lazy input is exhausted (``error`` is None) or raised ``error``."""

    error: BaseException | None


_Event = Union[Outcome, _InputChunk, _InputEnd]


class _Record:
    """A contiguous run of input items and their result slots."""

    __slots__ = ("items", "missing", "start", "values")

    def __init__(self, start: int, items: Sequence[Any]) -> None:
        self.start = start
        self.items = items
        self.values: list[Any] = [None] * len(items)
        self.missing = len(items)


def add_index_note(error: BaseException, index: int) -> None:
    """Attach ``"item N"`` to ``error``, as a PEP 678 note (printed by Python 3.11+)."""
    note = f"parmap: raised by the item at input index {index}"
    notes = getattr(error, "__notes__", None)
    if notes is not None and note in notes:
        return
    if hasattr(error, "add_note"):
        error.add_note(note)
    else:  # Python < 3.11: same attribute, so tools that read notes find it
        try:
            setattr(error, "__notes__", [*(notes or []), note])  # noqa: B010 - typed only on 3.11+
        except AttributeError:
            pass


class Job:
    """One map call: iterate it for results; ``close()`` cancels what is outstanding."""

    def __init__(
        self,
        pool: Callable[[], Backend],
        workers: int,
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
    ) -> None:
        self._pool = pool
        self._backend: Backend | None = None  # obtained with the first chunk: empty input starts nothing
        self._workers = workers
        self._options = options
        self._ordered = ordered
        self.progress = progress
        self._outcomes: queue.SimpleQueue[_Event] = queue.SimpleQueue()
        self._spec = JobSpec(
            job_id=next(_job_ids),
            function=function,
            deliver=self._deliver,
            timeout=options.timeout,
            max_tasks_per_worker=options.max_tasks_per_worker,
            seed=options.seed,
            profile=profile,
        )
        self._store = store
        self._on_finish = on_finish
        self._partial: dict[int, dict[int, float]] = {}  # chunk id -> position -> reported fraction
        self._length = len(items) if type(items) in (list, tuple, range) else None  # type: ignore[arg-type]
        self._sent_items = 0
        # The function's cost estimate outlives the job: the next call starts with chunks of
        # the right size instead of probing again.
        self._cost = cost if cost is not None else CostEstimate()
        self._chunks = iter_chunks(items, self._next_chunksize)
        self._input_done = False
        # Sequences are sliced here; any other iterable may block (a socket, a queue), so a
        # feeder thread reads it, a window ahead, while results keep flowing to the caller.
        self._feeder: threading.Thread | None = None
        self._lazy_input = self._length is None
        self._records: collections.deque[_Record] = collections.deque()
        self._completed: collections.deque[_Record] = collections.deque()
        self._tasks: dict[int, tuple[_Record, Sequence[int]]] = {}
        self._attempts: dict[int, int] = {}
        self._window = options.max_in_flight or IN_FLIGHT_PER_WORKER * workers
        self._permits = threading.Semaphore(self._window)  # chunks the feeder may read ahead
        self._measured = options.chunksize != "auto" or self._cost.seconds_per_item is not None
        self._probes_missing = workers  # "auto" sizes chunks once one probe per worker is back
        self._closed = False
        self.stats = StatsCollector()
        self._started = 0.0
        self._thread: int | None = None  # the thread iterating the job

    # ---------------------------------------------------------------- public

    def __iter__(self) -> Iterator[Any]:
        """Yield results one by one."""
        return itertools.chain.from_iterable(self.batches())

    def batches(self) -> Iterator[list[Any]]:
        """Yield results a record (chunk) at a time; on any exit cancel the rest of the job.

        An error, a ``break`` (the generator is closed) or Ctrl-C all end here: queued
        chunks are dropped, and on Ctrl-C the running ones are stopped too.
        """
        completed = False
        self._started = time.monotonic()
        self._thread = threading.get_ident()
        try:
            while True:
                self._fill()
                yield from self._ready_batches()
                if self._input_done and not self._tasks and not self._records:
                    completed = True
                    self.close()
                    return
                if not self._tasks and not self._lazy_input:
                    continue  # all sent work is in (inline backends): yield it, send more
                self._handle(self._outcomes.get())
                while True:  # handle every outcome already there before submitting more
                    try:
                        self._handle(self._outcomes.get_nowait())
                    except queue.Empty:
                        break
        except KeyboardInterrupt:
            self.close(stop_running=True)
            raise
        finally:
            if not completed:
                self.close(stop_running=False)

    def close(self, *, stop_running: bool = False) -> None:
        """Cancel the job's queued chunks (and, with ``stop_running``, its running ones)."""
        if self._closed:
            return
        self._closed = True
        if self._tasks and self._backend is not None:
            self._backend.cancel(self._spec.job_id, stop_running=stop_running)
        self._tasks.clear()
        self._permits.release()  # a feeder waiting for room wakes up, sees the job closed, ends
        if self._on_finish is not None:
            self._on_finish(self.stats.finish(time.monotonic() - self._started))

    # ---------------------------------------------------------------- sending

    def _next_chunksize(self) -> int:
        remaining = None if self._length is None else self._length - self._sent_items
        target = None if self._backend is None else self._backend.target_chunk_seconds
        cost = self._cost.seconds_per_item if self._measured else None
        size = resolve_chunksize(
            self._options.chunksize,
            workers=self._workers,
            remaining=remaining,
            seconds_per_item=cost,
            target_seconds=target,
        )
        if self._options.max_tasks_per_worker is not None:
            size = min(size, self._options.max_tasks_per_worker)
        return size

    def _fill(self) -> None:
        """Submit new chunks while the window allows and the input lasts."""
        if self._lazy_input:
            if self._feeder is None:
                self._feeder = threading.Thread(target=self._feed, name="parmap-feeder", daemon=True)
                self._feeder.start()
            return
        while not self._input_done:
            limit = self._window if self._measured else self._workers
            outstanding = len(self._records) if self._ordered else len(self._tasks)
            if outstanding >= limit or (not self._measured and len(self._tasks) >= limit):
                return
            try:
                start, items = next(self._chunks)
            except StopIteration:
                self._input_done = True
                return
            self._add_record(start, items)

    def _adopt_pool_size(self, workers: int) -> None:
        """Size chunks and the window by the pool's real parallelism (a Dask cluster's threads)."""
        if workers == self._workers:
            return
        self._workers = workers
        if self._options.max_in_flight is None:
            window = IN_FLIGHT_PER_WORKER * workers
            for _ in range(window - self._window):
                self._permits.release()
            self._window = window

    def _feed(self) -> None:
        """Feeder thread: read the lazy input a chunk at a time, never more than the window ahead."""
        try:
            while True:
                self._permits.acquire()
                if self._closed:
                    return
                waited = time.perf_counter()
                try:
                    start, items = next(self._chunks)
                except StopIteration:
                    self._outcomes.put(_InputEnd(None))
                    return
                finally:
                    self.stats.input_wait_seconds += time.perf_counter() - waited
                self._outcomes.put(_InputChunk(start, items))
        except BaseException as error:  # the user's iterable raised: the caller gets it
            self._outcomes.put(_InputEnd(error))

    def _add_record(self, start: int, items: Sequence[Any]) -> None:
        self._sent_items += len(items)
        record = _Record(start, items)
        self._records.append(record)
        offsets: Sequence[int] = range(len(items))
        if self._store is not None:
            offsets = self._resume(record)
        if offsets:
            self._submit(record, offsets)
        elif not self._ordered:
            self._completed.append(record)

    def _resume(self, record: _Record) -> list[int]:
        """Fill ``record`` from the store; return the offsets still to run."""
        assert self._store is not None
        stored = self._store.completed(record.start, record.start + len(record.items))
        for index, value in stored.items():
            record.values[index - record.start] = value
        record.missing -= len(stored)
        self.stats.resumed_items += len(stored)
        if stored and self.progress is not None:
            self.progress.update(len(stored))
        return [offset for offset in range(len(record.items)) if record.start + offset not in stored]

    def _submit(self, record: _Record, offsets: Sequence[int], *, careful: bool = False) -> None:
        if self._closed:
            return
        whole = len(offsets) == len(record.items)
        indices: Sequence[int] = (
            range(record.start, record.start + len(record.items))
            if whole
            else [record.start + offset for offset in offsets]
        )
        items = record.items if whole else [record.items[offset] for offset in offsets]
        task = ChunkTask(
            chunk_id=next(_chunk_ids),
            job=self._spec,
            indices=indices,
            items=items,
            careful=careful,
            submitted_at=time.monotonic(),
        )
        self._tasks[task.chunk_id] = (record, offsets)
        self.stats.chunk_sizes.append(len(items))
        if self._backend is None:
            self._backend = self._pool()
            self._adopt_pool_size(self._backend.workers)
        try:
            self._backend.submit(task)
        except SerializationError as error:
            del self._tasks[task.chunk_id]
            self._on_unpicklable_chunk(record, list(offsets), error)

    def _on_unpicklable_chunk(self, record: _Record, offsets: list[int], error: SerializationError) -> None:
        """Find the items that cannot be pickled; fail them, send the others again."""
        check_item = getattr(self._backend, "check_item", None)
        if self._spec.function_payload is None or check_item is None:
            raise error  # the function itself cannot travel: nothing can run
        good: list[int] = []
        for offset in offsets:
            try:
                check_item(record.items[offset])
            except SerializationError as item_error:
                index = record.start + offset
                failure = SerializationError(f"item {index} could not be pickled: {item_error}")
                failure.__cause__ = item_error.__cause__
                self._settle_failure(record, offset, failure)
            else:
                good.append(offset)
        if good:
            self._submit(record, good)

    # ---------------------------------------------------------------- receiving

    def _deliver(self, outcome: Outcome) -> None:
        """Queue an outcome for the job's thread; a report made *in* that thread is shown at once.

        An inline backend (serial) runs tasks in the job's own thread, which cannot handle
        its queue until the chunk ends: its reports would only reach the bar after the item.
        """
        if type(outcome) is ChunkProgress and threading.get_ident() == self._thread:
            self._on_progress(outcome)
        else:
            self._outcomes.put(outcome)

    def _handle(self, outcome: _Event) -> None:
        if isinstance(outcome, _InputChunk):
            self._add_record(outcome.start, outcome.items)
            return
        if isinstance(outcome, _InputEnd):
            self._input_done = True
            if outcome.error is not None:
                raise outcome.error
            return
        if isinstance(outcome, ChunkProgress):
            self._on_progress(outcome)
            return
        entry = self._tasks.pop(outcome.task.chunk_id, None)
        if entry is None:
            return  # cancelled, or a job already closed
        reported = self._partial.pop(outcome.task.chunk_id, None)
        if reported and self.progress is not None:
            self.progress.update(-sum(reported.values()))  # the item counts replace the fractions
        record, offsets = entry
        if isinstance(outcome, ChunkDone):
            self._on_done(record, offsets, outcome)
        elif isinstance(outcome, ChunkLost):
            self._on_lost(record, offsets, outcome)
        elif isinstance(outcome, ChunkFailed):
            raise outcome.error

    def _on_progress(self, report: ChunkProgress) -> None:
        if report.task.chunk_id not in self._tasks or self.progress is None:
            return
        fractions = self._partial.setdefault(report.task.chunk_id, {})
        # Multiples of 1/1024 add and subtract exactly in binary floating point, so the bar
        # lands on the exact item count once the fractions are taken back.
        fraction = round(report.fraction * _FRACTION_STEPS) / _FRACTION_STEPS
        self.progress.update(fraction - fractions.get(report.position, 0.0))
        fractions[report.position] = fraction

    def _on_done(self, record: _Record, offsets: Sequence[int], outcome: ChunkDone) -> None:
        if not self._measured:
            self._probes_missing -= 1
            self._measured = self._probes_missing <= 0 or (self._input_done and not self._tasks)
        task = outcome.task
        self._cost.record(outcome.completed, outcome.compute_seconds)
        self.stats.chunk_done(
            outcome.worker,
            completed=outcome.completed,
            compute_seconds=outcome.compute_seconds,
            transport_seconds=outcome.transport_seconds,
            queue_seconds=task.dispatched_at - task.submitted_at,
            indices=task.indices,
            item_seconds=outcome.item_seconds,
        )
        completed = outcome.completed
        if completed == len(record.items) and not outcome.errors and len(offsets) == completed:
            record.values = outcome.values  # the common case: a whole record, no errors
            record.missing = 0
            if self._store is not None:
                self._store.save(list(zip(range(record.start, record.start + completed), outcome.values)))
            self._record_progress(record, completed)
            return
        done = 0
        saved: list[tuple[int, Any]] = []
        failed: list[tuple[int, BaseException]] = []
        for position in range(completed):
            offset = offsets[position]
            error = outcome.errors.get(position)
            if error is None:
                record.values[offset] = outcome.values[position]
                record.missing -= 1
                done += 1
                saved.append((record.start + offset, outcome.values[position]))
            else:
                failed.append((offset, error))
        # Keep the chunk's successes (checkpoint, bar) before a failure may end the job.
        if saved and self._store is not None:
            self._store.save(saved)
        if done:
            self._record_progress(record, done)
        for offset, error in failed:
            retriable = (
                isinstance(error, self._options.retry_on) and not isinstance(error, ParmapError)
            ) or isinstance(error, TaskTimeoutError)
            self._item_failed(record, offset, error, retriable)
        if completed < len(offsets):  # the worker retired mid-chunk: the rest never ran
            self._submit(record, offsets[completed:])

    def _on_lost(self, record: _Record, offsets: Sequence[int], outcome: ChunkLost) -> None:
        error = outcome.error
        if isinstance(error, WorkerLostError):
            self.stats.lost_workers += 1
        else:
            self.stats.timeouts += 1
        if outcome.position is None:
            if len(offsets) > 1:  # cannot tell which item: run them again, recording positions
                if outcome.task.careful:  # it died before any item (unpickling): one by one
                    for offset in offsets:
                        self._submit(record, [offset])
                else:
                    self._submit(record, offsets, careful=True)
                return
            culprit = 0
        else:
            culprit = outcome.position
        others = [*offsets[:culprit], *offsets[culprit + 1 :]]
        if others:
            self._submit(record, others)  # they did nothing wrong: not charged a retry
        self._item_failed(record, offsets[culprit], error, retriable=True)

    def _item_failed(self, record: _Record, offset: int, error: BaseException, retriable: bool) -> None:
        index = record.start + offset
        attempts = self._attempts.get(index, 0)
        if retriable and attempts < self._options.retries:
            self._attempts[index] = attempts + 1
            self.stats.retries += 1
            self._submit(record, [offset])
            return
        self._settle_failure(record, offset, error)

    def _settle_failure(self, record: _Record, offset: int, error: BaseException) -> None:
        add_index_note(error, record.start + offset)
        if not self._options.return_exceptions:
            raise error
        record.values[offset] = error
        record.missing -= 1
        self._record_progress(record, 1)

    def _record_progress(self, record: _Record, count: int) -> None:
        self.stats.items += count
        if self.progress is not None:
            self.progress.update(count)
        if record.missing == 0 and not self._ordered:
            self._completed.append(record)

    def _ready_batches(self) -> Iterator[list[Any]]:
        if self._ordered:
            while self._records and self._records[0].missing == 0:
                self._permits.release()
                yield self._records.popleft().values
        else:
            while self._completed:
                record = self._completed.popleft()
                self._records.remove(record)
                self._permits.release()
                yield record.values
