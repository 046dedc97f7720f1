"""The pure scheduling core of a job: fed events, it returns decisions.

Built like `_chunking.py`: nothing here reads a clock, starts a thread, does I/O or calls a
backend. The driver (`parmap._engine.Job`) feeds it what happened and applies what it
decides:

    events (methods of SchedulingCore)          decisions (returned lists)
    ----------------------------------          --------------------------
    start()                                     Read(size)         read the next input chunk
    input_read(start, items, stored)            Send(chunk_id, indices, items, careful)
    input_ended(error)                          Save(results)      checkpoint these (index, value)
    chunk_progress(chunk_id, position, f)       Progress(amount)   move the bar by this much
    chunk_done(chunk_id, values, errors, ...)   Yield(values)      hand this batch to the caller
    chunk_lost(chunk_id, position, error)       Raise(error)       end the job with this error
    chunk_undecodable(chunk_id, error)          Finish()           every item is settled and yielded
    chunk_failed(chunk_id, error)
    chunk_unsendable(chunk_id, error, bad)

A timeout is a loss whose error is a `TaskTimeoutError` (the process backend kills the
worker) or an item error of that type (threads, serial, Dask report it once the item returns).

The core owns:

* *records*: a contiguous run of input items (one input chunk) and their result slots;
* *the window*: records read (or asked for) and not yet yielded never exceed `window`
  (`max_in_flight`, or `IN_FLIGHT_PER_WORKER` per worker); while "auto" chunking is still
  probing, at most `min(workers, window)` one-item probes are out;
* *triage*: retries (`retries`, `retry_on`; timeouts and lost workers are always retriable,
  other `ParmapError`s never), lost chunks (position known: that item is charged and the
  others are sent again uncharged; unknown: the chunk is sent again `careful`; careful and
  still unknown: one item per chunk), partial chunks (a worker retired after `completed`
  items: the rest is sent again), chunks whose results could not be decoded (sent again
  careful, then only the bad item fails), chunks that could not be pickled (the items the
  driver found unpicklable fail, the rest is sent again);
* *ordering*: ordered output yields records in input order and, when an item fails for
  good, yields every result before it first, then raises (as `Executor.map` and
  `Pool.imap`); an error of the input iterator is raised after every result of the items
  read before it; unordered output yields records as they complete;
* *the progress ledger*: in-task fractions reported by running items, taken back when their
  chunk settles (the item counts replace them).
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple, Union

from ._chunking import CostEstimate, Requested, resolve_chunksize
from .errors import ParmapError, SerializationError, TaskTimeoutError, WorkerLostError

#: Default bound on outstanding records (read but not yet yielded), per worker. Four keeps
#: every worker fed while one slow chunk holds up ordered output, yet bounds the memory of a
#: stream to a few chunks per worker, whatever the input's length.
IN_FLIGHT_PER_WORKER = 4

#: In-task progress reports are rounded to this many steps per item (see `chunk_progress`).
FRACTION_STEPS = 1024


class Read(NamedTuple):
    """Read the next input chunk, of at most `size` items, and report it with `input_read`."""

    size: int


class Send(NamedTuple):
    """Submit these items as chunk `chunk_id` (`careful`: record positions, pickle results one by one)."""

    chunk_id: int
    indices: Sequence[int]
    items: Sequence[Any]
    careful: bool


class Save(NamedTuple):
    """Store these newly finished `(index, value)` pairs (a checkpoint)."""

    results: list[tuple[int, Any]]


class Progress(NamedTuple):
    """Move the progress bar by `amount` items (negative when fractions are taken back)."""

    amount: float


class Yield(NamedTuple):
    """Hand these results to the caller, in this order."""

    values: list[Any]


class Raise(NamedTuple):
    """End the job: raise `error` to the caller (the driver cancels what is outstanding)."""

    error: BaseException


class Finish(NamedTuple):
    """Every input item is settled and yielded: the job is complete."""


Decision = Union[Read, Send, Save, Progress, Yield, Raise, Finish]

#: A result slot not settled yet (`None` is a valid result).
_UNSET: Any = type("_Unset", (), {"__repr__": lambda self: "<unset>"})()


def add_index_note(error: BaseException, index: int) -> None:
    """Attach `"item N"` to `error`, as a PEP 678 note (printed by Python 3.11+)."""
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


class _Record:
    """A contiguous run of input items and their result slots."""

    __slots__ = ("items", "missing", "start", "values")

    def __init__(self, start: int, items: Sequence[Any]) -> None:
        self.start = start
        self.items = items
        self.values: list[Any] = [_UNSET] * len(items)
        self.missing = len(items)


class _Chunk(NamedTuple):
    """A submitted chunk: which offsets of which record, and how it was sent."""

    record: _Record
    offsets: Sequence[int]
    careful: bool


class SchedulingCore:
    """The decisions of one job, as a state machine fed with events.

    Every event method returns the decisions it led to, in the order the driver must apply
    them. After a `Raise` or `Finish` the core is `done` and ignores further events.

    Args:
        ordered: yield in input order (else in completion order).
        workers: the pool's real parallelism, read once from the backend.
        chunksize: an int, or "auto" (probe, then size by the measured cost).
        length: the input's length, or None for a lazy input.
        cost: the function's running cost estimate; chunks that ran feed it.
        target_seconds: the backend's compute time to aim for per chunk.
        max_in_flight: the window in records, or None for the default.
        max_tasks_per_worker: a chunk never holds more items than this.
        wave: an `async def` task's `concurrency`: `"auto"` chunks are whole waves of it
            (see `resolve_chunksize`).
        retries: how many times a failed item is run again.
        retry_on: exception types worth a retry.
        return_exceptions: settle a failed item with its exception instead of raising it.
        chunk_ids: where chunk ids come from (the driver shares one counter per process).
        saving: emit `Save` decisions (the job has a checkpoint).
    """

    def __init__(
        self,
        *,
        ordered: bool,
        workers: int,
        chunksize: Requested = "auto",
        length: int | None = None,
        cost: CostEstimate | None = None,
        target_seconds: float | None = None,
        max_in_flight: int | None = None,
        max_tasks_per_worker: int | None = None,
        wave: int = 1,
        retries: int = 0,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        return_exceptions: bool = False,
        chunk_ids: Iterator[int] | None = None,
        saving: bool = False,
    ) -> None:
        self.ordered = ordered
        self.workers = max(1, workers)
        self.window = max_in_flight or IN_FLIGHT_PER_WORKER * self.workers
        self._chunksize = chunksize
        self._length = length
        self._cost = cost if cost is not None else CostEstimate()
        self._target_seconds = target_seconds
        self._max_tasks = max_tasks_per_worker
        self._wave = wave
        self._retries = retries
        self._retry_on = retry_on
        self._return_exceptions = return_exceptions
        self._chunk_ids = chunk_ids if chunk_ids is not None else itertools.count(1)
        self._saving = saving
        self._measured = chunksize != "auto" or self._cost.seconds_per_item is not None
        self._probes_missing = self.workers  # "auto" sizes chunks once one probe per worker is back
        self._records: collections.deque[_Record] = collections.deque()  # read, not yet yielded
        self._complete: collections.deque[_Record] = collections.deque()  # unordered: yield next
        self._chunks: dict[int, _Chunk] = {}
        self._attempts: dict[int, int] = {}
        self._fractions: dict[int, dict[int, float]] = {}  # chunk id -> position -> reported
        self._reads_pending = 0
        self._requested = 0  # items asked for by Read decisions (sizes the guided chunks)
        self._next_start = 0  # the input index the next record starts at
        self._input_done = False
        #: The error that ends the job once everything before its index is yielded:
        #: `(index, error, from_input)`; ordered output keeps the one of the lowest index.
        self._fatal: tuple[int, BaseException, bool] | None = None
        self.done = False
        # Counters the driver copies into the run's statistics.
        self.items = 0
        self.retries = 0
        self.lost_workers = 0
        self.timeouts = 0
        self.resumed_items = 0

    # ------------------------------------------------------------------ state

    @property
    def outstanding(self) -> int:
        """Records read or asked for and not yet yielded: never more than the window."""
        return len(self._records) + self._reads_pending

    @property
    def reads_pending(self) -> int:
        """Reads asked for and not yet answered."""
        return self._reads_pending

    @property
    def chunks_out(self) -> int:
        """Chunks submitted and awaiting their outcome."""
        return len(self._chunks)

    def tracks(self, chunk_id: int) -> bool:
        """Whether `chunk_id` is a chunk of this job still awaiting its outcome."""
        return chunk_id in self._chunks

    # ------------------------------------------------------------------ input events

    def start(self) -> list[Decision]:
        """The job begins: the first reads (an input known to be empty is done at once)."""
        out: list[Decision] = []
        if self._length == 0:
            self._input_done = True
        self._step(out)
        return out

    def input_read(self, start: int, items: Sequence[Any], stored: Mapping[int, Any] | None = None) -> list[Decision]:
        """The driver read `items`, input indices from `start` (`stored`: results a checkpoint holds)."""
        out: list[Decision] = []
        if self.done:
            return out
        if start != self._next_start:
            raise ValueError(f"input chunk at {start}, expected {self._next_start}")
        self._reads_pending = max(0, self._reads_pending - 1)
        self._next_start = start + len(items)
        if not items:
            self._step(out)
            return out
        record = _Record(start, items)
        self._records.append(record)
        offsets: list[int] | range = range(len(items))
        if stored:
            resumed = 0
            for index, value in stored.items():
                offset = index - start
                if 0 <= offset < len(items) and record.values[offset] is _UNSET:
                    record.values[offset] = value
                    record.missing -= 1
                    resumed += 1
            self.resumed_items += resumed
            if resumed:
                out.append(Progress(resumed))
            offsets = [offset for offset in range(len(items)) if record.values[offset] is _UNSET]
        if offsets:
            self._send(record, offsets, False, out)
        elif not self.ordered:
            self._complete.append(record)
        self._step(out)
        return out

    def input_ended(self, error: BaseException | None = None) -> list[Decision]:
        """The input is exhausted (`error` None) or raised `error` after the items read so far."""
        out: list[Decision] = []
        if self.done:
            return out
        self._input_done = True
        self._reads_pending = 0
        if error is not None:
            self._set_fatal(self._next_start, error, from_input=True)
        self._step(out)
        return out

    # ------------------------------------------------------------------ chunk events

    def chunk_progress(self, chunk_id: int, position: int, fraction: float) -> list[Decision]:
        """The item at `position` of a running chunk reported it is `fraction` done."""
        if self.done or chunk_id not in self._chunks:
            return []
        fractions = self._fractions.setdefault(chunk_id, {})
        # Multiples of 1/1024 add and subtract exactly in binary floating point, so the bar
        # lands on the exact item count once the fractions are taken back.
        rounded = round(min(max(fraction, 0.0), 1.0) * FRACTION_STEPS) / FRACTION_STEPS
        delta = rounded - fractions.get(position, 0.0)
        fractions[position] = rounded
        return [Progress(delta)] if delta else []

    def chunk_done(
        self,
        chunk_id: int,
        values: list[Any],
        errors: Mapping[int, BaseException],
        completed: int,
        compute_seconds: float,
    ) -> list[Decision]:
        """The chunk ran: `values` of its first `completed` items (`errors` by position)."""
        out: list[Decision] = []
        chunk = self._take(chunk_id, out)
        if chunk is None:
            return out
        if not self._measured:
            self._probes_missing -= 1
            self._measured = self._probes_missing <= 0
        self._cost.record(completed, compute_seconds)
        record, offsets = chunk.record, chunk.offsets
        if not errors and completed == len(offsets) == len(record.items) and record.missing == len(offsets):
            record.values = values  # the common case: a whole record, no errors
            record.missing = 0
            self.items += completed
            if self._saving:
                out.append(Save(list(zip(range(record.start, record.start + completed), values))))
            out.append(Progress(completed))
            self._record_complete(record)
        else:
            saved: list[tuple[int, Any]] = []
            failed: list[tuple[int, BaseException]] = []
            for position in range(min(completed, len(offsets))):
                offset = offsets[position]
                error = errors.get(position)
                if error is not None:
                    failed.append((offset, error))
                elif self._settle(record, offset, values[position]):
                    saved.append((record.start + offset, values[position]))
            # The chunk's successes are kept (checkpoint, bar) before a failure may end the job.
            if saved:
                self.items += len(saved)
                if self._saving:
                    out.append(Save(saved))
                out.append(Progress(len(saved)))
                if record.missing == 0:
                    self._record_complete(record)
            for offset, error in failed:
                self._item_failed(record, offset, error, self._retriable(error), out)
            if completed < len(offsets):  # the worker retired mid-chunk: the rest never ran
                self._send(record, offsets[completed:], chunk.careful, out)
        self._step(out)
        return out

    def chunk_lost(self, chunk_id: int, position: int | None, error: BaseException) -> list[Decision]:
        """The chunk's worker died or timed out while running the item at `position` (None: unknown)."""
        out: list[Decision] = []
        chunk = self._take(chunk_id, out)
        if chunk is None:
            return out
        if isinstance(error, TaskTimeoutError):
            self.timeouts += 1
        else:
            self.lost_workers += 1
        record, offsets = chunk.record, chunk.offsets
        if position is None or not 0 <= position < len(offsets):
            if len(offsets) > 1:  # cannot tell which item: run them again, recording positions
                if chunk.careful:  # it died before any item ran (unpickling): one by one
                    for offset in offsets:
                        self._send(record, [offset], False, out)
                else:
                    self._send(record, offsets, True, out)
                self._step(out)
                return out
            position = 0
        others = [*offsets[:position], *offsets[position + 1 :]]
        if others:
            self._send(record, others, chunk.careful, out)  # they did nothing wrong: not charged
        self._item_failed(record, offsets[position], error, True, out)
        self._step(out)
        return out

    def chunk_undecodable(self, chunk_id: int, error: SerializationError) -> list[Decision]:
        """The chunk ran but its results could not be unpickled as one message.

        It does not feed the cost estimate: its measured time never arrived.
        """
        out: list[Decision] = []
        chunk = self._take(chunk_id, out)
        if chunk is None:
            return out
        record, offsets = chunk.record, chunk.offsets
        if len(offsets) > 1 and not chunk.careful:
            self._send(record, offsets, True, out)  # each result on its own: only the bad one fails
        else:
            for offset in offsets:
                failure = error if len(offsets) == 1 else _copy_serialization_error(error)
                self._item_failed(record, offset, failure, False, out)
        self._step(out)
        return out

    def chunk_failed(self, chunk_id: int, error: BaseException) -> list[Decision]:
        """The chunk cannot run at all (pool shut down, initializer failed): the job ends."""
        out: list[Decision] = []
        if self._take(chunk_id, out) is None:
            return out
        self._end(Raise(error), out)
        return out

    def chunk_unsendable(
        self, chunk_id: int, error: SerializationError, bad: Mapping[int, BaseException]
    ) -> list[Decision]:
        """The chunk could not be pickled; `bad` maps the positions of the items that cannot.

        Those items fail (not retried: pickling again gives the same answer); the others
        are sent again. With no bad item found (the function itself cannot travel), the job
        ends with `error`.
        """
        out: list[Decision] = []
        chunk = self._take(chunk_id, out)
        if chunk is None:
            return out
        if not bad:
            self._end(Raise(error), out)
            return out
        record, offsets = chunk.record, chunk.offsets
        good = [offset for position, offset in enumerate(offsets) if position not in bad]
        if good:
            self._send(record, good, chunk.careful, out)
        for position, item_error in sorted(bad.items()):
            if 0 <= position < len(offsets):
                self._item_failed(record, offsets[position], item_error, False, out)
        self._step(out)
        return out

    # ------------------------------------------------------------------ internals

    def _take(self, chunk_id: int, out: list[Decision]) -> _Chunk | None:
        """Forget a chunk that reached its outcome; take back its in-task fractions."""
        if self.done:
            return None
        chunk = self._chunks.pop(chunk_id, None)
        if chunk is None:
            return None  # not ours, or an outcome after the job gave up on it
        reported = self._fractions.pop(chunk_id, None)
        if reported:
            total = sum(reported.values())
            if total:
                out.append(Progress(-total))  # the item counts replace the fractions
        return chunk

    def _retriable(self, error: BaseException) -> bool:
        if isinstance(error, (TaskTimeoutError, WorkerLostError)):
            return True
        return isinstance(error, self._retry_on) and not isinstance(error, ParmapError)

    def _send(self, record: _Record, offsets: Sequence[int], careful: bool, out: list[Decision]) -> None:
        if self._fatal is not None and self.ordered and record.start + offsets[0] > self._fatal[0]:
            # Ordered output stops at the fatal item: what follows it is never yielded.
            offsets = [offset for offset in offsets if record.start + offset < self._fatal[0]]
            if not offsets:
                return
        whole = len(offsets) == len(record.items)
        indices: Sequence[int] = (
            range(record.start, record.start + len(record.items))
            if whole
            else [record.start + offset for offset in offsets]
        )
        items = record.items if whole else [record.items[offset] for offset in offsets]
        chunk_id = next(self._chunk_ids)
        self._chunks[chunk_id] = _Chunk(record, offsets, careful)
        out.append(Send(chunk_id, indices, items, careful))

    def _settle(self, record: _Record, offset: int, value: Any) -> bool:
        """Fill one slot; False if it was already settled (never twice)."""
        if record.values[offset] is not _UNSET:
            return False
        record.values[offset] = value
        record.missing -= 1
        return True

    def _record_complete(self, record: _Record) -> None:
        if not self.ordered:
            self._complete.append(record)

    def _item_failed(
        self, record: _Record, offset: int, error: BaseException, retriable: bool, out: list[Decision]
    ) -> None:
        index = record.start + offset
        if record.values[offset] is not _UNSET:
            return
        attempts = self._attempts.get(index, 0)
        if retriable and attempts < self._retries:
            self._attempts[index] = attempts + 1
            self.retries += 1
            self._send(record, [offset], False, out)
            return
        add_index_note(error, index)
        if self._return_exceptions:
            self._settle(record, offset, error)
            self.items += 1
            out.append(Progress(1))
            if record.missing == 0:
                self._record_complete(record)
        else:
            self._set_fatal(index, error, from_input=False)

    def _set_fatal(self, index: int, error: BaseException, *, from_input: bool) -> None:
        if self._fatal is None:
            replace = True
        elif self.ordered:
            replace = index < self._fatal[0]  # the first failure in input order is the one raised
        else:
            replace = self._fatal[2] and not from_input  # an item's error is raised at once
        if replace:
            self._fatal = (index, error, from_input)

    def _end(self, decision: Raise | Finish, out: list[Decision]) -> None:
        # The chunks still out stay listed (`chunks_out`): the driver cancels them.
        self.done = True
        self._fractions.clear()
        self._records.clear()
        self._complete.clear()
        out.append(decision)

    def _step(self, out: list[Decision]) -> None:
        """After every event: read what fits, yield what is ready, raise what is due.

        The reads come first in `out`, so that new work is on its way before the caller
        gets the batches (and runs its loop body); the window is computed after the ready
        records left it.
        """
        if self.done:
            return
        ready: list[Decision] = []
        if self.ordered:
            self._yield_in_order(ready)
        else:
            while self._complete:
                record = self._complete.popleft()
                self._records.remove(record)
                ready.append(Yield(record.values))
        if not self.done:
            if self._fatal is not None:
                _, error, from_input = self._fatal
                if not self.ordered and (not from_input or not self._records):
                    self._end(Raise(error), ready)
                # ordered: `_yield_in_order` raises once everything before it is out
            elif self._input_done:
                if not self._records:
                    self._end(Finish(), ready)
            else:
                self._read(out)
        out.extend(ready)

    def _yield_in_order(self, out: list[Decision]) -> None:
        records = self._records
        fatal = self._fatal[0] if self._fatal is not None else None
        while records:
            head = records[0]
            if fatal is not None and fatal < head.start + len(head.items):
                # The fatal item is in this record (or, for an input error, right after it).
                before = fatal - head.start
                if all(value is not _UNSET for value in itertools.islice(head.values, before)):
                    if before:
                        out.append(Yield(head.values[:before]))
                    assert self._fatal is not None
                    self._end(Raise(self._fatal[1]), out)
                return
            if head.missing:
                return
            records.popleft()
            out.append(Yield(head.values))
        if fatal is not None and fatal <= self._next_start and not self.done:
            assert self._fatal is not None
            self._end(Raise(self._fatal[1]), out)  # an input error after every record read

    def _read(self, out: list[Decision]) -> None:
        limit = self.window if self._measured else min(self.workers, self.window)
        while self.outstanding < limit:
            if self._length is not None and self._requested >= self._length:
                return  # every item is asked for: the driver reports the end with the last chunk
            size = self._next_chunksize()
            self._reads_pending += 1
            self._requested += size
            out.append(Read(size))

    def _next_chunksize(self) -> int:
        remaining = None if self._length is None else max(0, self._length - self._requested)
        size = resolve_chunksize(
            self._chunksize,
            workers=self.workers,
            remaining=remaining,
            seconds_per_item=self._cost.seconds_per_item if self._measured else None,
            target_seconds=self._target_seconds,
            wave=self._wave,
        )
        if self._max_tasks is not None:
            size = min(size, self._max_tasks)
        return max(1, size)


def _copy_serialization_error(error: SerializationError) -> SerializationError:
    """A separate error per item, so that each carries only its own index note."""
    copy = SerializationError(str(error))
    copy.__cause__ = error.__cause__ or error
    return copy
