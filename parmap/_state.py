"""What a task sees of its worker: [worker_state][parmap.worker_state] and [shared][parmap.shared].

* **Worker state** is a dict private to one worker, created empty when the worker starts
  (before the pool's initializer, which may fill it) and kept for the worker's life, across
  chunks and maps: the place for a database connection, a loaded model, a cache. One per
  worker process on the process backend, one per thread on the thread backend, one per
  pool on the serial backend, one per worker process on Dask.
* **The shared object** is the `shared=` of the running map, sent to each worker once
  (see [parmap._sharing][]) and handed to its tasks as they run.

Both are context variables, installed by the backend around what it runs (`with` blocks,
restored on every exit path), so an `async def` task's items, each in its own asyncio
task, see them too; a worker process also keeps its state as a process-wide default, for
threads a task starts itself. This module is imported by every worker: it stays light.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

__all__ = ["NO_SHARED", "installed_shared", "installed_state", "shared", "worker_state"]


class _Marker:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __reduce__(self) -> str:
        return self._name  # a module global: unpickles as the same object


#: A map given no `shared=` object (the option's default).
NO_SHARED: Any = _Marker("NO_SHARED")
#: Nothing runs: the caller's own code, outside any task.
_OUTSIDE: Any = _Marker("_OUTSIDE")

_state: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("parmap_worker_state", default=None)
_shared: contextvars.ContextVar[Any] = contextvars.ContextVar("parmap_shared", default=_OUTSIDE)

#: In a worker process: its state, for its whole life (set once by the worker's main).
_process_state: dict[str, Any] | None = None


def worker_state() -> dict[str, Any]:
    """The dict private to the worker running this task, kept across chunks and maps.

    Created empty in each worker (the pool's `initializer` may fill it) and kept as long as
    the worker lives: a replacement worker (after a crash, `max_tasks_per_worker`, a memory
    limit) starts with an empty one. One per worker process (process and Dask backends), one
    per worker thread (thread backend), one per pool (serial backend).

    ```python
    @parallel(workers=4)
    def score(row):
        state = parmap.worker_state()
        if "db" not in state:
            state["db"] = connect()  # once per worker
        return state["db"].lookup(row)
    ```

    Raises:
        RuntimeError: called outside a task or the pool's initializer.
    """
    state = _state.get()
    if state is None:
        state = _process_state
    if state is None:
        raise RuntimeError(
            "parmap.worker_state() is only available inside a task or the pool's initializer "
            "(it is the running worker's own dict)"
        )
    return state


def shared() -> Any:
    """The `shared=` object of the map this task belongs to.

    Sent to each worker once per map, or once for as long as the same object is passed
    again; NumPy arrays and large bytes-like objects are mapped from shared memory, not
    copied into each worker (a `bytes` or `bytearray` arrives as a `memoryview` of it,
    read-only for `bytes`). Treat it as read-only: a change made in one worker is not seen
    by the others nor by the caller.

    Raises:
        RuntimeError: called outside a task, or in a task of a map given no `shared=`.
    """
    value = _shared.get()
    if value is _OUTSIDE:
        raise RuntimeError("parmap.shared() is only available inside a task")
    if value is NO_SHARED:
        raise RuntimeError("parmap.shared() was called in a task of a map given no shared= object")
    return value


def installed_state(state: dict[str, Any]) -> contextlib.AbstractContextManager[None]:
    """`state` is what [worker_state][] returns inside the block."""
    return _installed(_state, state)


def installed_shared(value: Any) -> contextlib.AbstractContextManager[None]:
    """`value` (or `NO_SHARED`) is what [shared][] returns inside the block."""
    return _installed(_shared, value)


@contextlib.contextmanager
def _installed(variable: contextvars.ContextVar[Any], value: Any) -> Iterator[None]:
    token = variable.set(value)
    try:
        yield
    finally:
        variable.reset(token)


def set_process_state(state: dict[str, Any]) -> None:
    """A worker process's state for its whole life (its main calls this once, at start)."""
    global _process_state
    _process_state = state
