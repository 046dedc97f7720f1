"""Errors raised by parmap.

Every error parmap itself raises derives from [`ParmapError`][parmap.ParmapError]; most
also derive from the standard exception a caller would already catch:

- [`ParmapError`][parmap.ParmapError]: base of every error parmap itself raises
    - [`WorkerLostError`][parmap.WorkerLostError] (also a `RuntimeError`): a worker process
      died while running an item
    - [`TaskTimeoutError`][parmap.TaskTimeoutError] (also a `TimeoutError`): an item ran
      longer than `timeout`
    - [`ResultTimeoutError`][parmap.ResultTimeoutError] (also `TimeoutError` and
      `multiprocessing.TimeoutError`): `AsyncResult.get(timeout)` ran out
    - [`PoolStartError`][parmap.PoolStartError]: a pool could not start its workers (the
      cause is named)
    - [`TaskStopIteration`][parmap.TaskStopIteration] (also a `RuntimeError`): a task raised
      `StopIteration` inside `imap`
    - [`CancelledError`][parmap.CancelledError] (also `concurrent.futures.CancelledError`):
      the job was cancelled
    - [`SerializationError`][parmap.SerializationError]: an item, result or exception could
      not be pickled
    - [`InitializerError`][parmap.InitializerError]: the pool's `initializer` failed in a
      worker
    - [`PoolClosedError`][parmap.PoolClosedError]: the pool was shut down while a job still
      used it
    - [`CheckpointMismatchError`][parmap.CheckpointMismatchError]: a checkpoint file belongs
      to a different job
    - [`CheckpointLockedError`][parmap.CheckpointLockedError] (also an `OSError`): another
      process holds the checkpoint's lock
- [`ParmapInstallWarning`][parmap.ParmapInstallWarning] (a `UserWarning`, not an error): the
  unrelated PyPI project `parmap` is installed in the same place as this one

A task's own exception is never wrapped: it reaches the caller with its own type,
chained (`__cause__`) to a [`RemoteTraceback`][parmap.RemoteTraceback] holding the
worker's traceback.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from multiprocessing import TimeoutError as _MultiprocessingTimeoutError
from typing import TYPE_CHECKING, Any

__all__ = [
    "CancelledError",
    "CheckpointLockedError",
    "CheckpointMismatchError",
    "InitializerError",
    "ParmapError",
    "ParmapInstallWarning",
    "PoolClosedError",
    "PoolStartError",
    "RemoteTraceback",
    "ResultTimeoutError",
    "SerializationError",
    "TaskStopIteration",
    "TaskTimeoutError",
    "WorkerLostError",
]


class ParmapError(Exception):
    """Base class of every error raised by parmap itself (not by your task)."""


class WorkerLostError(ParmapError, RuntimeError):
    """A worker process died (killed, `os._exit`, segfault, out of memory) while running an item.

    Also a `RuntimeError`, as `concurrent.futures`' `BrokenProcessPool` and mpire's
    worker-death error are, so code written against them catches it.

    Attributes:
        indices: input indices of the items charged with the loss.
        exitcode: the process exit code, negative for a signal (as `multiprocessing` reports it).
        pid: the lost worker's process id.
    """

    def __init__(
        self, message: str, *, indices: Sequence[int] = (), exitcode: int | None = None, pid: int | None = None
    ) -> None:
        super().__init__(message)
        self.indices = list(indices)
        self.exitcode = exitcode
        self.pid = pid

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_worker_lost, (self.args[0], self.indices, self.exitcode, self.pid))


def _rebuild_worker_lost(message: str, indices: list[int], exitcode: int | None, pid: int | None) -> WorkerLostError:
    return WorkerLostError(message, indices=indices, exitcode=exitcode, pid=pid)


class TaskTimeoutError(ParmapError, TimeoutError):
    """An item ran longer than the `timeout` seconds it was given.

    On the process backend the worker running it was killed and replaced; on the thread
    and serial backends the item is reported once it finishes, since threads cannot be killed.

    Attributes:
        index: the input index of the item.
        timeout: the limit, in seconds.
    """

    def __init__(self, message: str, *, index: int | None = None, timeout: float | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.timeout = timeout

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_timeout, (self.args[0], self.index, self.timeout))


def _rebuild_timeout(message: str, index: int | None, timeout: float | None) -> TaskTimeoutError:
    return TaskTimeoutError(message, index=index, timeout=timeout)


class ResultTimeoutError(ParmapError, TimeoutError, _MultiprocessingTimeoutError):
    """`AsyncResult.get(timeout)` returned before the job finished (the job goes on).

    Both `except TimeoutError` and `except multiprocessing.TimeoutError` catch it, so
    code written for `multiprocessing.pool.AsyncResult` keeps working.
    """


class PoolStartError(ParmapError):
    """A pool could not start its workers (too many open files, no memory, ...).

    The workers it did start are stopped; the message names the cause, which is also the
    `__cause__`.
    """


class TaskStopIteration(ParmapError, RuntimeError):
    """A task raised `StopIteration` (say, `next()` on an empty iterator) inside `imap`.

    `map`, `starmap` and `AsyncResult.get` raise the task's own `StopIteration`. An
    iterator cannot: a `StopIteration` out of `next()` is how an iterator says it is
    exhausted, so a `for` loop over `imap` would end silently and lose every later
    result. `imap` and `imap_unordered` raise this instead: the task's `StopIteration`
    (with the worker's traceback) is its `__cause__`, and it carries the item's index note.
    """


# `CancelledError` is made on first use (module `__getattr__`): its second base,
# `concurrent.futures.CancelledError`, costs `concurrent.futures` and `logging` to import
# (about 5 ms of a cold start), and a map that is never cancelled never needs it. Type
# checkers and the docs read the declaration below; the class made at run time carries the
# same docstring (a test compares them).
if TYPE_CHECKING:
    from concurrent.futures import CancelledError as _FuturesCancelledError

    class CancelledError(ParmapError, _FuturesCancelledError):
        """The job was cancelled: `AsyncResult.cancel()`, the awaiting asyncio task cancelled, or
        an `aimap` loop left early.

        Also `concurrent.futures.CancelledError`, so code written against futures catches it.
        It is an `Exception`, unlike `asyncio.CancelledError`: a task that awaits a map which
        *another* task cancelled gets this error, while a task that is itself cancelled gets
        its own `asyncio.CancelledError`, as asyncio expects.
        """

else:
    #: Guards the one creation of `CancelledError` (two threads may ask at once).
    _creating = threading.Lock()

    def __getattr__(name: str) -> Any:
        """`CancelledError`, made the first time anything reads it."""
        if name != "CancelledError":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        with _creating:
            if "CancelledError" not in globals():
                globals()["CancelledError"] = _make_cancelled_error()
        return globals()["CancelledError"]

    def _make_cancelled_error() -> type[ParmapError]:
        from concurrent.futures import CancelledError as _FuturesCancelledError

        class CancelledError(ParmapError, _FuturesCancelledError):
            """The job was cancelled: `AsyncResult.cancel()`, the awaiting asyncio task cancelled, or
            an `aimap` loop left early.

            Also `concurrent.futures.CancelledError`, so code written against futures catches it.
            It is an `Exception`, unlike `asyncio.CancelledError`: a task that awaits a map which
            *another* task cancelled gets this error, while a task that is itself cancelled gets
            its own `asyncio.CancelledError`, as asyncio expects.
            """

        # Named as every public class is (see parmap/__init__), so that it pickles by name.
        CancelledError.__module__ = "parmap"
        CancelledError.__qualname__ = "CancelledError"
        return CancelledError


class SerializationError(ParmapError):
    """An item, a result or an exception could not be pickled or unpickled."""


class InitializerError(ParmapError):
    """The pool's `initializer` raised in a worker; the worker's traceback is the `__cause__`."""


class PoolClosedError(ParmapError):
    """The pool was shut down (`parmap.shutdown()` or interpreter exit) while a job still ran."""


class CheckpointMismatchError(ParmapError):
    """A checkpoint file was written by another job (function or input length differ)."""


class CheckpointLockedError(ParmapError, OSError):
    """The checkpoint file is locked by another process (another map writing it, an open
    `sqlite3` shell in a transaction, ...) for longer than the checkpoint's busy timeout.

    Also an `OSError`, like every other reason a checkpoint file cannot be used.
    """


class ParmapInstallWarning(UserWarning):
    """`import parmap` found the files of the unrelated PyPI project `parmap` beside this one.

    Both projects use the import name `parmap`; installed in one environment, their files
    overwrite each other, and uninstalling either deletes files of the other. The warning
    names the files found; the repair is
    `pip uninstall parmap parmap-decorator && pip install parmap-decorator`.
    """


class RemoteTraceback(Exception):
    """Carries the formatted traceback of a task that failed in a worker.

    Set as the `__cause__` of the re-raised task exception, so Python prints the worker's
    traceback above the caller's.
    """

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb
