"""Dask backend: the same semantics on a `dask.distributed` cluster.

Each `ChunkTask` becomes one Dask task. Nothing here blocks the engine's thread
while a task runs: chunks are handed to the client's event loop, and each result is
fetched there by a coroutine that delivers the outcome:

```text
engine thread              client event loop                      Dask worker (any host)
-------------              -----------------                      ----------------------
submit(task)
  pickle chunk (once)
  outbox.append ---------> _flush(): client.map(_run_task, ...) -> _run_task(...)
                             (one graph update per batch)           load function (cached by key)
                                                                    initializer (once per process)
                                                                    run_chunk(...)  # as every backend
job.deliver(outcome) <---- _collect(): await gather(future) <----- tagged, pickled results
```

Why not `add_done_callback` and `future.result()`: Dask runs every done-callback of a
process in one thread, where each `result()` is a blocking round trip, so results came
back one at a time. Measured on a LocalCluster, 200 single-task `client.submit` calls plus
200 `result()` calls cost about twice the client and scheduler CPU of one `client.map`
and one `gather`: so chunks submitted together go as one graph update, and the
coroutines' concurrent fetches are merged by Dask into one request per worker.

Which cluster (decided once, when the pool is created):

* `address=`: a client connected to that scheduler, owned (closed) by the pool;
* `client=`: that client, never closed by parmap;
* neither: the current client (`distributed.get_client()`) when there is one, never
  closed by parmap; otherwise a `LocalCluster` on 127.0.0.1 with `workers` worker
  processes of one thread each, owned by the pool and closed at shutdown (and at exit).
  It listens on loopback only and speaks TLS with credentials made for it alone
  (`Security.temporary()`), so no other process of the machine can use it.

The caller's own modules travel by value to a cluster parmap did not start (see
[parmap._shipping][]): pickling for the cluster happens inside `_transport.shipping`.

Semantics that differ because of what Dask can do:

* `timeout`: Dask cannot interrupt a running task, so, as on the thread backend, an item
  that overran is reported as [`TaskTimeoutError`][parmap.TaskTimeoutError] once it returns.
* A lost worker: Dask itself runs the task again on another worker (up to the scheduler's
  `distributed.scheduler.allowed-failures`); after that the loss reaches the engine as a
  [`WorkerLostError`][parmap.WorkerLostError], and `retries` applies as on every backend. A lost
  connection to the scheduler fails the job with [`PoolClosedError`][parmap.PoolClosedError] naming its
  address; a client parmap made does not reconnect (the next map makes a new pool).
* `cancel` releases the job's futures: queued tasks never start; a task already running
  finishes on its worker and its result is dropped.
* `max_tasks_per_worker` does not apply: parmap does not manage Dask's worker processes.
* `max_worker_memory` becomes the `memory_limit` of each worker of the LocalCluster
  parmap starts, which Dask enforces with its own policy (spill to disk, pause, restart
  the worker); with `address=`, `client=` or a current client it is a `ValueError`.
* Nested maps: a Dask-backend map with no `address`/`client`, called inside a task
  (a parmap task on any backend, or any Dask task), runs inline in that task's thread, like
  the serial backend. A task then never waits for cluster slots held by its own job, so
  nesting cannot deadlock; the outer map already spreads the work. With a cluster named
  explicitly, the inner map goes to that cluster.

The function is pickled once per job with cloudpickle and identified by the digest of its
pickle; each worker process unpickles it once and keeps it (`MAX_CACHED_FUNCTIONS`).
A function or chunk whose pickle is `SCATTER_MIN_BYTES` or more is scattered to the
workers instead of travelling inside the task graph (Dask warns about large graphs).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import dataclasses
import functools
import gc
import os
import pickle
import struct
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import distributed
from distributed.comm.core import CommClosedError
from distributed.scheduler import KilledWorker

from .. import _sharing, _shipping, _state, _transport
from .._config import PoolConfig
from .._reducers import bind_main_globals
from .._state import NO_SHARED
from ..errors import (
    InitializerError,
    ParmapError,
    PoolClosedError,
    PoolStartError,
    RemoteTraceback,
    SerializationError,
    WorkerLostError,
)
from . import Backend, ChunkFailed, ChunkLost, ChunkProgress, ChunkTask, Outcome
from ._protocol import (
    ChunkCall,
    ChunkResult,
    Timings,
    decode_call,
    decode_result,
    done_outcome,
    encode_call,
    encode_result,
    format_traceback,
    run_chunk,
    undecodable_outcome,
)
from ._worker import mark_worker_thread, nesting_depth

#: Functions a worker process keeps unpickled, least recently used evicted first.
MAX_CACHED_FUNCTIONS = 32

#: Functions whose scattered copy the client keeps alive for later jobs (one future each).
MAX_SCATTERED_FUNCTIONS = 8

#: Shared objects (`shared=`) whose broadcast copy the client keeps for later maps.
MAX_SHARED_OBJECTS = _sharing.MAX_KEPT

#: A function or chunk pickle at least this large is scattered to the workers rather than
#: embedded in the task. Below it, embedding costs nothing measurable; above it, Dask's
#: scheduler would relay the bytes (and warns about large graphs from 10 MB).
SCATTER_MIN_BYTES = 1 << 20

#: How long `shutdown` gives an owned client and cluster to close. An owned LocalCluster
#: kills workers that are still busy after this, so shutdown stays prompt with work running.
CLOSE_TIMEOUT_SECONDS = 5.0

#: How long a new pool tries to connect to a scheduler that an earlier pool of this process
#: lost (the scheduler went away), before the map fails with `PoolStartError`. A first
#: connection waits Dask's own `distributed.comm.timeouts.connect` (30 s by default), which
#: gives a cluster that starts with the program time to come up; a scheduler that went away
#: is likelier gone for good, and a map must say so promptly.
RECONNECT_TIMEOUT_SECONDS = 3.0

#: The addresses (`address=`) whose scheduler a pool of this process lost and no pool has
#: connected to since.
_lost_schedulers: set[str] = set()

#: Reason Dask gives to futures cancelled because the client lost its scheduler.
_SCHEDULER_LOST = "scheduler-connection-lost"

#: Errors that mean the worker holding a chunk (or its result) went away.
_LOST_ERRORS = (KilledWorker, CommClosedError, ConnectionError)

#: Tags of what a task returns (the first byte).
_DONE = b"D"
_UNLOADABLE = b"U"
_INIT_FAILED = b"I"

#: After the `_DONE` tag: the length of the pickled extras that precede the encoded result.
_EXTRAS_LENGTH = struct.Struct("<I")


@dataclasses.dataclass(eq=False)
class _Running:
    """A chunk submitted to Dask: its task, its future (once sent), and any scattered chunk data."""

    task: ChunkTask
    future: Any
    scattered: Any = None
    #: The asyncio task collecting the result; held here so it is not garbage-collected.
    collector: Any = None


class DaskBackend(Backend):
    """Chunks as Dask tasks on a `dask.distributed` cluster (see the module docstring)."""

    #: Compute per chunk that `chunksize="auto"` should aim for on Dask, whose per-task
    #: overhead (about 1 ms of scheduler and network work) is some five times a process
    #: pool's: 0.1 s keeps it near 1 %. Measured on 200 items of 10 ms: 0.78 x hand-written
    #: `client.map` with this target, 1.14 x with the default 20 ms. Not read by the engine
    #: yet (it uses `_chunking.TARGET_CHUNK_SECONDS` for every backend).
    target_chunk_seconds = 0.1

    def __init__(self, config: PoolConfig) -> None:
        super().__init__(config)
        options = config.backend_options
        self._address: str | None = options.get("address")
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}
        self._jobs: dict[int, set[str]] = collections.defaultdict(set)
        self._scattered: collections.OrderedDict[bytes, Any] = collections.OrderedDict()
        #: Shared objects broadcast to the workers, by key, least recently used first.
        self._shared: collections.OrderedDict[bytes, Any] = collections.OrderedDict()
        self._outbox: list[tuple[str, tuple[Any, ...]]] = []
        self._stopping = False
        self._broken: BaseException | None = None
        self._client: Any = None
        self._cluster: Any = None
        self._owns_client = False
        self._initializer: tuple[bytes, bytes] | None = None
        #: The modules shipped by value, and (module count, directory) when they were found.
        self._ship: frozenset[str] = frozenset()
        self._ship_state: tuple[int, str] | None = None
        #: Tasks report in-task progress (`report_progress`) as Dask events on this topic;
        #: the client hands them to the job of the chunk they name (see `_on_progress_event`).
        self._progress_topic = f"parmap-progress-{uuid.uuid4().hex}"
        self._connect(options.get("client"))
        self._subscribe()
        if config.initializer is not None:
            try:
                with self._shipping():
                    self._initializer = _transport.dumps_function((config.initializer, config.initargs))
            except Exception as error:
                raise SerializationError(f"the initializer could not be pickled: {error}") from error

    @classmethod
    def nested_config(cls, config: PoolConfig, *, daemonic: bool) -> PoolConfig:
        """Inside a task (a parmap task, or any Dask task), with no cluster named: serial.

        A task then never waits for cluster slots held by its own job, so nesting cannot
        deadlock; the outer map already spreads the work. A cluster named explicitly
        (`address=` or `client=`) gets the inner map too.
        """
        named = config.backend_options.get("client") is not None or config.backend_options.get("address") is not None
        if not named and (config.depth > 0 or _inside_dask_task()):
            return dataclasses.replace(config, backend="serial", backend_options={})
        return config

    # ------------------------------------------------------------------ setup

    def _connect(self, client: Any) -> None:
        """Pick the cluster: `client`, `address`, the current client, or a new LocalCluster."""
        if client is not None:
            if client.status in ("closing", "closed"):
                raise PoolStartError(
                    f"the Dask client given as client= is {client.status}"
                    f"{_where(_address_of(client))}: pass a running client"
                )
            self._client = client
            return
        if self._address is not None:
            self._connect_to(self._address)
            return
        try:
            current = distributed.get_client()
        except ValueError:  # no current client
            current = None
        if current is not None and self.config.max_worker_memory is not None:
            raise ValueError(
                "max_worker_memory applies to the LocalCluster parmap starts for backend='dask', but a Dask "
                "client is current here and its workers are not parmap's: set that cluster's own memory_limit"
            )
        if current is not None:
            self._client = current
            return
        # Dask enforces the limit with its own policy (spill, pause, restart the worker);
        # without one, the cluster keeps Dask's default ("auto": the machine's share).
        limit = self.config.max_worker_memory
        memory = {} if limit is None else {"memory_limit": limit}
        self._cluster = distributed.LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=self.config.workers,
            threads_per_worker=1,
            processes=True,
            **memory,
            # Loopback only, and TLS with a certificate authority made for this cluster alone:
            # only this process holds the key, so no other process or user of the machine
            # can connect to the scheduler or the workers (and run code as the caller).
            host="127.0.0.1",
            protocol="tls://",
            security=_temporary_security(),
            dashboard_address=None,
            # No dashboard, and the scheduler's small HTTP server on a free port rather than on
            # 8787, which another cluster may hold (Dask would warn and move). The workers'
            # own HTTP servers on loopback too: Dask before 2025 binds them to every interface.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            worker_dashboard_address="127.0.0.1:0",
        )
        try:
            self._client = distributed.Client(self._cluster, set_as_default=False)  # type: ignore[no-untyped-call]
        except BaseException:
            self._cluster.close()
            raise
        self._owns_client = True

    def _connect_to(self, address: str) -> None:
        """Connect an owned client to the scheduler at `address`, which never reconnects.

        When the scheduler goes away, Dask's client would try to reconnect for its connect
        timeout, and a program ending meanwhile prints the tracebacks of the cancelled
        attempt. Instead the pool is broken at once ([_on_scheduler_lost][]): running jobs
        fail with `PoolClosedError` naming the address, and the next map makes a new pool,
        which connects again (for `RECONNECT_TIMEOUT_SECONDS`).

        Raises:
            PoolStartError: the scheduler cannot be reached.
        """
        timeout = {"timeout": RECONNECT_TIMEOUT_SECONDS} if address in _lost_schedulers else {}
        try:
            self._client = distributed.Client(address, set_as_default=False, **timeout)  # type: ignore[no-untyped-call]
        except (OSError, TimeoutError) as error:
            message = f"could not connect to the Dask scheduler at {address}: {error}"
            error.__traceback__ = None  # its frames hold the client Dask half made
            del error
            # That client closes itself when collected. Collected here, not at some later
            # allocation: inside the next Client's start, its close waits on the lock that
            # start holds (a deadlock in Dask).
            gc.collect()
            raise PoolStartError(message) from None
        _lost_schedulers.discard(address)
        self._owns_client = True
        # The client's report loop calls its `_reconnect()` when the scheduler's connection
        # closes; this pool's own handler stands in for it (a Dask without that hook keeps
        # reconnecting, and the pool is replaced once its client is not running).
        self._client._reconnect = self._on_scheduler_lost

    def _shipping(self) -> _transport.shipping:
        """Pickling for this cluster: the caller's own modules travel by value (see [parmap._shipping][]).

        Automatically on a cluster parmap did not start (`address=`, `client=`, a current
        client); the LocalCluster it starts runs this machine's files, so only the
        `ship_modules=` are shipped there. The modules are found again only when the
        program imported more, or moved to another directory.
        """
        state = (len(sys.modules), os.getcwd())
        if state != self._ship_state:
            explicit = self.config.backend_options.get("ship_modules", ())
            foreign = self._cluster is None
            self._ship = _shipping.modules_to_ship(explicit) if foreign else frozenset(explicit)
            self._ship_state = state
        return _transport.shipping(self._ship)

    def _subscribe(self) -> None:
        try:
            self._client.subscribe_topic(self._progress_topic, self._on_progress_event)
        except Exception as error:  # the client closed or lost its scheduler just now
            if self._owns_client:
                self._client.close(timeout=CLOSE_TIMEOUT_SECONDS)
            where = _where(_address_of(self._client))
            raise PoolStartError(f"the Dask client{where} is not running: {error}") from error

    # ------------------------------------------------------------------ Backend

    @property
    def workers(self) -> int:
        """The cluster's total threads (the pool's `workers` for an owned LocalCluster)."""
        if self._cluster is not None:
            return self.config.workers
        try:  # what the client last heard from the scheduler: no round trip, so never a wait
            threads = sum(worker["nthreads"] for worker in self._client.scheduler_info()["workers"].values())
        except Exception:  # no word from the scheduler yet: size as configured
            return self.config.workers
        return max(1, int(threads)) if threads else self.config.workers

    @property
    def usable(self) -> bool:
        return not self._stopping and self._broken is None and self._client.status == "running"

    @property
    def client(self) -> Any:
        """The `distributed.Client` this pool submits to."""
        return self._client

    def submit(self, task: ChunkTask) -> None:
        """Queue `task` as one Dask task; the client's event loop sends it and delivers its outcome.

        Raises:
            SerializationError: the function or the chunk cannot be pickled.
            PoolClosedError: the pool was shut down or lost its scheduler.
        """
        job = task.job
        with self._shipping():
            key, payload = job.pickle_function()
            call = ChunkCall.of(task, key, max_tasks=None)  # Dask's workers are not recycled
            try:
                chunk = encode_call(call, None)  # in band: the worker may be on another host
            except Exception as error:
                raise SerializationError(f"a chunk could not be pickled: {type(error).__name__}: {error}") from error
        if not self.usable:
            raise self._closed_error()
        function_data = self._function_data(key, payload)
        if job.shared is not None and job.shared_payload is None:
            job.shared_payload = self._broadcast_shared(job.shared)
        shared = NO_SHARED if job.shared is None else job.shared_payload
        scattered = self._client.scatter(chunk, hash=False) if len(chunk) >= SCATTER_MIN_BYTES else None
        dask_key = f"parmap-chunk-{uuid.uuid4().hex}"
        settings = (
            self._initializer,
            self.config.depth,
            (self._progress_topic, dask_key),
        )
        arguments = (key, function_data, chunk if scattered is None else scattered, settings, shared)
        with self._lock:
            self._running[dask_key] = _Running(task, None, scattered)
            self._jobs[job.job_id].add(dask_key)
            self._outbox.append((dask_key, arguments))
            first = len(self._outbox) == 1
        if first:
            self._client.loop.add_callback(self._flush)

    def check_item(self, item: Any) -> None:
        """Raise `SerializationError` if `item` cannot be pickled (used to find the bad item)."""
        try:
            with self._shipping():
                _transport.dumps(item)
        except Exception as error:
            raise SerializationError(f"{type(error).__name__}: {error}") from error

    def cancel(self, job_id: int, *, stop_running: bool) -> None:
        """Release the job's futures: queued tasks never start, running ones finish unseen."""
        with self._lock:
            keys = self._jobs.pop(job_id, set())
            dropped = [self._running.pop(key) for key in keys if key in self._running]
        _release(dropped)

    def shutdown(self) -> None:
        """Fail outstanding chunks, release their futures, close what this pool created."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            running = list(self._running.values())
            self._running.clear()
            self._jobs.clear()
            scattered = list(self._scattered.values()) + list(self._shared.values())
            self._scattered.clear()
            self._shared.clear()
        for entry in running:
            _deliver(ChunkFailed(entry.task, PoolClosedError("the pool was shut down")))
        _release(running)
        for future in scattered:
            _release_future(future)
        try:
            self._client.unsubscribe_topic(self._progress_topic)
        except Exception:  # the client is already closed
            pass
        if self._owns_client:
            try:
                self._client.close(timeout=CLOSE_TIMEOUT_SECONDS)
            except Exception:  # already closed (Dask's own exit hook runs first)
                pass
        if self._cluster is not None:
            try:
                self._cluster.close(timeout=CLOSE_TIMEOUT_SECONDS)
            except Exception:
                pass

    # ------------------------------------------------------------------ helpers

    def _function_data(self, key: bytes, payload: bytes) -> Any:
        """What the task gets for the function: its pickle, or a future of it once scattered."""
        if len(payload) < SCATTER_MIN_BYTES:
            return payload
        with self._lock:
            future = self._scattered.get(key)
            if future is not None:
                self._scattered.move_to_end(key)
                return future
        future = self._client.scatter(payload, hash=False, broadcast=False)
        with self._lock:
            self._scattered[key] = future
            evicted = self._scattered.popitem(last=False)[1] if len(self._scattered) > MAX_SCATTERED_FUNCTIONS else None
        if evicted is not None:
            _release_future(evicted)
        return future

    def _broadcast_shared(self, shared: _sharing.SharedObject) -> Any:
        """A future of the map's shared object, scattered once to every worker (kept for later maps).

        Raises:
            SerializationError: it cannot be pickled.
        """
        with self._lock:
            future = self._shared.get(shared.key)
            if future is not None:
                self._shared.move_to_end(shared.key)
                return future
        try:
            value = self._with_own_modules(shared.value)
            # In a list: Dask scatters a dict or a list element by element.
            (future,) = self._client.scatter([value], broadcast=True, hash=False)
        except Exception as error:
            raise SerializationError(
                f"the map's shared object could not be sent to the Dask workers: {type(error).__name__}: {error}"
            ) from error
        with self._lock:
            self._shared[shared.key] = future
            evicted = self._shared.popitem(last=False)[1] if len(self._shared) > MAX_SHARED_OBJECTS else None
        if evicted is not None:
            _release_future(evicted)  # running tasks that use it keep their copy
        return future

    def _with_own_modules(self, value: Any) -> Any:
        """`value` as Dask should pickle it: itself, or [_ShippedValue][] if it holds the caller's own classes.

        Dask pickles a scattered object by reference only; an instance of a class from the
        caller's `tasks.py` would not load on the workers. Only then does it travel as
        parmap pickled it (its large buffers still out of band, so NumPy data is not copied).
        """
        if not self._ship:
            return value
        buffers: list[pickle.PickleBuffer] = []
        with _transport.shipping(self._ship) as shipping:
            header = _transport.dumps(value, buffers.append)
        return _ShippedValue(header, buffers) if shipping.used else value

    def _flush(self) -> None:
        """Runs on the client's event loop: send every chunk submitted since the last flush.

        One `client.map` call makes one graph update for the whole batch: the engine
        submits several chunks in a row, and Dask's scheduler spends far less per task on
        one message of many tasks than on many messages of one.
        """
        with self._lock:
            batch = [(key, arguments) for key, arguments in self._outbox if key in self._running]
            self._outbox = []
        if not batch:
            return
        keys = [key for key, _ in batch]
        sent_at = time.monotonic()
        try:
            futures = self._client.map(_run_task, *zip(*(arguments for _, arguments in batch)), key=keys, pure=False)
        except Exception as error:  # e.g. the client closed under us: fail these chunks, never hang
            with self._lock:
                failed = [self._running.pop(key) for key in keys if key in self._running]
            for entry in failed:
                address = self._scheduler_address()
                failure = PoolClosedError(f"could not submit to the Dask scheduler at {address}: {error}")
                _deliver(ChunkFailed(entry.task, failure))
            return
        for key, future in zip(keys, futures):
            with self._lock:
                sent = self._running.get(key)
                if sent is not None:
                    sent.future = future
                    sent.task.dispatched_at = sent_at  # refined from the worker's own timing later
                    sent.collector = asyncio.ensure_future(self._collect(future))
            if sent is None:  # cancelled while being sent
                _release_future(future)

    def _on_progress_event(self, event: tuple[float, Any]) -> None:
        """Runs on the client's event loop: a task's `report_progress`, for its job's bar.

        Reports travel apart from results, so one may arrive after its chunk's result: the
        engine ignores reports for chunks it no longer waits for.
        """
        dask_key, position, fraction = event[1]
        with self._lock:
            entry = self._running.get(dask_key)
        if entry is not None:
            _deliver(ChunkProgress(entry.task, int(position), float(fraction)))

    async def _collect(self, future: Any) -> None:
        """Runs on the client's event loop: wait for `future`, fetch its result, deliver one outcome.

        Gathers awaited together are merged by Dask into one request per worker, so results
        come back in batches; nothing blocks a thread while a task runs.
        """
        try:
            data: bytes | None = await self._client.gather(future, asynchronous=True)
            failure: BaseException | None = None
        except BaseException as error:  # the task's fate, not ours: mapped below
            data, failure = None, error
        with self._lock:
            entry = self._running.pop(future.key, None)
            if entry is not None:
                keys = self._jobs.get(entry.task.job.job_id)
                if keys is not None:
                    keys.discard(future.key)
                    if not keys:
                        del self._jobs[entry.task.job.job_id]
        if entry is None:
            return  # cancelled by its job, or failed at shutdown
        try:
            outcome = self._outcome_of(entry.task, data, failure)
        except Exception as error:  # a bug here must fail the job, never hang it
            outcome = ChunkFailed(entry.task, error)
        _release_future(future)  # its result is here: the worker may free it now
        if entry.scattered is not None:
            _release_future(entry.scattered)
        _deliver(outcome)

    def _outcome_of(self, task: ChunkTask, data: bytes | None, failure: BaseException | None) -> Outcome:
        """Map what the task returned, or how it failed, to the engine's outcome."""
        if failure is not None or data is None:
            error = failure if failure is not None else RuntimeError("a Dask task returned nothing")
            if isinstance(error, (concurrent.futures.CancelledError, asyncio.CancelledError)):
                if getattr(error, "reason", None) == _SCHEDULER_LOST or self._client.status != "running":
                    return self._scheduler_lost(task, error)
                return ChunkLost(task, None, _worker_lost(task, error))
            if isinstance(error, _LOST_ERRORS):
                return ChunkLost(task, None, _worker_lost(task, error))
            return ChunkFailed(task, error)
        arrived = time.monotonic()
        tag, body = data[:1], data[1:]
        if tag == _DONE:
            decode_started = time.perf_counter()
            (extras_length,) = _EXTRAS_LENGTH.unpack_from(body)
            worker, task_seconds, worker_transport = pickle.loads(
                body[_EXTRAS_LENGTH.size : _EXTRAS_LENGTH.size + extras_length]
            )
            try:
                result = decode_result(
                    body[_EXTRAS_LENGTH.size + extras_length :], task.indices, task.careful, in_band=True
                )
            except BaseException as unpickling:
                return undecodable_outcome(task, unpickling)
            # The worker's clock is not ours: it started about `task_seconds` before the
            # result arrived, which bounds the time the chunk waited in Dask's queues.
            task.dispatched_at = min(arrived, max(task.dispatched_at, arrived - task_seconds))
            transport = worker_transport + time.perf_counter() - decode_started
            return done_outcome(task, result, worker=worker, transport_seconds=transport)
        text = pickle.loads(body)
        cannot_run: ParmapError
        if tag == _INIT_FAILED:
            cannot_run = InitializerError("the pool's initializer raised in a Dask worker")
            self._broken = cannot_run
        else:
            cannot_run = SerializationError(
                "the function or the items of a chunk could not be unpickled on a Dask worker: "
                "is every package they need installed there? (Your own modules travel with them when "
                "they are under the script's directory or the current directory; name others in "
                "ship_modules=[...].)"
            )
        cannot_run.__cause__ = RemoteTraceback(text)
        return ChunkFailed(task, cannot_run)

    def _scheduler_lost(self, task: ChunkTask, error: BaseException) -> ChunkFailed:
        failure = self._lost_connection(error)
        self._broken = failure
        return ChunkFailed(task, failure)

    def _lost_connection(self, cause: BaseException | None, *, say_why: bool = True) -> PoolClosedError:
        """The error of a job (or a map) whose pool lost its scheduler, which it names."""
        why = f": {cause}" if cause is not None and say_why else ""
        error = PoolClosedError(f"lost the connection to the Dask scheduler at {self._scheduler_address()}{why}")
        error.__cause__ = cause
        return error

    def _closed_error(self) -> PoolClosedError:
        """Why this pool takes no more work: shut down, or its scheduler (named) is gone."""
        if self._stopping:
            return PoolClosedError("the Dask pool was shut down")
        if self._broken is not None and not isinstance(self._broken, PoolClosedError):
            broken = PoolClosedError(f"the Dask pool is broken: {self._broken}")
            broken.__cause__ = self._broken
            return broken
        return self._lost_connection(self._broken, say_why=False)

    def _scheduler_address(self) -> str:
        if self._address is not None:
            return self._address
        return _address_of(self._client) or "(unknown address)"

    async def _on_scheduler_lost(self) -> None:
        """Runs on the client's event loop when its scheduler's connection closed (owned clients).

        Breaks the pool and does what Dask's own reconnect does first: cancels the client's
        futures, so every chunk still out fails with `PoolClosedError` naming the address
        (its collector sees the cancellation, [_outcome_of][]); a chunk not yet sent fails
        here. The client then stops listening (its report loop ends, as it does once a
        client is closed), so nothing waits on a scheduler that is gone and nothing is left
        to print at exit.
        """
        client = self._client
        client.scheduler_comm = None  # the client's report loop ends here
        _lost_schedulers.add(self._scheduler_address())
        failure = self._lost_connection(None)
        with self._lock:
            if self._broken is None:
                self._broken = failure
            unsent = [key for key, entry in self._running.items() if entry.future is None]
            failed = [self._running.pop(key) for key in unsent]
            self._outbox = []
        for entry in failed:
            _deliver(ChunkFailed(entry.task, failure))
        for state in list(client.futures.values()):
            state.cancel()
        client.futures.clear()


class _ShippedValue:
    """A shared object pickled by parmap for the cluster, rebuilt by the worker that receives it."""

    __slots__ = ("buffers", "header")

    def __init__(self, header: bytes, buffers: list[pickle.PickleBuffer]) -> None:
        self.header = header
        self.buffers = buffers

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return (_load_shipped_value, (self.header, *self.buffers))  # protocol 5: buffers out of band


def _load_shipped_value(header: bytes, *buffers: Any) -> Any:
    return pickle.loads(header, buffers=buffers)


def _address_of(client: Any) -> str | None:
    """The address of `client`'s scheduler, if it still knows it (a closed client may not)."""
    try:
        return str(client.scheduler.address)
    except AttributeError:  # closed: no scheduler rpc any more
        pass
    cluster = getattr(client, "cluster", None)
    address = getattr(cluster, "scheduler_address", None) or getattr(client, "_start_arg", None)
    return address if isinstance(address, str) else None


def _where(address: str | None) -> str:
    return f" (scheduler at {address})" if address else ""


def _worker_lost(task: ChunkTask, error: BaseException) -> WorkerLostError:
    indices = list(task.indices)
    which = f"item {indices[0]}" if len(indices) == 1 else f"items {indices[0]}..{indices[-1]}"
    lost = WorkerLostError(
        f"the Dask worker running {which} was lost: {type(error).__name__}: {error}", indices=indices
    )
    lost.__cause__ = error
    return lost


def _deliver(outcome: Outcome) -> None:
    try:
        outcome.task.job.deliver(outcome)
    except Exception:  # a closed job's queue: the job no longer listens
        pass


def _release(entries: Sequence[_Running]) -> None:
    for entry in entries:
        if entry.future is not None:
            _release_future(entry.future)
        if entry.scattered is not None:
            _release_future(entry.scattered)


def _release_future(future: Any) -> None:
    """Drop our claim on `future`'s key without waiting (the scheduler forgets unused work)."""
    try:
        future.release()
    except Exception:  # the client is closed: nothing left to release
        pass


def _temporary_security() -> Any:
    """TLS credentials for one cluster: a new CA, and a certificate signed by it, in memory.

    Raises:
        ImportError: `cryptography` (which makes the certificates) is not installed; the
            message says how to install it, or how to bring a cluster of your own.
    """
    from distributed.security import Security

    try:
        return Security.temporary()  # type: ignore[no-untyped-call]
    except ImportError as error:
        raise ImportError(
            "backend='dask' secures the LocalCluster it starts with TLS, whose temporary certificates need the "
            '`cryptography` package: pip install "parmap-decorator[dask]" (or pip install cryptography); '
            "or pass address= or client= for a cluster of your own"
        ) from error


def _inside_dask_task() -> bool:
    """True in a thread that runs a Dask task (`distributed.get_worker()` answers)."""
    try:
        distributed.get_worker()
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- worker side

_worker_lock = threading.Lock()
_functions: collections.OrderedDict[bytes, Any] = collections.OrderedDict()
_initialized: set[bytes] = set()
#: What `parmap.worker_state()` returns in this Dask worker process's tasks.
_worker_state: dict[str, Any] = {}


def _run_task(
    function_key: bytes,
    function_payload: bytes,
    chunk: bytes,
    settings: tuple[tuple[bytes, bytes] | None, int, tuple[str, str]],
    shared: Any = NO_SHARED,
) -> bytes:
    """The Dask task: run one chunk with `run_chunk()`; return tagged, pickled results.

    `chunk` is an in-band encoded `ChunkCall`; `settings` is `(initializer, depth,
    (progress topic, task key))`; `shared` is the map's shared object (Dask resolves its
    broadcast future here). The results travel as a `ChunkResult` encoded by the
    shared codec (in band), after a small pickled `(worker address, task seconds,
    transport seconds)`. Never raises for an item's error (that is part of the results); returns an
    `_UNLOADABLE` or `_INIT_FAILED` tag with the traceback text when the chunk cannot
    run at all.
    """
    started = time.perf_counter()
    bind_main_globals()  # idempotent; before anything is unpickled (see parmap._reducers)
    initializer, depth, (topic, dask_key) = settings
    try:
        fn = _load_function(function_key, function_payload)
        call = decode_call(chunk, in_band=True)
    except Exception as error:
        return _UNLOADABLE + pickle.dumps(format_traceback(error))
    if initializer is not None:
        failure = _initialize_once(*initializer)
        if failure is not None:
            return _INIT_FAILED + pickle.dumps(failure)
    item_seconds: list[float] | None = [] if call.profile else None
    decoded = time.perf_counter()
    previous = nesting_depth()
    mark_worker_thread(depth + 1)  # maps called by the task nest (see the module docstring)
    try:
        with _state.installed_state(_worker_state), _state.installed_shared(shared):
            values, errors, completed, compute = run_chunk(
                fn,
                call.indices,
                call.items,
                timeout=call.timeout,
                seed=call.seed,
                careful=call.careful,
                concurrency=call.concurrency,
                item_seconds=item_seconds,
                reporter=functools.partial(_report_progress, distributed.get_worker(), topic, dask_key),
            )
    finally:
        mark_worker_thread(previous)
    encode_started = time.perf_counter()
    worker = distributed.get_worker().address
    result = ChunkResult(
        call.chunk_id, os.getpid(), completed, False, Timings(compute, decoded - started, item_seconds), values, errors
    )
    del values, errors
    encoded = encode_result(result, call.indices, call.careful, None)
    now = time.perf_counter()
    extras = pickle.dumps((worker, now - started, (decoded - started) + (now - encode_started)))
    return _DONE + _EXTRAS_LENGTH.pack(len(extras)) + extras + encoded


def _report_progress(worker: Any, topic: str, dask_key: str, position: int, fraction: float) -> None:
    """A task's (already throttled) `report_progress`: an event the client is subscribed to."""
    worker.log_event(topic, [dask_key, position, fraction])


def _load_function(key: bytes, payload: bytes) -> Any:
    with _worker_lock:
        fn = _functions.get(key)
        if fn is not None:
            _functions.move_to_end(key)
            return fn
    fn = pickle.loads(payload)
    with _worker_lock:
        _functions[key] = fn
        while len(_functions) > MAX_CACHED_FUNCTIONS:
            _functions.popitem(last=False)
    return fn


def _initialize_once(key: bytes, payload: bytes) -> str | None:
    """Run the pool's initializer once in this worker process; the traceback text if it failed."""
    with _worker_lock:  # held while it runs: the process's other threads wait for it
        if key in _initialized:
            return None
        try:
            initializer, initargs = pickle.loads(payload)
            with _state.installed_state(_worker_state):
                initializer(*initargs)
        except BaseException as error:
            return format_traceback(error)
        _initialized.add(key)
    return None


def _shut_down_at_exit() -> None:
    """Interpreter exit: parmap's Dask pools close before Dask's own exit hooks run.

    Registered when this module is imported, after `distributed` registered its hooks, so it
    runs first (atexit runs the last registered first): each owned client closes (releasing
    its tasks) before Dask closes its clusters, whose scheduler would otherwise warn that
    removing a worker lost tasks a client still wanted.
    """
    from .. import _registry

    _registry.shut_down_backend("dask")


atexit.register(_shut_down_at_exit)

backend_class = DaskBackend
