"""Process backend: worker processes, their sentinels, and the manager thread that owns them.

Data flow (compare ``concurrent.futures.process``)::

    caller thread (engine)          manager thread                      worker processes
    ----------------------          --------------                      ----------------
    submit(task)
      encode chunk ----------> pending deque ---- idle worker? ----> b"F" function (once)
      wake pipe -------------> wait(wake, conns,                     b"C" chunk
                                    sentinels, deadline)
                               <- b"D" results ---------------------- run_chunk(...)
                               decode, job.deliver(ChunkDone)
                               <- sentinel: died -> read slot ->
                                  job.deliver(ChunkLost), respawn
                               <- deadline: slot says item overran
                                  -> kill that worker only

Each worker has a private pipe and holds the chunk it runs plus at most one small
prefetched chunk, so the manager always knows which chunks each worker holds; a shared
three-number slot (chunk id, item position, start time) tells it which chunk and which
*item* the worker is running. A dead worker is noticed the moment its sentinel fires,
never by polling.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import multiprocessing
import os
import pickle
import signal
import struct
import threading
import time
import weakref
from multiprocessing.connection import wait
from multiprocessing.heap import BufferWrapper
from typing import Any

from .. import _transport
from .._config import PoolConfig
from ..errors import InitializerError, PoolClosedError, RemoteTraceback, SerializationError, WorkerLostError
from . import Backend, ChunkDone, ChunkFailed, ChunkLost, ChunkProgress, ChunkTask, Outcome
from ._worker import (
    POSITION_PICKLING,
    POSITION_READING,
    SLOT_CHUNK,
    SLOT_POSITION,
    SLOT_STARTED,
    timeout_error,
    worker_main,
)

#: Functions a worker keeps unpickled; the manager evicts the least recently used beyond it.
MAX_CACHED_FUNCTIONS = 32

#: A pool whose fresh workers die this many times in a row before becoming ready is broken
#: (e.g. ``__main__`` cannot be imported under spawn): respawning again would loop forever.
MAX_FAILED_STARTS = 3

#: How long idle workers get to exit after ``b"S"`` before they are killed, at shutdown.
STOP_GRACE_SECONDS = 1.0

#: Chunks a worker may hold at once: one running and one waiting in its pipe, so a worker
#: starts its next chunk without waiting for the manager thread.
PREFETCH = 2

#: Only chunks this small are sent ahead to a busy worker: a larger one could fill the
#: socket buffer and block the manager until the worker finished its current chunk.
PREFETCH_MAX_BYTES = 64 * 1024

_pool_ids = itertools.count(1)
_live_backends: weakref.WeakSet[ProcessBackend] = weakref.WeakSet()


@dataclasses.dataclass(eq=False)
class _Pending:
    task: ChunkTask
    payload: bytes


@dataclasses.dataclass(eq=False)
class _Worker:
    """The manager's view of one worker process."""

    number: int
    process: Any
    conn: Any
    slot: Any
    #: The heap block behind ``slot``: it is freed (and handed to the next worker) once
    #: this wrapper is collected, so it lives exactly as long as the worker's record.
    slot_buffer: Any
    ready: bool = False
    #: Chunks sent and not yet answered, oldest first: the one running, and at most
    #: ``PREFETCH - 1`` waiting in its pipe so it never idles between chunks.
    held: collections.deque[_Pending] = dataclasses.field(default_factory=collections.deque)
    functions: collections.OrderedDict[bytes, None] = dataclasses.field(default_factory=collections.OrderedDict)
    retiring: bool = False
    kill_reason: str | None = None
    kill_chunk: int | None = None
    kill_position: int | None = None

    def running(self) -> _Pending | None:
        """The held chunk the worker has started (it writes the chunk id into its slot)."""
        chunk_id = int(self.slot[SLOT_CHUNK])
        for pending in self.held:
            if pending.task.chunk_id == chunk_id:
                return pending
        return None


class ProcessBackend(Backend):
    """A fixed number of worker processes fed by one manager thread."""

    timeouts_kill = True

    @classmethod
    def nested_config(cls, config: PoolConfig, *, daemonic: bool) -> PoolConfig:
        """Serial in a daemonic process (it may not start processes); else processes again."""
        return dataclasses.replace(config, backend="serial") if daemonic else config

    def __init__(self, config: PoolConfig) -> None:
        super().__init__(config)
        self._context = multiprocessing.get_context(config.start_method)
        self._pool_id = next(_pool_ids)
        self._prefix = _transport.segment_prefix(os.getpid(), f"p{self._pool_id}")
        self._init_payload: bytes | None = None
        if config.initializer is not None:
            self._init_payload = _transport.dumps((config.initializer, config.initargs))
        self._lock = threading.Lock()
        self._pending: collections.deque[_Pending] = collections.deque()
        self._commands: collections.deque[tuple[str, Any]] = collections.deque()
        self._wake_reader, self._wake_writer = os.pipe()
        self._workers: dict[int, _Worker] = {}
        self._numbers = itertools.count()
        self._failed_starts = 0
        self._encode_seconds: dict[int, float] = {}
        self._capacity = 0  # chunks the workers could take now, as the manager last counted
        self._woken = False  # a wake-up byte is on its way to the manager
        self._stopping = False
        self._broken: BaseException | None = None
        _live_backends.add(self)
        for _ in range(config.workers):
            self._start_worker()
        self._manager = threading.Thread(target=self._run, name=f"parmap-pool-{self._pool_id}", daemon=True)
        self._manager.start()

    # ------------------------------------------------------------------ caller side

    @property
    def usable(self) -> bool:
        return not self._stopping and self._broken is None

    def submit(self, task: ChunkTask) -> None:
        job = task.job
        key, _ = job.pickle_function()
        message = (
            key,
            task.indices,
            task.items,
            job.timeout,
            job.seed,
            job.max_tasks_per_worker,
            job.profile,
            task.careful,
        )
        encode_started = time.perf_counter()
        try:
            payload = b"C" + struct.pack("<q", task.chunk_id) + _transport.encode(message, self._prefix + "c-")
        except Exception as error:
            raise SerializationError(f"a chunk could not be pickled: {type(error).__name__}: {error}") from error
        self._encode_seconds[task.chunk_id] = time.perf_counter() - encode_started
        with self._lock:
            if not self.usable:
                _transport.discard(payload[9:])
                raise self._broken or PoolClosedError("the pool was shut down")
            self._pending.append(_Pending(task, payload))
            # Waking the manager costs a GIL hand-off; when no worker is idle it would find
            # nothing to do, and it dispatches the pending chunk when a worker reports back.
            wake = self._capacity > 0 and not self._woken
            if wake:
                self._woken = True
        if wake:
            self._wake()

    def check_item(self, item: Any) -> None:
        """Raise ``SerializationError`` if ``item`` cannot be pickled (used to find the bad item)."""
        try:
            _transport.discard(_transport.encode(item, self._prefix + "c-"))
        except Exception as error:
            raise SerializationError(f"{type(error).__name__}: {error}") from error

    def cancel(self, job_id: int, *, stop_running: bool) -> None:
        with self._lock:
            kept = collections.deque(p for p in self._pending if p.task.job.job_id != job_id)
            dropped = [p for p in self._pending if p.task.job.job_id == job_id]
            self._pending = kept
            if stop_running:
                self._commands.append(("cancel", job_id))
        for pending in dropped:
            _transport.discard(pending.payload[9:])
        if stop_running:
            self._wake()

    def shutdown(self) -> None:
        with self._lock:
            if self._stopping:
                already = True
            else:
                already = False
                self._stopping = True
                self._commands.append(("shutdown", None))
        if not already:
            self._wake()
        if threading.current_thread() is not self._manager:
            self._manager.join(timeout=STOP_GRACE_SECONDS + 2.0)
        for worker in list(self._workers.values()):  # the manager died or timed out: be sure
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=1.0)

    def _wake(self) -> None:
        try:
            os.write(self._wake_writer, b"\0")
        except OSError:  # closed: the manager is gone, nothing to wake
            pass

    # ------------------------------------------------------------------ workers

    def _start_worker(self) -> _Worker:
        parent_end, child_end = self._context.Pipe(duplex=True)
        # Three doubles of shared memory, read here and written by the worker (which maps
        # the same buffer). The heap's buffer, unlike sharedctypes, spares loading ctypes.
        shared = BufferWrapper(3 * 8)
        slot = shared.create_memoryview().cast("d")
        slot[SLOT_CHUNK] = -1
        number = next(self._numbers)
        process = self._context.Process(  # type: ignore[attr-defined]
            target=worker_main,
            name=f"parmap-worker-{self._pool_id}.{number}",
            args=(child_end, shared, self._init_payload, f"{self._prefix}w{number}-"),
            daemon=True,
        )
        worker = _Worker(number=number, process=process, conn=parent_end, slot=slot, slot_buffer=shared)
        self._workers[number] = worker
        try:
            process.start()
        except BaseException:
            del self._workers[number]
            parent_end.close()
            raise
        finally:
            child_end.close()
        return worker

    def _worker_prefix(self, worker: _Worker) -> str:
        return f"{self._prefix}w{worker.number}-"

    # ------------------------------------------------------------------ manager thread

    def _run(self) -> None:
        try:
            while not self._handle_commands():
                self._dispatch()
                conns = {w.conn: w for w in self._workers.values()}
                sentinels = {w.process.sentinel: w for w in self._workers.values()}
                ready = wait([self._wake_reader, *conns, *sentinels], self._seconds_to_next_deadline())
                if self._wake_reader in ready:
                    # Drain first, then re-arm: a submit between the two finds the flag
                    # still set and skips its byte, and its chunk is dispatched below anyway.
                    os.read(self._wake_reader, 4096)
                    with self._lock:
                        self._woken = False
                for obj in ready:
                    worker = conns.get(obj)
                    if worker is not None and worker.number in self._workers:
                        self._receive(worker)
                for obj in ready:
                    worker = sentinels.get(obj)
                    if worker is not None and worker.number in self._workers:
                        self._on_exit(worker)
                self._enforce_timeouts()
        except BaseException as error:  # a bug here must fail jobs, never hang them
            self._broken = error
        finally:
            self._close()

    def _handle_commands(self) -> bool:
        """Run queued commands; return True when the manager should stop."""
        while True:
            with self._lock:
                if not self._commands:
                    return False
                command, argument = self._commands.popleft()
            if command == "shutdown":
                return True
            if command == "cancel":
                for worker in self._workers.values():
                    if not worker.kill_reason and any(p.task.job.job_id == argument for p in worker.held):
                        worker.kill_reason = "cancel"
                        worker.kill_chunk = argument  # here: the cancelled job's id
                        worker.process.kill()

    def _dispatch(self) -> None:
        """Give pending chunks to idle workers first, then one more to each busy worker."""
        ready = [w for w in self._workers.values() if w.ready and not w.retiring]
        for depth in range(PREFETCH):
            for worker in ready:
                if len(worker.held) != depth:
                    continue
                with self._lock:
                    if not self._pending:
                        break
                    if depth and len(self._pending[0].payload) > PREFETCH_MAX_BYTES:
                        break
                    pending = self._pending.popleft()
                self._send_chunk(worker, pending)
        with self._lock:
            self._capacity = sum(PREFETCH - len(w.held) for w in ready)

    def _send_chunk(self, worker: _Worker, pending: _Pending) -> None:
        job = pending.task.job
        assert job.function_payload is not None
        key, function = job.function_payload
        worker.held.append(pending)
        pending.task.dispatched_at = time.monotonic()
        try:
            if key in worker.functions:
                worker.functions.move_to_end(key)
            else:
                evict = None
                if len(worker.functions) >= MAX_CACHED_FUNCTIONS:
                    evict, _ = worker.functions.popitem(last=False)
                worker.conn.send_bytes(b"F" + pickle.dumps((key, function, evict), protocol=5))
                worker.functions[key] = None
            worker.conn.send_bytes(pending.payload)
        except OSError:
            pass  # the worker died; its sentinel reports the loss with this chunk attached

    def _receive(self, worker: _Worker) -> bool:
        """Handle one message from ``worker``; False when its pipe is closed (it died)."""
        try:
            message = worker.conn.recv_bytes()
        except (EOFError, OSError):
            return False  # death: handled when its sentinel fires
        kind = message[:1]
        if kind == b"R":
            worker.ready = True
            self._failed_starts = 0
        elif kind == b"I":
            text = pickle.loads(message[1:])
            error = InitializerError("the pool's initializer raised in a worker")
            error.__cause__ = RemoteTraceback(text)
            self._broken = error
            self._fail_all(error)
        elif kind == b"P":
            running = worker.running()
            if running is not None:
                position, fraction = struct.unpack_from("<id", message, 1)
                self._deliver(ChunkProgress(running.task, position, fraction))
        elif kind == b"D":
            if not worker.held:
                return True
            task = worker.held.popleft().task
            encode_seconds = self._encode_seconds.pop(task.chunk_id, 0.0)
            decode_started = time.perf_counter()
            try:
                summary, values, wire_errors = _transport.decode(memoryview(message)[1:])
            except Exception as error:
                failure = SerializationError(
                    f"the results of items {list(task.indices)} could not be unpickled: {type(error).__name__}: {error}"
                )
                failure.__cause__ = error
                self._deliver(
                    ChunkDone(
                        task,
                        [None] * len(task.items),
                        dict.fromkeys(range(len(task.items)), failure),
                        len(task.items),
                        0.0,
                    )
                )
                return True
            completed, compute, retiring, worker_decode_seconds, item_seconds = summary
            transport = encode_seconds + worker_decode_seconds + time.perf_counter() - decode_started
            worker.retiring = retiring
            self._dispatch()  # keep the other idle workers busy before the caller runs
            errors = {}
            for position, (task_error, text) in wire_errors.items():
                if text:
                    task_error.__cause__ = RemoteTraceback(text)
                errors[position] = task_error
            self._deliver(
                ChunkDone(
                    task,
                    values,
                    errors,
                    completed,
                    compute,
                    worker=worker.process.pid,
                    item_seconds=item_seconds,
                    transport_seconds=transport,
                )
            )
        return True

    def _on_exit(self, worker: _Worker) -> None:
        """The worker's process ended: report the chunk it was running, re-queue the others."""
        while worker.conn.poll() and self._receive(worker):  # its last messages come first
            pass
        worker.process.join(timeout=1.0)
        del self._workers[worker.number]
        worker.conn.close()
        _transport.remove_segments(self._worker_prefix(worker))
        running = worker.running()
        untouched = []
        for pending in worker.held:
            self._encode_seconds.pop(pending.task.chunk_id, None)
            if pending is running:
                _transport.discard(pending.payload[9:])
                self._report_loss(worker, pending.task)
            elif worker.kill_reason == "cancel" and pending.task.job.job_id == worker.kill_chunk:
                _transport.discard(pending.payload[9:])
            else:
                untouched.append(pending)  # never started: another worker runs it, uncharged
        with self._lock:
            self._pending.extendleft(reversed(untouched))
        if not worker.ready and worker.kill_reason is None:
            self._failed_starts += 1
            if self._failed_starts >= MAX_FAILED_STARTS:
                error = WorkerLostError(
                    f"worker processes exit before becoming ready ({_describe_exit(worker.process.exitcode)}); "
                    "under spawn or forkserver, is the main module importable and guarded by "
                    "if __name__ == '__main__'?",
                    exitcode=worker.process.exitcode,
                )
                self._broken = error
                self._fail_all(error)
                return
        if not self._stopping and self._broken is None:
            try:
                self._start_worker()
            except Exception as error:
                broken = WorkerLostError(f"could not start a replacement worker: {error}")
                broken.__cause__ = error
                self._broken = broken
                self._fail_all(broken)

    def _report_loss(self, worker: _Worker, task: ChunkTask) -> None:
        if worker.kill_reason == "cancel" and task.job.job_id == worker.kill_chunk:
            return  # the job is gone; nobody waits for this chunk
        raw = int(worker.slot[SLOT_POSITION])
        position: int | None = raw if 0 <= raw < len(task.items) else None
        exitcode = worker.process.exitcode
        error: BaseException
        if worker.kill_reason == "timeout" and worker.kill_chunk == task.chunk_id:
            position = worker.kill_position
            assert position is not None
            error = timeout_error(task.indices[position], task.job.timeout)
        elif position is None and len(task.items) == 1:
            position = 0
            phase = {POSITION_READING: " while unpickling it", POSITION_PICKLING: " while pickling its result"}
            error = self._lost_error(worker, task, 0, exitcode, phase.get(raw, ""))
        elif position is None:
            error = WorkerLostError(
                f"a worker died before its chunk's items could be told apart ({_describe_exit(exitcode)})",
                exitcode=exitcode,
                pid=worker.process.pid,
            )
        else:
            error = self._lost_error(worker, task, position, exitcode, "")
        self._deliver(ChunkLost(task, position, error))

    @staticmethod
    def _lost_error(
        worker: _Worker, task: ChunkTask, position: int, exitcode: int | None, phase: str
    ) -> WorkerLostError:
        index = task.indices[position]
        return WorkerLostError(
            f"the worker process (pid {worker.process.pid}) running item {index}{phase} died: "
            f"{_describe_exit(exitcode)}",
            indices=[index],
            exitcode=exitcode,
            pid=worker.process.pid,
        )

    @staticmethod
    def _deadline_of(worker: _Worker) -> tuple[float, _Pending | None] | None:
        """When the worker's running item overruns (with that chunk); ``None`` if never."""
        if worker.kill_reason or not worker.held:
            return None
        running = worker.running()
        if running is None:  # not started yet: look again within the shortest timeout held
            timeouts = [p.task.job.timeout for p in worker.held if p.task.job.timeout is not None]
            return (time.monotonic() + min(timeouts), None) if timeouts else None
        timeout = running.task.job.timeout
        if timeout is None:
            return None
        # The worker writes the start time before the position; reading in the opposite
        # order never pairs a new position with an old start time.
        position = worker.slot[SLOT_POSITION]
        started = worker.slot[SLOT_STARTED]
        if position < 0 or started <= 0:
            return time.monotonic() + timeout, None  # between items: look again
        return float(started) + timeout, running

    def _seconds_to_next_deadline(self) -> float | None:
        deadlines = [found[0] for found in map(self._deadline_of, self._workers.values()) if found]
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _enforce_timeouts(self) -> None:
        now = time.monotonic()
        for worker in self._workers.values():
            found = self._deadline_of(worker)
            if found is not None and found[1] is not None and found[0] <= now:
                worker.kill_reason = "timeout"
                worker.kill_chunk = found[1].task.chunk_id
                worker.kill_position = int(worker.slot[SLOT_POSITION])
                worker.process.kill()

    def _deliver(self, outcome: Outcome) -> None:
        try:
            outcome.task.job.deliver(outcome)
        except Exception:  # a closed job's queue: the job no longer listens
            pass

    def _fail_all(self, error: BaseException) -> None:
        with self._lock:
            pending, self._pending = list(self._pending), collections.deque()
        for item in pending:
            _transport.discard(item.payload[9:])
            self._deliver(ChunkFailed(item.task, error))
        for worker in self._workers.values():
            while worker.held:
                self._deliver(ChunkFailed(worker.held.popleft().task, error))

    def _close(self) -> None:
        """Stop every worker: idle ones are asked, busy ones killed; nothing is left running."""
        self._stopping = True
        closed = self._broken if self._broken is not None else PoolClosedError("the pool was shut down")
        self._fail_all(closed)
        for worker in self._workers.values():
            try:
                if not worker.held and worker.ready:
                    worker.conn.send_bytes(b"S")
                else:
                    worker.process.kill()
            except OSError:
                pass
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for worker in self._workers.values():
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.exitcode is None:
                worker.process.kill()
                worker.process.join(timeout=1.0)
            worker.conn.close()
        self._workers.clear()
        _transport.remove_segments(self._prefix)
        # Leave the fork handler's list first: a child forked later must not close these
        # fd numbers, which the parent may by then have reused (e.g. for a new worker's pipes).
        _live_backends.discard(self)
        os.close(self._wake_reader)
        os.close(self._wake_writer)


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "exit code unknown"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (killed; out of memory?)" if -exitcode == signal.SIGKILL else ""
        return f"terminated by {name}{hint}"
    return f"exit code {exitcode}"


def _close_inherited_in_child() -> None:
    """In a forked child: close the pipes of the parent's pools, which the child must not use."""
    for backend in list(_live_backends):
        for worker in backend._workers.values():
            try:
                worker.conn.close()
            except OSError:
                pass
        for fd in (backend._wake_reader, backend._wake_writer):
            try:
                os.close(fd)
            except OSError:
                pass
    _live_backends.clear()


os.register_at_fork(after_in_child=_close_inherited_in_child)

backend_class = ProcessBackend
