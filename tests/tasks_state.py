"""Tasks for the worker-state and shared-object tests (importable, so workers import them)."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import parmap

#: How many times this process pickled a [CountingTable][] (the caller counts its sends).
PICKLED = 0
#: How many times this process unpickled one (a worker counts what it received).
UNPICKLED = 0


class CountingTable:
    """A lookup table that counts how often it is pickled here and unpickled there."""

    def __init__(self, rows: dict[int, str]) -> None:
        self.rows = rows

    def __reduce__(self) -> tuple[Any, ...]:
        global PICKLED
        PICKLED += 1
        return (_rebuild_table, (self.rows,))


def _rebuild_table(rows: dict[int, str]) -> CountingTable:
    global UNPICKLED
    UNPICKLED += 1
    table = CountingTable.__new__(CountingTable)
    table.rows = rows
    return table


def worker_name() -> str:
    """Who runs this: a process pid or a thread's name."""
    return f"{os.getpid()}/{threading.current_thread().name}"


def count_calls(x: int) -> tuple[str, int, int]:
    """`(worker, calls so far in this worker, id of its state)`: the state outlives chunks."""
    state = parmap.worker_state()
    state["calls"] = state.get("calls", 0) + 1
    return worker_name(), state["calls"], id(state)


def remember_in_state(value: int) -> None:
    """An initializer that fills the worker's state."""
    parmap.worker_state()["given"] = value


def read_given(x: int) -> Any:
    return parmap.worker_state().get("given")


def lookup(i: int) -> Any:
    """Item `i` of the map's shared object."""
    return parmap.shared()[i]


def lookup_row(i: int) -> tuple[str, int]:
    """A `CountingTable` row, and how many tables this worker unpickled so far."""
    table: CountingTable = parmap.shared()
    return table.rows[i], UNPICKLED


def shared_kind(x: int) -> tuple[str, bool]:
    """The shared object's type, and whether it is writable."""
    value = parmap.shared()
    writable = not memoryview(value).readonly if isinstance(value, (bytes, bytearray, memoryview)) else True
    return type(value).__name__, writable


def shared_is_mapped(x: int) -> tuple[bool, str]:
    """Whether the shared array's memory is a mapped shared-memory file (not a copy), and its path."""
    array = parmap.shared()
    address = array.__array_interface__["data"][0]
    with open("/proc/self/maps") as maps:
        for line in maps:
            span, *rest = line.split()
            start, end = (int(part, 16) for part in span.split("-"))
            if start <= address < end:
                path = rest[4] if len(rest) > 4 else ""
                return "parmap-" in path, path
    return False, ""


def read_shared_anyway(x: int) -> Any:
    """Calls `parmap.shared()` in a map given none: the item fails with RuntimeError."""
    return parmap.shared()


def exit_or_lookup(i: int) -> Any:
    """Item 3 kills its worker; every other item reads the shared object (a replacement too)."""
    if i == 3:
        os._exit(1)
    return parmap.shared()[i]


async def lookup_async(i: int) -> tuple[Any, int]:
    """`async def`: the shared object and the worker state inside items awaited together."""
    await asyncio.sleep(0)
    state = parmap.worker_state()
    state["seen"] = state.get("seen", 0) + 1
    return parmap.shared()[i], id(state)


_meet = threading.Barrier(2, timeout=20)


def state_of_thread_at_barrier(x: int) -> tuple[str, int]:
    """Two items meet here, so they run on two threads at once: each sees its own state."""
    _meet.wait()
    return threading.current_thread().name, id(parmap.worker_state())
