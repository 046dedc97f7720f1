"""Code that runs items: the loop of a worker process, and the chunk runner every backend uses.

The worker process talks to its pool's manager thread over one private duplex pipe::

    manager -> worker   b"F" function (key, payload, key to evict)   once per function
                        b"C" chunk id (8 bytes), then (function key, indices, items, timeout,
                             seed, max tasks per worker, profile)
                        b"S" stop
    worker -> manager   b"R" ready    after the initializer ran
                        b"I" initializer failed (pickled traceback text)
                        b"D" done     (completed, compute seconds, values, errors, retiring)

It also writes three numbers into a small shared array (``slot``) while it works: the
id of the chunk it started last, the position of the item it is running within that
chunk, and (when a timeout is set) when that item started. The manager reads them when
the worker dies or overruns, so it knows exactly which item to blame without any
per-item message.

This module must stay light: a spawned worker imports it, and neither tqdm nor the
decorator machinery is needed here.
"""

from __future__ import annotations

import collections
import itertools
import os
import pickle
import signal
import struct
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from .. import _reporting, _seeding, _transport
from ..errors import SerializationError, TaskTimeoutError

#: Slot layout: [position of the running item (-1: reading the chunk), start time].
SLOT_POSITION = 0
SLOT_STARTED = 1
SLOT_CHUNK = 2  # id of the chunk started last
#: Positions written outside any single item: reading the chunk, running it in the fast
#: path (which records no per-item position), and pickling its results.
POSITION_READING = -1.0
POSITION_RUNNING = -3.0
POSITION_PICKLING = -2.0

_nested = threading.local()
_in_worker_process = False


def nesting_depth() -> int:
    """0 in the main program; above 0 inside a parmap worker (process or thread)."""
    depth: int = getattr(_nested, "depth", 0)
    return max(depth, 1 if _in_worker_process else 0)


def in_worker_process() -> bool:
    """True inside a parmap worker process, which may not start processes of its own."""
    return _in_worker_process


def mark_worker_thread(depth: int) -> None:
    _nested.depth = depth


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
) -> tuple[list[Any], dict[int, ErrorInfo], int, float]:
    """Run ``fn`` on each item; return ``(values, errors, completed, compute_seconds)``.

    A failing item becomes an entry ``position -> (exception, traceback text)`` in
    ``errors`` (its value is ``None``) and the chunk goes on. ``SystemExit`` and
    ``KeyboardInterrupt`` raised by a task are that item's error too, unless listed in
    ``propagate`` (the serial backend lets a real Ctrl-C through). With ``budget``, at most
    that many items run; ``completed`` says how many did. With ``timeout`` (thread and
    serial backends, which cannot kill a task), an item that overran is reported as a
    :class:`TaskTimeoutError` once it returns. ``reporter`` receives the task's
    ``report_progress`` calls; ``item_seconds``, when given, receives each item's duration.

    Items run in C (``list.extend(map(...))``) unless something is needed per item: a seed,
    a timeout, durations, or ``careful``, which writes each item's position into ``slot``
    so that a worker's death can be blamed on one item (see ``ChunkTask.careful``).
    """
    values: list[Any] = []
    errors: dict[int, ErrorInfo] = {}
    count = len(items) if budget is None else min(budget, len(items))
    plain = timeout is None and seed is None and item_seconds is None and not (careful and slot is not None)
    outer_reporter = _reporting.install(reporter, values)
    # A seeded chunk's item seed must not outlive it: a later unseeded job on this worker
    # (or the caller, after a serial map) would get item_rng() instead of RuntimeError.
    outer_seed = _seeding.current_context() if seed is not None else None
    started = time.perf_counter()
    while len(values) < count:
        # Each pass runs items until one raises; ``len(values)`` is always the position
        # of the item running, since every finished item appends exactly one entry (and
        # ``list.extend`` keeps what it appended before an exception).
        try:
            if plain:
                values.extend(map(fn, itertools.islice(items, len(values), count)))
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
                    seed=seed,
                    item_seconds=item_seconds,
                )
        except propagate:
            raise
        except BaseException as error:  # a task's SystemExit/KeyboardInterrupt is its own error
            errors[len(values)] = (error, format_traceback(error))
            values.append(None)
    if outer_seed is not None:
        _seeding.restore_context(outer_seed)
    _reporting.restore(outer_reporter)
    return values, errors, count, time.perf_counter() - started


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
    seed: int | None,
    item_seconds: list[float] | None,
) -> None:
    """Items with seeding, progress reports, timing or timeouts."""
    clock = time.monotonic
    for position in range(len(values), count):
        if seed is not None:
            _seeding.seed_item(seed, indices[position])
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


def timeout_error(index: int, timeout: float | None) -> TaskTimeoutError:
    return TaskTimeoutError(f"item {index} ran longer than its timeout of {timeout} s", index=index, timeout=timeout)


def format_traceback(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


class StarCall:
    """``fn(*item)``: what starmap ships, so the worker loop knows one calling convention."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, item: Any) -> Any:
        return self.fn(*item)


# --------------------------------------------------------------------------- child process


def worker_main(conn: Any, shared: Any, init_payload: bytes | None, prefix: str) -> None:
    """Entry point of a worker process: initialise, then run chunks until told to stop."""
    global _in_worker_process
    _in_worker_process = True
    # Ctrl-C in a terminal reaches the whole process group; the parent decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _seeding.reseed_worker()
    _watch_parent(prefix)
    if init_payload is not None:
        try:
            initializer, initargs = pickle.loads(init_payload)
            initializer(*initargs)
        except BaseException as error:
            _send(conn, b"I" + pickle.dumps(format_traceback(error)))
            return
    _send(conn, b"R")
    # ``shared`` is the parent's multiprocessing.heap.BufferWrapper: three doubles.
    _serve(conn, shared.create_memoryview().cast("d"), prefix)


def _serve(conn: Any, slot: Any, prefix: str) -> None:
    functions: collections.OrderedDict[bytes, Callable[[Any], Any]] = collections.OrderedDict()
    items_run = 0
    send_lock = threading.Lock()

    def reporter(position: int, fraction: float) -> None:
        with send_lock:
            _send(conn, b"P" + struct.pack("<id", position, fraction))

    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the parent is gone
        kind = message[:1]
        if kind == b"S":
            return
        if kind == b"F":
            key, payload, evict = pickle.loads(memoryview(message)[1:])
            functions[key] = pickle.loads(payload)
            if evict is not None:
                functions.pop(evict, None)
            continue
        slot[SLOT_POSITION] = POSITION_READING
        (slot[SLOT_CHUNK],) = struct.unpack_from("<q", message, 1)
        decode_started = time.perf_counter()
        key, indices, items, timeout, seed, max_tasks, profile, careful = _transport.decode(memoryview(message)[9:])
        decode_seconds = time.perf_counter() - decode_started
        budget = None if max_tasks is None else max(max_tasks - items_run, 0)
        slot[SLOT_POSITION] = POSITION_RUNNING
        item_seconds: list[float] | None = [] if profile else None
        values, errors, completed, compute = run_chunk(
            functions[key],
            indices,
            items,
            timeout=timeout,
            seed=seed,
            slot=slot,
            careful=careful,
            budget=budget,
            reporter=reporter,
            item_seconds=item_seconds,
        )
        items_run += completed
        retiring = max_tasks is not None and items_run >= max_tasks
        slot[SLOT_POSITION] = POSITION_PICKLING
        summary = (completed, compute, retiring, decode_seconds, item_seconds)
        _send(conn, b"D" + _encode_results(indices, values, errors, summary, prefix))
        if retiring:
            return


def _encode_results(
    indices: Sequence[int], values: list[Any], errors: dict[int, ErrorInfo], summary: tuple[Any, ...], prefix: str
) -> bytes:
    """Pickle a chunk's results; a value or exception that cannot travel becomes an error entry."""
    wire_errors = {
        position: portable_error(error, text, indices[position]) for position, (error, text) in errors.items()
    }
    try:
        return _transport.encode((summary, values, wire_errors), prefix)
    except Exception:
        pass
    replace_unpicklable(
        indices, values, wire_errors, lambda value: _transport.discard(_transport.encode(value, prefix))
    )
    return _transport.encode((summary, values, wire_errors), prefix)


def replace_unpicklable(
    indices: Sequence[int], values: list[Any], wire_errors: dict[int, ErrorInfo], check: Callable[[Any], object]
) -> None:
    """Turn each value that ``check`` cannot pickle into a ``SerializationError`` entry."""
    for position, value in enumerate(values):
        if position in wire_errors:
            continue
        try:
            check(value)
        except Exception as error:
            values[position] = None
            wire_errors[position] = (
                SerializationError(
                    f"the result of item {indices[position]} could not be pickled: {type(error).__name__}: {error}"
                ),
                format_traceback(error),
            )


def portable_error(error: BaseException, text: str, index: int) -> tuple[BaseException, str]:
    """``error`` if it survives a pickle round trip, else a ``SerializationError`` that describes it."""
    try:
        _round_trip(error)
        return error, text
    except Exception as failure:
        replacement = SerializationError(
            f"item {index} raised {type(error).__qualname__}: {error}, which could not be pickled "
            f"back to the caller ({type(failure).__name__}: {failure})"
        )
        return replacement, text


def _round_trip(error: BaseException) -> None:
    pickle.loads(_transport.dumps(error))


def _send(conn: Any, data: bytes) -> None:
    try:
        conn.send_bytes(data)
    except (BrokenPipeError, OSError):
        os._exit(0)  # the parent is gone; nobody is left to report to


def _watch_parent(prefix: str) -> None:
    """Exit as soon as the parent dies, even mid-task, and remove our shared-memory files."""
    import multiprocessing
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return
    sentinel = parent.sentinel

    def watch() -> None:
        wait([sentinel])
        _transport.remove_segments(prefix)
        os._exit(0)

    threading.Thread(target=watch, name="parmap-parent-watch", daemon=True).start()
