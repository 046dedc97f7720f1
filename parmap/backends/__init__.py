"""Backends: where chunks run.

A backend receives `ChunkTask` objects from the engine and, for each one, delivers
exactly one outcome to the task's job through `JobSpec.deliver`:

* `ChunkDone`: the chunk ran (some items may have raised); `completed` says how
  many of its items ran, the rest are to be sent again (a worker retired mid-chunk);
* `ChunkLost`: the worker died or timed out; `position` names the item that was
  running (`None` when it cannot be known, e.g. a death while unpickling the chunk);
* `ChunkUndecodable`: the chunk ran but its results could not be unpickled as a
  whole; the engine runs it again `careful` (each result pickled on its own), so that
  only the item whose result cannot travel fails;
* `ChunkFailed`: the chunk cannot run at all (pool shut down, initializer failed).

A backend may also deliver a chunk's results still pickled, as a `ChunkArrived`: the
job's thread then calls its `decode()` for the `ChunkDone` (or `ChunkUndecodable`).

Before its outcome, a chunk may also deliver any number of `ChunkProgress` reports
(a running task called `parmap.report_progress`).

Backends are looked up by name with `get_backend()`, which imports the module
`parmap.backends.<name>` lazily and reads its `backend_class`; optional backends (dask)
fail there with an `ImportError` that says what to install.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Union

from .. import _transport
from .._config import PoolConfig
from .._sharing import SharedObject
from .._state import NO_SHARED
from ..errors import SerializationError

_INSTALL_HINTS = {
    "dask": 'the dask backend needs dask.distributed: pip install "parmap-decorator[dask]"',
}


class JobSpec:
    """What a backend needs to know of a job, shared by all of its chunks.

    This and `ChunkTask`, which backends and the engine update, are plain classes with
    `__slots__`, not dataclasses: they are built on the first map's path, where each
    dataclass would cost about a millisecond of code generation. The outcomes, never
    changed once made, are `NamedTuple`s.
    """

    __slots__ = (
        "cancelled",
        "concurrency",
        "deliver",
        "function",
        "function_payload",
        "job_id",
        "max_tasks_per_worker",
        "profile",
        "seed",
        "shared",
        "shared_payload",
        "timeout",
    )

    job_id: int
    function: Callable[[Any], Any]
    deliver: Callable[[Outcome], None]
    timeout: float | None
    max_tasks_per_worker: int | None
    seed: int | None
    #: Measure each item's duration (`stats=True`).
    profile: bool
    #: Items of an `async def` task each worker awaits at once.
    concurrency: int
    #: Filled by a backend that ships functions: `(key, pickled function)`, computed once.
    function_payload: tuple[bytes, bytes] | None
    #: The map's `shared=` object and its key (`None` without one): see `parmap._sharing`.
    shared: SharedObject | None
    #: Filled by a backend that ships the shared object: its encoded form, made once per
    #: pool and held by each job that uses it.
    shared_payload: Any
    #: Set by [Job.cancel][parmap._engine.Job.cancel], from any thread, before anything
    #: else: a backend never starts a chunk of a cancelled job it still holds, even one the
    #: job's thread submitted after the cancel (it drops them when it takes them).
    cancelled: bool

    def __init__(
        self,
        job_id: int,
        function: Callable[[Any], Any],
        deliver: Callable[[Outcome], None],
        *,
        timeout: float | None = None,
        max_tasks_per_worker: int | None = None,
        seed: int | None = None,
        profile: bool = False,
        concurrency: int = 1,
        function_payload: tuple[bytes, bytes] | None = None,
        shared: SharedObject | None = None,
        shared_payload: Any = None,
        cancelled: bool = False,
    ) -> None:
        self.job_id = job_id
        self.function = function
        self.deliver = deliver
        self.timeout = timeout
        self.max_tasks_per_worker = max_tasks_per_worker
        self.seed = seed
        self.profile = profile
        self.concurrency = concurrency
        self.function_payload = function_payload
        self.shared = shared
        self.shared_payload = shared_payload
        self.cancelled = cancelled

    @property
    def shared_value(self) -> Any:
        """What `parmap.shared()` returns in this job's tasks (`NO_SHARED` without one)."""
        return NO_SHARED if self.shared is None else self.shared.value

    def pickle_function(self) -> tuple[bytes, bytes]:
        """`(key, pickled function)`, pickled on the first call only.

        Raises:
            SerializationError: the function cannot be pickled.
        """
        if self.function_payload is None:
            try:
                self.function_payload = _transport.dumps_function(self.function)
            except Exception as error:
                raise SerializationError(f"the function {self.function!r} could not be pickled: {error}") from error
        return self.function_payload


class ChunkTask:
    """A run of items from one job, sent to one worker as a unit."""

    __slots__ = ("careful", "chunk_id", "dispatched_at", "indices", "items", "job", "submitted_at")

    chunk_id: int
    job: JobSpec
    indices: Sequence[int]
    items: Sequence[Any]
    #: Record each item's position as it runs, so that a crash can be blamed on one item,
    #: and pickle each result on its own, so that one result that cannot be unpickled fails
    #: only its item. Off by default (the fast path runs items in C); set when a chunk is
    #: re-run after its worker died somewhere inside it or its results could not be decoded.
    careful: bool
    #: `time.monotonic()` when the engine submitted it and when a worker received it.
    submitted_at: float
    dispatched_at: float

    def __init__(
        self,
        chunk_id: int,
        job: JobSpec,
        indices: Sequence[int],
        items: Sequence[Any],
        *,
        careful: bool = False,
        submitted_at: float = 0.0,
        dispatched_at: float = 0.0,
    ) -> None:
        self.chunk_id = chunk_id
        self.job = job
        self.indices = indices
        self.items = items
        self.careful = careful
        self.submitted_at = submitted_at
        self.dispatched_at = dispatched_at


class ChunkDone(NamedTuple):
    """The chunk ran; `values[i]` is item `i`'s result unless `i` is in `errors`."""

    task: ChunkTask
    values: list[Any]
    errors: dict[int, BaseException]
    completed: int
    compute_seconds: float
    #: Who ran it (a pid, a thread name, a dask worker address), for per-worker statistics.
    worker: object = None
    #: Seconds each item took, when the job asked for a profile.
    item_seconds: list[float] | None = None
    #: Seconds spent pickling and unpickling the chunk and its results.
    transport_seconds: float = 0.0


class ChunkProgress(NamedTuple):
    """The task at `position` reported it is `fraction` done (not an outcome: more follow)."""

    task: ChunkTask
    position: int
    fraction: float


class ChunkLost(NamedTuple):
    """The worker died or timed out; `position` is the item it was running, if known."""

    task: ChunkTask
    position: int | None
    error: BaseException


class ChunkUndecodable(NamedTuple):
    """The chunk ran, but its results could not be unpickled here as one message."""

    task: ChunkTask
    error: SerializationError


class ChunkFailed(NamedTuple):
    """The chunk cannot run at all (the pool shut down, its initializer failed)."""

    task: ChunkTask
    error: BaseException


class ChunkArrived(NamedTuple):
    """A chunk's results as they arrived, still pickled: the job's thread decodes them.

    Unpickling the results is the largest cost a cheap chunk has on the caller's side
    (200,000 ints: about 10 ms). The process backend's manager thread hands them over
    undecoded, so that it never holds the GIL long while the job's thread pickles the next
    chunks (each thread would otherwise wait out the other's switch interval, 5 ms). Only
    results held whole in the message travel so (no shared-memory segment): dropped
    undecoded, when the job ends first, they leave nothing behind.
    """

    task: ChunkTask
    #: Unpickles the results: a `ChunkDone`, or what the backend makes of results that
    #: cannot be unpickled (per-item errors, or a `ChunkUndecodable`).
    decode: Callable[[], Union[ChunkDone, ChunkUndecodable]]


Outcome = Union[ChunkDone, ChunkLost, ChunkUndecodable, ChunkFailed, ChunkProgress, ChunkArrived]


class Backend(abc.ABC):
    """A pool of workers of one kind, shared by every job with the same `PoolConfig`."""

    #: Compute time "auto" chunking aims for per chunk on this backend; `None` keeps the
    #: policy's default. A backend with a costly per-chunk round trip (dask) asks for more.
    target_chunk_seconds: float | None = None

    #: True where a `timeout` stops the overrunning item (the process backend kills its
    #: worker); False where the item is reported once it returns (threads, serial, Dask).
    timeouts_kill: bool = False

    def __init__(self, config: PoolConfig) -> None:
        self.config = config

    @classmethod
    def nested_config(cls, config: PoolConfig, *, daemonic: bool) -> PoolConfig:
        """The pool a map asking for `config` uses when it is called inside a task.

        joblib's `get_nested_backend` idea: each backend decides what its own kind of map
        becomes when nested. `config.depth` is already the nesting depth (1 inside a task
        of the main program's pools); `daemonic` is True in a process that may not have
        children (a parmap or Dask worker process, a `multiprocessing.Pool` worker).
        The registry asks once per map, nested or not (a Dask task at depth 0 is nested
        for Dask). The default keeps the config as it is.
        """
        return config

    @classmethod
    def prepare(cls, config: PoolConfig) -> None:
        """Called in the caller's thread when a map for `config` begins, before parmap
        starts any thread for it (a background reader, the hashing helpers) and before the
        pool exists: what a pool must set up from a one-thread process goes here (the
        process backend's fork server). The default does nothing.
        """
        return

    @classmethod
    def release(cls) -> None:
        """Called by `parmap.shutdown()` (and at exit) once every pool is shut down: release
        what [prepare][parmap.backends.Backend.prepare] set up for this backend's pools. The
        default does nothing.
        """
        return

    def check_item(self, item: Any) -> None:
        """Raise `SerializationError` if `item` cannot travel to a worker.

        The engine calls it on each item of a chunk that could not be pickled, to fail only
        the bad items. Backends that pickle nothing (serial, thread) accept every item.
        """
        del item  # nothing travels: every item is fine

    @property
    def workers(self) -> int:
        """How many chunks can run at once; the engine sizes chunks and windows from it."""
        return self.config.workers

    @abc.abstractmethod
    def submit(self, task: ChunkTask) -> None:
        """Queue `task`; its outcome is delivered later through `task.job.deliver`.

        Raises `SerializationError` synchronously when the chunk cannot be pickled.
        """

    @abc.abstractmethod
    def cancel(self, job_id: int, *, stop_running: bool) -> None:
        """Drop the job's queued chunks; with `stop_running`, also stop its running ones."""

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Stop every worker and release every resource; idempotent."""

    @property
    @abc.abstractmethod
    def usable(self) -> bool:
        """False once shut down or broken: the registry then builds a new pool."""


def get_backend(name: str) -> type[Backend]:
    """Import the backend module `parmap.backends.<name>` and return its backend class.

    Raises:
        ImportError: an optional backend's dependencies are missing (the message says
            what to install).
    """
    try:
        module = importlib.import_module(f"parmap.backends.{name}")
    except ImportError as error:
        hint = _INSTALL_HINTS.get(name)
        if hint is None:
            raise
        raise ImportError(hint) from error
    backend_class: type[Backend] = module.backend_class
    return backend_class
