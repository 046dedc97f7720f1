"""The messages that cross a process boundary, and the chunk codec shared by the backends.

One chunk makes a round trip: the caller side encodes a [ChunkCall][], the worker decodes
it, runs it with [run_chunk][] and encodes a [ChunkResult][] (a value or an exception that
cannot be pickled becomes that item's `SerializationError` there, per item), and the caller
side decodes it, attaching each error's remote traceback as its `__cause__`. The process
backend sends these over a private socket per worker, framed by [frame][]; the Dask
backend uses the same codec inside its tasks.

Every message is one tag byte and a body. The small, hot messages have a fixed binary
header (`struct` formats below) so that the manager can route them without unpickling;
a result carries its chunk id and its sender's pid in that header, so the manager matches
it to the chunk it answers (never to "the oldest chunk sent"), and a result that cannot be
unpickled still names its chunk.

| tag | message | direction | fields |
|---|---|---|---|
| `F` | LoadFunction | to worker | key, payload, evict, number |
| `H` | LoadShared | to worker | key, payload, evict, number |
| `C` | ChunkCall | to worker | chunk_id, function_key, indices, items, timeout, seed, max_tasks, profile, careful, concurrency, shared_key |
| `W` | Withdraw | to worker | chunk_id |
| `S` | Stop | to worker | |
| `R` | Ready | to manager | pid |
| `I` | InitializerFailed | to manager | pid, traceback |
| `P` | Progress | to manager | chunk_id, position, fraction |
| `w` | Withdrawn | to manager | chunk_id, withdrawn |
| `f` | FunctionUnloadable | to manager | chunk_id, pid, description |
| `D` | ChunkResult | to manager | chunk_id, pid, completed, retiring, timings, values, errors |

`ChunkResult.timings` is a [Timings][] (compute seconds, seconds the worker spent unpickling
the chunk, per-item seconds when profiled). In a `careful` chunk each value and each error
of `ChunkResult` is pickled on its own (a `bytes` per item), so that one result that cannot
be unpickled in the caller fails only its own item.
"""

from __future__ import annotations

import itertools
import os
import pickle
import struct
import time
import traceback
import types
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Union

from .. import _reporting, _seeding, _transport
from ..errors import RemoteTraceback, SerializationError, TaskTimeoutError
from . import ChunkDone, ChunkUndecodable

if TYPE_CHECKING:
    from . import ChunkTask
    from ._event_loops import EventLoops

# --------------------------------------------------------------------------- messages

#: A received message: what the sockets and the codec read.
Buffer = Union[bytes, bytearray, memoryview]

#: Frame header: the body's length in bytes.
FRAME = struct.Struct("<Q")
#: Header of `C`, `W`, `w`: a chunk id (and for `w`, withdrawn or not).
CHUNK_ID = struct.Struct("<q")
WITHDRAWN = struct.Struct("<q?")
#: Header of `D` and `f`: chunk id and sender pid, readable without unpickling.
RESULT_HEADER = struct.Struct("<qi")
#: Header of `D`: `RESULT_HEADER`, then whether the worker retires after this chunk, so
#: that the manager knows it before the results are unpickled (in the job's thread).
DONE_HEADER = struct.Struct("<qi?")
#: Body of `P`: chunk id, position, fraction.
PROGRESS = struct.Struct("<qid")
#: Body of `R`: pid.
PID = struct.Struct("<i")


class LoadFunction(NamedTuple):
    """Unpickle and keep a function under `key`; forget `evict` (the manager's LRU choice).

    `number` counts the functions sent to this worker; the worker writes it into its slot
    (`SLOT_LOADING`) before unpickling, so that a death while loading is charged to the
    function it was loading, never to whichever chunk happens to be queued behind it.
    """

    key: bytes
    payload: bytes
    evict: bytes | None
    number: int


class LoadShared(NamedTuple):
    """Unpickle and keep a map's shared object under `key`; forget `evict`.

    `payload` is the object encoded once by the caller (see [parmap._sharing][]): its large
    buffers stay in shared-memory segments that every worker maps. `number` counts with
    `LoadFunction.number` (one sequence per worker), so a death while loading is charged to
    the jobs that share this object.
    """

    key: bytes
    payload: bytes
    evict: bytes | None
    number: int


class ChunkCall(NamedTuple):
    """Run `items` (input `indices`) with the function stored under `function_key`."""

    chunk_id: int
    function_key: bytes
    indices: Sequence[int]
    items: Sequence[Any]
    timeout: float | None
    seed: int | None
    max_tasks: int | None
    profile: bool
    careful: bool
    #: Items of an `async def` task awaited at once (see [AsyncCall][]).
    concurrency: int = 1
    #: The key of the map's shared object ([LoadShared][] sent it before); `None` without one.
    shared_key: bytes | None = None

    @classmethod
    def of(cls, task: ChunkTask, function_key: bytes, *, max_tasks: int | None) -> ChunkCall:
        """The call that runs `task`, for every backend that ships chunks (process, Dask)."""
        job = task.job
        return cls(
            task.chunk_id,
            function_key,
            task.indices,
            task.items,
            job.timeout,
            job.seed,
            max_tasks,
            job.profile,
            task.careful,
            job.concurrency,
            None if job.shared is None else job.shared.key,
        )


class Withdraw(NamedTuple):
    """Give back chunk `chunk_id` if it has not started (answered by [Withdrawn][])."""

    chunk_id: int


class Stop(NamedTuple):
    """Exit once idle."""


class Ready(NamedTuple):
    """The initializer ran; the worker takes chunks."""

    pid: int


class InitializerFailed(NamedTuple):
    pid: int
    traceback: str


class Progress(NamedTuple):
    """The task at `position` of chunk `chunk_id` called `report_progress(fraction)`."""

    chunk_id: int
    position: int
    fraction: float


class Withdrawn(NamedTuple):
    """Answer to [Withdraw][]: True when the chunk was given back and will never run here."""

    chunk_id: int
    withdrawn: bool


class FunctionUnloadable(NamedTuple):
    """The chunk's function could not be unpickled in the worker (which lives on)."""

    chunk_id: int
    pid: int
    description: str


class AsyncCall:
    """An `async def` task as it travels to the workers: marks the function as one.

    [run_chunk][] runs a chunk of it on the worker's event loop, `ChunkCall.concurrency`
    items at once (see [parmap.backends._async_tasks][]). The concurrency travels with each
    chunk, not with the function: a call with another `concurrency` reuses the function the
    workers hold, and the globals it cached there.
    """

    def __init__(self, function: Callable[[Any], Awaitable[Any]]) -> None:
        self.function = function

    def __repr__(self) -> str:
        return repr(self.function)  # errors name the caller's function, never this wrapper

    def __call__(self, item: Any) -> Awaitable[Any]:
        return self.function(item)


class Timings(NamedTuple):
    compute_seconds: float
    decode_seconds: float
    item_seconds: list[float] | None


class ChunkResult(NamedTuple):
    """What a chunk produced: `values` by position, `errors` as position -> (error, traceback)."""

    chunk_id: int
    pid: int
    completed: int
    retiring: bool
    timings: Timings
    values: list[Any]
    errors: dict[int, Any]


#: The table of the docstring, as data: tag -> message type (checked by a test).
MESSAGES: dict[bytes, type[tuple[Any, ...]]] = {
    b"F": LoadFunction,
    b"H": LoadShared,
    b"C": ChunkCall,
    b"W": Withdraw,
    b"S": Stop,
    b"R": Ready,
    b"I": InitializerFailed,
    b"P": Progress,
    b"w": Withdrawn,
    b"f": FunctionUnloadable,
    b"D": ChunkResult,
}


def frame(body: bytes) -> bytes:
    """The frame header to send before `body` (the receiver reads exactly that many bytes)."""
    return FRAME.pack(len(body))


# --------------------------------------------------------------------------- encoding


def _pack(obj: Any, prefix: str | None) -> bytes:
    """Pickle `obj`: large buffers into shared-memory segments named with `prefix` (same
    host), or all in band with `prefix=None` (Dask: the reader may be on another host)."""
    return _transport.dumps(obj) if prefix is None else _transport.encode(obj, prefix)


def _unpack(data: Buffer, in_band: bool) -> Any:
    return pickle.loads(data) if in_band else _transport.decode(memoryview(data))


def encode_call(call: ChunkCall, prefix: str | None) -> bytes:
    """`C` + chunk id + the rest pickled (see [_pack][] for `prefix`).

    Raises:
        Exception: whatever pickling the items raises (the caller makes it a
            `SerializationError`).
    """
    return b"C" + CHUNK_ID.pack(call.chunk_id) + _pack(call[1:], prefix)


def discard_call(message: bytes) -> None:
    """Release the shared-memory segments of an encoded call that will never be read."""
    _transport.discard(memoryview(message)[1 + CHUNK_ID.size :])


def decode_call(message: Buffer, *, in_band: bool = False) -> ChunkCall:
    """Inverse of [encode_call][] (`in_band`: it was encoded with `prefix=None`)."""
    (chunk_id,) = CHUNK_ID.unpack_from(message, 1)
    return ChunkCall(chunk_id, *_unpack(memoryview(message)[1 + CHUNK_ID.size :], in_band))


def encode_result(result: ChunkResult, indices: Sequence[int], careful: bool, prefix: str | None) -> bytes:
    """`D` + chunk id + pid + the rest pickled; what cannot travel becomes an item's error.

    `result.errors` holds `(exception, traceback text)`; an exception that does not survive
    a pickle round trip is replaced by a `SerializationError` describing it. If the whole
    message still cannot be pickled, each value that cannot becomes a `SerializationError`.
    A `careful` result pickles each value and error on its own.
    """
    errors = {
        position: portable_error(error, text, indices[position]) for position, (error, text) in result.errors.items()
    }
    values = result.values
    if careful:
        values, errors = _pickle_each(indices, values, errors, prefix)
    header = b"D" + DONE_HEADER.pack(result.chunk_id, result.pid, result.retiring)
    try:
        return header + _pack((result.completed, result.timings, values, errors), prefix)
    except Exception:
        pass
    values = list(values)
    replace_unpicklable(indices, values, errors, lambda value: _discard(_pack(value, prefix), prefix))
    return header + _pack((result.completed, result.timings, values, errors), prefix)


def _discard(data: bytes, prefix: str | None) -> None:
    if prefix is not None:
        _transport.discard(data)


def _pickle_each(
    indices: Sequence[int], values: list[Any], errors: dict[int, tuple[BaseException, str]], prefix: str | None
) -> tuple[list[Any], dict[int, Any]]:
    pickled_values: list[Any] = []
    pickled_errors: dict[int, Any] = {}
    for position, value in enumerate(values):
        if position in errors:
            pickled_values.append(None)
            continue
        try:
            pickled_values.append(_pack(value, prefix))
        except Exception as error:
            pickled_values.append(None)
            errors[position] = (_unpicklable_result(indices[position], error), format_traceback(error))
    for position, entry in errors.items():
        pickled_errors[position] = _pack(entry, prefix)
    return pickled_values, pickled_errors


def result_header(message: Buffer) -> tuple[int, int]:
    """`(chunk id, sender pid)` of a `D` or `f` message, read without unpickling."""
    chunk_id, pid = RESULT_HEADER.unpack_from(message, 1)
    return chunk_id, pid


def result_retiring(message: Buffer) -> bool:
    """Whether the worker that sent this `D` message retires after it (read without unpickling)."""
    return bool(DONE_HEADER.unpack_from(message, 1)[2])


def result_in_band(message: Buffer) -> bool:
    """Whether a `D` message holds its results whole (no shared-memory segments to release)."""
    return _transport.in_band(memoryview(message)[1 + DONE_HEADER.size :])


def decode_result(message: Buffer, indices: Sequence[int], careful: bool, *, in_band: bool = False) -> ChunkResult:
    """Inverse of [encode_result][]: errors come back as exceptions with their remote traceback.

    In a careful result each item is unpickled on its own: one that raises (any
    `BaseException`, e.g. a `__reduce__` that calls `sys.exit`) becomes that item's
    `SerializationError`.

    Raises:
        BaseException: whatever unpickling a non-careful message raises; the caller makes it
            a `SerializationError` (or sends the chunk again, careful).
    """
    chunk_id, pid, retiring = DONE_HEADER.unpack_from(message, 1)
    body = memoryview(message)[1 + DONE_HEADER.size :]
    completed, timings, values, wire_errors = _unpack(body, in_band)
    errors: dict[int, BaseException] = {}
    if careful:
        decoded: list[Any] = []
        for position, payload in enumerate(values):
            if payload is None:
                decoded.append(None)
                continue
            try:
                decoded.append(_unpack(payload, in_band))
            except BaseException as error:
                decoded.append(None)
                errors[position] = undecodable_error(indices[position], error)
        values = decoded
        for position, payload in wire_errors.items():
            try:
                entry = _unpack(payload, in_band)
            except BaseException as error:
                errors[position] = undecodable_error(indices[position], error)
            else:
                errors[position] = attach_traceback(*entry)
    else:
        for position, entry in wire_errors.items():
            errors[position] = attach_traceback(*entry)
    return ChunkResult(chunk_id, pid, completed, retiring, timings, values, errors)


def done_outcome(task: ChunkTask, result: ChunkResult, *, worker: object, transport_seconds: float) -> ChunkDone:
    """The `ChunkDone` of a decoded result (`worker`: who ran it, for the statistics)."""
    return ChunkDone(
        task,
        result.values,
        result.errors,
        result.completed,
        result.timings.compute_seconds,
        worker=worker,
        item_seconds=result.timings.item_seconds,
        transport_seconds=transport_seconds,
    )


def undecodable_outcome(task: ChunkTask, error: BaseException) -> ChunkDone | ChunkUndecodable:
    """The outcome of results that cannot be unpickled in the caller: each item of a
    one-item or careful chunk fails with its own `SerializationError`; a larger chunk is to
    run again, careful (`ChunkUndecodable`), so that only the item whose result cannot
    travel fails."""
    if len(task.items) == 1 or task.careful:
        errors: dict[int, BaseException] = {
            position: undecodable_error(index, error) for position, index in enumerate(task.indices)
        }
        return ChunkDone(task, [None] * len(task.items), errors, len(task.items), 0.0)
    failure = SerializationError(
        f"the results of a chunk could not be unpickled: {type(error).__name__}: {describe(error)}"
    )
    failure.__cause__ = error
    return ChunkUndecodable(task, failure)


def attach_traceback(error: BaseException, text: str) -> BaseException:
    """`error` with its remote traceback text as `__cause__` (as `concurrent.futures` does)."""
    if text:
        error.__cause__ = RemoteTraceback(text)
    return error


def undecodable_error(index: int, error: BaseException) -> SerializationError:
    """The error of an item whose result reached the caller but could not be unpickled."""
    failure = SerializationError(
        f"the result of item {index} could not be unpickled: {type(error).__name__}: {describe(error)}"
    )
    failure.__cause__ = error
    return failure


def _unpicklable_result(index: int, error: BaseException) -> SerializationError:
    return SerializationError(
        f"the result of item {index} could not be pickled: {type(error).__name__}: {describe(error)}"
    )


def describe(obj: object) -> str:
    """`str(obj)`, or a placeholder when its `__str__` raises (defect 30: it must not kill a worker)."""
    try:
        return str(obj)
    except BaseException:
        return f"<{type(obj).__qualname__} object whose str() raised>"


def replace_unpicklable(
    indices: Sequence[int], values: list[Any], wire_errors: dict[int, Any], check: Callable[[Any], object]
) -> None:
    """Turn each value that `check` cannot pickle into a `SerializationError` entry."""
    for position, value in enumerate(values):
        if position in wire_errors:
            continue
        try:
            check(value)
        except Exception as error:
            values[position] = None
            wire_errors[position] = (_unpicklable_result(indices[position], error), format_traceback(error))


def portable_error(error: BaseException, text: str, index: int) -> tuple[BaseException, str]:
    """`error` if it survives a pickle round trip, else a `SerializationError` that describes it."""
    try:
        pickle.loads(_transport.dumps(error))
        return error, text
    except BaseException as failure:
        replacement = SerializationError(
            f"item {index} raised {type(error).__qualname__}: {describe(error)}, which could not be pickled "
            f"back to the caller ({type(failure).__name__}: {describe(failure)})"
        )
        return replacement, text


def format_traceback(error: BaseException) -> str:
    """The traceback text of `error`, from the user's code on; never raises (a `__str__`
    that raises is described).

    The leading frames that are parmap's own (`run_chunk`, `StarCall.__call__`, the async
    runner) are left out, so the remote traceback starts at the task, as `Pool`'s does;
    parmap frames after the user's code (a nested map) stay. A traceback made of parmap
    frames only (an error of parmap itself) is kept whole.
    """
    try:
        frames = error.__traceback__
        return "".join(traceback.format_exception(type(error), error, user_frames(frames) or frames))
    except BaseException:
        return f"{type(error).__qualname__}: {describe(error)}\n"


#: Where parmap's own modules are: a frame whose file is under it is parmap's.
_PACKAGE_DIRECTORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def user_frames(frames: types.TracebackType | None) -> types.TracebackType | None:
    """`frames` without its leading parmap frames: `None` if every frame is parmap's."""
    while frames is not None and os.path.abspath(frames.tb_frame.f_code.co_filename).startswith(_PACKAGE_DIRECTORY):
        frames = frames.tb_next
    return frames


def timeout_error(index: int, timeout: float | None) -> TaskTimeoutError:
    return TaskTimeoutError(f"item {index} ran longer than its timeout of {timeout} s", index=index, timeout=timeout)


# --------------------------------------------------------------------------- running

#: Slot layout (doubles a worker process writes and its manager reads): the position of the
#: running item, when that item started, the id of the chunk started last, when it started.
SLOT_POSITION = 0
SLOT_STARTED = 1
SLOT_CHUNK = 2
SLOT_CHUNK_STARTED = 3
#: 1.0 while several items of an `async def` chunk run at once: the position is then the
#: oldest running item (for its timeout), not one a worker's death can be blamed on.
SLOT_SHARED = 4
#: The `LoadFunction.number` of the function the worker is unpickling (or did last).
SLOT_LOADING = 5
SLOT_SIZE = 6
#: Positions written outside any single item.
POSITION_READING = -1.0  # unpickling the chunk
POSITION_PICKLING = -2.0  # pickling its results
POSITION_RUNNING = -3.0  # running it on the fast path, which records no position
POSITION_INITIALIZING = -4.0  # running the pool's initializer
POSITION_LOADING = -5.0  # unpickling a function

ErrorInfo = tuple[BaseException, str]


def run_chunk(
    fn: Callable[[Any], Any],
    indices: Sequence[int],
    items: Sequence[Any],
    *,
    timeout: float | None = None,
    seed: int | None = None,
    slot: Any = None,
    careful: bool = False,
    budget: int | None = None,
    propagate: tuple[type[BaseException], ...] = (),
    reporter: _reporting.Reporter | None = None,
    item_seconds: list[float] | None = None,
    seed_globals: bool = True,
    restore_globals: bool = False,
    loops: EventLoops | None = None,
    concurrency: int = 1,
) -> tuple[list[Any], dict[int, ErrorInfo], int, float]:
    """Run `fn` on each item; return `(values, errors, completed, compute_seconds)`.

    A failing item becomes an entry `position -> (exception, traceback text)` in `errors`
    (its value is `None`) and the chunk goes on. `SystemExit` and `KeyboardInterrupt`
    raised by a task are that item's error too, unless listed in `propagate` (the serial
    backend lets a real Ctrl-C through). With `budget`, at most that many items run;
    `completed` says how many did. With `timeout` (thread and serial backends, which
    cannot kill a task), an item that overran is reported as a `TaskTimeoutError` once it
    returns. `reporter` receives the task's `report_progress` calls; `item_seconds`, when
    given, receives each item's duration. `seed_globals` says whether a seeded item also
    seeds the global `random` and NumPy generators, and `restore_globals` whether their
    state is restored when the chunk ends (see [parmap._seeding][]).

    Items run in C (`list.extend(map(...))`) unless something is needed per item: a seed,
    a timeout, durations, or `careful`, which writes each item's position into `slot` so
    that a worker's death can be blamed on one item (see `ChunkTask.careful`).

    `StopIteration`: on the fast path, `list.extend` takes a task's `StopIteration` for the
    end of `map` and stops early, and the exception object is gone (CPython clears it).
    The decision: when the fast path returns short, the item at the first missing position
    is run once more on the instrumented path, where a `StopIteration` is an exception like
    any other and is recorded with its own traceback. That item therefore runs twice; only
    an item that raised `StopIteration` ever does, and running it again is the one way to
    keep the exception's type and traceback without slowing every other item (wrapping
    `fn` or iterating in a generator costs per item, and a generator would turn it into
    `RuntimeError`). If it does not raise the second time, its value is kept.

    The seed and progress contexts are installed in `with` blocks, so they are restored
    on every exit path, `KeyboardInterrupt` included.

    An [AsyncCall][] (an `async def` task) runs on the thread's event loop from `loops`
    (default: the process's), `concurrency` items at once: see [parmap.backends._async_tasks][].
    """
    count = len(items) if budget is None else min(budget, len(items))
    if type(fn) is AsyncCall:
        from . import _async_tasks, _event_loops  # it imports this module, and asyncio: on the first async chunk

        return _async_tasks.run_async_chunk(
            fn,
            indices,
            items,
            count=count,
            concurrency=concurrency,
            loops=_event_loops.PROCESS_LOOPS if loops is None else loops,
            timeout=timeout,
            seed=seed,
            slot=slot,
            careful=careful,
            propagate=propagate,
            reporter=reporter,
            item_seconds=item_seconds,
            seed_globals=seed_globals,
            restore_globals=restore_globals,
        )
    values: list[Any] = []
    errors: dict[int, ErrorInfo] = {}
    plain = timeout is None and seed is None and item_seconds is None and not (careful and slot is not None)
    with _reporting.installed(reporter, values):
        item_seeds = _seeding.item_context(seed, seed_globals=seed_globals, restore_globals=restore_globals)
        with item_seeds as seeder:
            started = time.perf_counter()
            while len(values) < count:
                # Each pass runs items until one raises; `len(values)` is always the position
                # of the item running, since every finished item appends exactly one entry (and
                # `list.extend` keeps what it appended before an exception).
                try:
                    if plain:
                        values.extend(map(fn, itertools.islice(items, len(values), count)))
                        if len(values) < count:  # a StopIteration ended map early: see above
                            _run_instrumented(
                                fn,
                                indices,
                                items,
                                count=len(values) + 1,
                                slot=None,
                                values=values,
                                errors=errors,
                                timeout=None,
                                seeder=None,
                                item_seconds=None,
                            )
                    else:
                        _run_instrumented(
                            fn,
                            indices,
                            items,
                            count=count,
                            slot=slot,
                            values=values,
                            errors=errors,
                            timeout=timeout,
                            seeder=seeder,
                            item_seconds=item_seconds,
                        )
                except propagate:
                    raise
                except BaseException as error:
                    errors[len(values)] = (error, format_traceback(error))
                    values.append(None)
            compute = time.perf_counter() - started
    return values, errors, count, compute


def _run_instrumented(
    fn: Callable[[Any], Any],
    indices: Sequence[int],
    items: Sequence[Any],
    *,
    count: int,
    slot: Any,
    values: list[Any],
    errors: dict[int, ErrorInfo],
    timeout: float | None,
    seeder: _seeding.ItemSeeder | None,
    item_seconds: list[float] | None,
) -> None:
    """Items with seeding, positions, timing or timeouts, from `len(values)` up to `count`."""
    clock = time.monotonic
    for position in range(len(values), count):
        if seeder is not None:
            seeder.seed(indices[position])
        item_started = clock()
        if slot is not None:
            slot[SLOT_STARTED] = item_started  # written before the position: see process.py
            slot[SLOT_POSITION] = position
        try:
            value = fn(items[position])
        finally:
            if item_seconds is not None:
                item_seconds.append(clock() - item_started)
        if timeout is not None and slot is None and clock() - item_started > timeout:
            errors[position] = (timeout_error(indices[position], timeout), "")
            value = None
        values.append(value)


def iter_frames(data: bytes) -> Iterator[bytes]:
    """The messages of a byte string of whole frames (for tests and tools)."""
    offset = 0
    while offset < len(data):
        (length,) = FRAME.unpack_from(data, offset)
        offset += FRAME.size
        yield data[offset : offset + length]
        offset += length
