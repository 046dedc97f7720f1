"""Process backend: worker processes and the manager thread that owns them.

Data flow (compare `concurrent.futures.process`):

```text
caller thread (engine)        _Flags (one lock)          _Manager thread               worker processes
----------------------        -----------------          ---------------               ----------------
submit(task)
  encode ChunkCall ---------> pending deque ------------> dispatch: idle worker? ----> reader thread -> inbox
  dispatch_now(), or wake --------------------------------> poll(wake, sockets,         main thread:
cancel(job) --------------> commands deque                     sentinels, deadline)      run_chunk(...)
shutdown() ---------------> closing, commands             <- D ChunkResult ------------ encode_result
  job decodes ChunkArrived  broken <--------------------- header read, job.deliver(...)
                                                          <- sentinel: died -> slot ->
                                                             ChunkLost, respawn
                                                          <- deadline: item overran ->
                                                             kill that worker, one _Kill
```

State and its owners:

* [_Flags][] is all the caller side and the manager share, under its one lock: `closing`
  (written by the caller side only: `shutdown`), `broken` (written by the manager only),
  the pending chunks and commands (appended by the caller side, taken by the manager), and
  what the manager last published for the caller (`capacity`, `ready_pids`).
* [_Manager][] owns the worker processes, their sockets, their slots, kills and timeouts:
  they are touched only under its loop lock, held by the manager thread for every step of
  its loop but its wait, or by a submitting thread that sends a chunk to an idle worker at
  once (`dispatch_now`, which never waits for the lock). Results held whole in their
  message reach the job undecoded (`ChunkArrived`): the job's thread unpickles them. It
  starts every worker itself (a worker's `PR_SET_PDEATHSIG` fires when the thread that
  forked it exits, and the manager lives as long as the pool); under fork it
  has the fork server fork it (`parmap.backends._zygote`: never a fork of this
  multi-threaded process; the worker then dies with the server, which ends with the caller).
* Each kill is one [_Kill][] record (reason, job id, chunk id, position), set once.

The invariant: **the manager thread never blocks on a worker.** Every worker socket is
non-blocking on the manager's side. A message to a worker goes into that worker's output
buffer, is written as far as the socket takes it, and the rest is written when `poll`
reports the socket writable; a message from a worker is read as far as it has arrived
and parsed when its frame is whole. So a 2 MB function sent to a busy worker waits in a
buffer, never in `write`, while the manager keeps reading other workers' results and
enforcing timeouts (the `poll` deadline is the next timeout). Reads do not depend on the
worker either: its reader thread drains the socket even while a task runs.

Scheduling (load balance): pending chunks go to idle workers first. A chunk is sent ahead
to a busy worker (prefetched, hiding the round trip between tiny chunks) only while no
worker is idle or starting, and when a worker goes idle with nothing pending, the manager
withdraws a prefetched chunk that has not started from a worker whose running chunk has
run for [WITHDRAW_AFTER_SECONDS][]; the worker's reader thread answers at once, and the
chunk goes to the idle worker.

Memory (`max_worker_memory`): a worker retires itself after a chunk that left it above
the limit; while chunks run, the manager reads their workers' resident memory every
[MEMORY_CHECK_SECONDS][] (one more deadline of its wait) and kills one above
[MEMORY_KILL_FACTOR][] times the limit, blaming its running item as for any death. A
SIGKILL nobody here sent is told apart as the OOM killer's by the cgroup's OOM-kill
counter ([parmap.backends._resources.OomCounter][]).
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import functools
import itertools
import math
import multiprocessing
import multiprocessing.connection  # the workers' sockets (`Pipe`): here, so the fork server inherits it
import os
import pickle
import select
import signal
import threading
import time
import weakref
from multiprocessing.heap import BufferWrapper
from typing import Any, Literal, NamedTuple

from .. import _sharing, _transport
from .._config import PoolConfig
from ..errors import (
    InitializerError,
    PoolClosedError,
    PoolStartError,
    RemoteTraceback,
    SerializationError,
    WorkerLostError,
)
from . import (
    Backend,
    ChunkArrived,
    ChunkDone,
    ChunkFailed,
    ChunkLost,
    ChunkProgress,
    ChunkTask,
    ChunkUndecodable,
    Outcome,
)
from ._inner_threads import inner_threads_of
from ._protocol import (
    CHUNK_ID,
    FRAME,
    PID,
    POSITION_INITIALIZING,
    POSITION_LOADING,
    POSITION_PICKLING,
    POSITION_READING,
    PROGRESS,
    SLOT_CHUNK,
    SLOT_CHUNK_STARTED,
    SLOT_LOADING,
    SLOT_POSITION,
    SLOT_SHARED,
    SLOT_SIZE,
    SLOT_STARTED,
    WITHDRAWN,
    ChunkCall,
    decode_result,
    discard_call,
    done_outcome,
    encode_call,
    result_header,
    result_in_band,
    result_retiring,
    timeout_error,
    undecodable_outcome,
)
from ._resources import OomCounter, resident_bytes
from ._worker import (
    EXIT_UNGUARDED_MAIN,
    WORKER_NAME_PREFIX,
    refuse_pool_while_importing_main,
    unguarded_main_message,
    worker_main,
)
from ._zygote import ForkServer, ServerGone, Slot
from ._zygote import close as close_fork_server
from ._zygote import close_if_unused as close_unused_fork_server
from ._zygote import join as join_fork_server
from ._zygote import leave as leave_fork_server
from ._zygote import prepare as prepare_fork_server

#: Functions a worker keeps unpickled; the manager evicts the least recently used beyond it.
MAX_CACHED_FUNCTIONS = 32

#: Shared objects (`shared=`) a worker keeps, and the pool keeps encoded for new workers.
MAX_SHARED_OBJECTS = _sharing.MAX_KEPT

#: A pool whose fresh workers die this many times in a row before becoming ready is broken
#: (e.g. `__main__` cannot be imported under spawn): respawning again would loop forever.
MAX_FAILED_STARTS = 3

#: How long idle workers get to exit after `Stop` before they are killed, at shutdown.
STOP_GRACE_SECONDS = 1.0

#: Chunks a worker may hold at once: one running and one waiting in its inbox, so a busy
#: worker starts its next chunk without waiting for the manager thread.
PREFETCH = 2

#: Only chunks this small are sent ahead to a busy worker: a larger one is better kept
#: here, where any worker that frees up can take it.
PREFETCH_MAX_BYTES = 64 * 1024

#: A prefetched chunk is taken back for an idle worker only once the chunk running ahead
#: of it has run this long: a withdrawal costs a round trip (~0.1 ms), which tiny chunks,
#: finishing sooner, would not repay.
WITHDRAW_AFTER_SECONDS = 0.005

#: How long `cancel` waits for the manager to have sent its withdrawals. It waits for the
#: manager, never for a worker (the manager applies a command within one loop pass, well
#: under a millisecond unless it is unpickling a large result); the bound only keeps a
#: cancelling caller from waiting on a manager that has stopped.
CANCEL_WAIT_SECONDS = 2.0

#: The longest single wait of the manager: `poll` takes milliseconds as a C int, so a
#: deadline further away (a `timeout=` of a year, or `inf`) is waited for in steps.
MAX_WAIT_SECONDS = 3600.0

#: Bytes read from a socket per system call when no large frame is being filled.
READ_SIZE = 64 * 1024  # below glibc's mmap threshold: each read is a cheap malloc

#: A frame longer than this cannot come from a worker (bodies above 1 MB travel through
#: shared memory): the socket was written by something else (a task's forked child).
MAX_FRAME_BYTES = 1 << 40

#: What a slot's position says before the worker process has run any of our code.
POSITION_STARTING = -6.0

#: How often the manager reads the resident memory of the workers running a chunk, under
#: `max_worker_memory`. A read of `/proc/<pid>/statm` costs about 15 µs (measured with both
#: cores busy), so 16 busy workers cost the manager 0.5 % of a core at this period, while a
#: task filling memory at 2-4 GB/s gets 100-200 MB past the kill line before it is seen.
MEMORY_CHECK_SECONDS = 0.05

#: A worker running an item is killed once its resident memory passes the limit by this
#: factor ("by far"). Below it, the item may finish: a chunk often peaks above its steady
#: memory (a result being built, a temporary copy), and the worker is then retired
#: gracefully after the chunk, losing nothing; far above it, waiting risks the OOM killer,
#: which would take the worker with no word of why.
MEMORY_KILL_FACTOR = 1.5

_pool_ids = itertools.count(1)
_live_backends: weakref.WeakSet[ProcessBackend] = weakref.WeakSet()


class _Pending:
    """A chunk pickled for a worker, from its submission to its answer.

    This and the manager's other records are plain classes with `__slots__`, not
    dataclasses: they are built on a first map's path, where each dataclass would cost
    about a millisecond of code generation.
    """

    __slots__ = ("cancelled", "encode_seconds", "payload", "task")

    def __init__(self, task: ChunkTask, payload: bytes, encode_seconds: float = 0.0) -> None:
        self.task = task
        self.payload = payload
        #: Seconds the caller side spent pickling the chunk (part of its transport time).
        self.encode_seconds = encode_seconds
        #: Its job was cancelled while a `Withdraw` was on its way: drop it when it comes back.
        self.cancelled = False


class _Kill(NamedTuple):
    """Why the manager killed a worker: set once, read when its death is handled."""

    reason: Literal["timeout", "cancel", "stray", "shutdown", "memory"]
    job_id: int | None = None
    chunk_id: int | None = None
    position: int | None = None
    #: `"memory"`: the resident bytes the manager saw.
    rss: int | None = None


class _Cancel:
    """The caller side asks the manager to withdraw (and maybe kill) one job's chunks."""

    __slots__ = ("applied", "job_id", "stop_running")

    def __init__(self, job_id: int, stop_running: bool) -> None:
        self.job_id = job_id
        self.stop_running = stop_running
        #: Set by the manager once it has sent the withdrawals (and kills) of this job.
        self.applied = threading.Event()


class _Shutdown:
    """The caller side asks the manager to stop every worker and end."""

    __slots__ = ()


class _Flags:
    """What the caller side and the manager thread share; every field under `lock`.

    Writers: `closing`, `pending` appends and `commands` appends belong to the caller side;
    `broken`, `capacity`, `ready_pids` and `woken = False` to the manager.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.closing = False
        self.broken: BaseException | None = None
        self.pending: collections.deque[_Pending] = collections.deque()
        self.commands: collections.deque[_Cancel | _Shutdown] = collections.deque()
        #: Chunks the manager would hand out at once if they were pending.
        self.capacity = 0
        #: A wake-up byte is on its way to the manager.
        self.woken = False
        #: Pids of the workers ready for chunks (for tests and diagnostics).
        self.ready_pids: tuple[int, ...] = ()


class _Frames:
    """Reassembles frames from a non-blocking socket; feeds whole messages out."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._body: bytearray | None = None
        self._filled = 0
        self.eof = False

    def read(self, fd: int) -> list[bytearray]:
        """Read what has arrived (never waits); return the messages now whole.

        Raises:
            ValueError: a frame header that no worker writes (the socket is corrupted).
        """
        messages: list[bytearray] = []
        while not self.eof:
            try:
                if self._body is not None:
                    got = os.readv(fd, [memoryview(self._body)[self._filled :]])
                    if got == 0:
                        self.eof = True
                        break
                    self._filled += got
                    if self._filled == len(self._body):
                        messages.append(self._body)
                        self._body = None
                    continue
                data = os.read(fd, READ_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # ECONNRESET: the worker died mid-send
                self.eof = True
                break
            if not data:
                self.eof = True
                break
            self._buffer += data
            self._split(messages)
        return messages

    def _split(self, messages: list[bytearray]) -> None:
        buffer = self._buffer
        offset = 0
        while len(buffer) - offset >= FRAME.size:
            (length,) = FRAME.unpack_from(buffer, offset)
            if length > MAX_FRAME_BYTES:
                raise ValueError(f"a frame of {length} bytes")
            start = offset + FRAME.size
            if len(buffer) - start >= length:
                messages.append(buffer[start : start + length])
                offset = start + length
                continue
            # A large frame: read the rest of it straight into its own buffer.
            self._body = bytearray(length)
            have = len(buffer) - start
            self._body[:have] = buffer[start:]
            self._filled = have
            offset = len(buffer)
            break
        del buffer[:offset]


class _Holding:
    """What a worker holds of one kind (functions, or shared objects), as the manager sent it."""

    __slots__ = ("capacity", "keys", "loads", "tag")

    def __init__(self, tag: bytes, capacity: int) -> None:
        #: The tag of the message that sends one (`F` LoadFunction, `H` LoadShared).
        self.tag = tag
        #: How many it keeps; the least recently used beyond it is evicted.
        self.capacity = capacity
        #: Keys held, least recently used first.
        self.keys: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        #: Message number -> key, for the newest `2 * capacity` sent: what a worker that died
        #: loading (its slot names the number) was loading.
        self.loads: dict[int, bytes] = {}


class _Worker:
    """The manager's view of one worker process."""

    __slots__ = (
        "conn",
        "fd",
        "frames",
        "functions",
        "held",
        "kill",
        "loads_sent",
        "number",
        "oom_killed",
        "outbox",
        "pid",
        "process",
        "ready",
        "retiring",
        "shared",
        "slot",
        "slot_buffer",
        "withdrawing",
    )

    def __init__(self, number: int, process: Any, conn: Any, fd: int, *, slot: Any, slot_buffer: Any, pid: int) -> None:
        self.number = number
        self.process = process
        #: The parent's end of the socket (kept open; its fd is non-blocking).
        self.conn = conn
        self.fd = fd
        self.slot = slot
        #: The heap block behind `slot`: it is freed (and handed to the next worker) once
        #: this record is collected, so it lives exactly as long as the worker's record.
        self.slot_buffer = slot_buffer
        self.pid = pid
        self.ready = False
        #: Chunks sent and not yet answered, oldest first: the one running, and at most
        #: `PREFETCH - 1` waiting in its inbox.
        self.held: list[_Pending] = []
        #: Chunk ids with a `Withdraw` on its way.
        self.withdrawing: set[int] = set()
        #: The functions and the shared objects it holds, as sent.
        self.functions = _Holding(b"F", MAX_CACHED_FUNCTIONS)
        self.shared = _Holding(b"H", MAX_SHARED_OBJECTS)
        #: `LoadFunction` and `LoadShared` messages sent so far: one numbering for both.
        self.loads_sent = 0
        self.retiring = False
        self.kill: _Kill | None = None
        #: It died of a SIGKILL parmap did not send, and the kernel counted an OOM kill meanwhile.
        self.oom_killed = False
        self.outbox: collections.deque[memoryview] = collections.deque()
        self.frames = _Frames()

    def running(self) -> _Pending | None:
        """The held chunk the worker has started (it writes the chunk id into its slot)."""
        chunk_id = int(self.slot[SLOT_CHUNK])
        for pending in self.held:
            if pending.task.chunk_id == chunk_id:
                return pending
        return None

    def find(self, chunk_id: int) -> _Pending | None:
        for pending in self.held:
            if pending.task.chunk_id == chunk_id:
                return pending
        return None

    @property
    def usable(self) -> bool:
        """Ready for chunks: started, not retiring, not being killed."""
        return self.ready and not self.retiring and self.kill is None

    def describe_exit(self) -> str:
        """How its process ended, for an error message (`exit code 1`, `terminated by SIGKILL ...`)."""
        return _describe_exit(self.process.exitcode, oom_killed=self.oom_killed)


class ProcessBackend(Backend):
    """A fixed number of worker processes fed by one manager thread."""

    timeouts_kill = True

    @classmethod
    def nested_config(cls, config: PoolConfig, *, daemonic: bool) -> PoolConfig:
        """Serial in a daemonic process (it may not start processes); else processes again."""
        return dataclasses.replace(config, backend="serial") if daemonic else config

    @classmethod
    def prepare(cls, config: PoolConfig) -> None:
        """Under fork, make the fork server now, in the caller's thread, while no thread of
        parmap's runs yet (see `parmap.backends._zygote`), for the pool this map will start."""
        if multiprocessing.get_context(config.start_method).get_start_method() == "fork":
            prepare_fork_server(config.initializer, config.initargs)

    @classmethod
    def release(cls) -> None:
        """`parmap.shutdown()`: close the fork server, so that the next pool copies the caller afresh."""
        close_fork_server()

    def __init__(self, config: PoolConfig) -> None:
        """Start the pool's workers (from its manager thread) and wait until all are started.

        Raises:
            PoolStartError: a worker could not be started (e.g. too many open files); the
                workers already started are stopped first. Or this process is still
                importing its main script (see [refuse_pool_while_importing_main][]).
        """
        refuse_pool_while_importing_main(config.start_method)
        super().__init__(config)
        self._flags = _Flags()
        self._encode_prefix = ""
        #: Shared objects encoded for this pool, by key, least recently used first.
        self._shared_payloads: collections.OrderedDict[bytes, _sharing.SharedPayload] = collections.OrderedDict()
        self._shared_lock = threading.Lock()
        try:
            self._manager = _Manager(config, self._flags)
        except OSError as error:
            raise PoolStartError(f"the process pool could not be started: {error}") from error
        self._encode_prefix = self._manager.prefix + "c-"
        _live_backends.add(self)
        self._manager.start()
        self._manager.started.wait()
        cause = self._manager.start_error
        if cause is not None:
            self._manager.join()
            _live_backends.discard(self)
            close_unused_fork_server()
            raise PoolStartError(f"the process pool could not start its workers: {cause}") from cause

    # ------------------------------------------------------------------ caller side

    @property
    def usable(self) -> bool:
        with self._flags.lock:
            return not self._flags.closing and self._flags.broken is None

    @property
    def ready_worker_pids(self) -> tuple[int, ...]:
        """Pids of the workers ready for chunks now, as the manager last published them."""
        with self._flags.lock:
            return self._flags.ready_pids

    def submit(self, task: ChunkTask) -> None:
        """Queue `task` for the manager.

        Raises:
            SerializationError: the chunk cannot be pickled.
            PoolClosedError: the pool was shut down.
        """
        job = task.job
        key, _ = job.pickle_function()
        if job.shared is not None and job.shared_payload is None:
            job.shared_payload = self._encode_shared(job.shared)
        call = ChunkCall.of(task, key, max_tasks=job.max_tasks_per_worker)
        encode_started = time.perf_counter()
        try:
            payload = encode_call(call, self._encode_prefix)
        except Exception as error:
            raise SerializationError(f"a chunk could not be pickled: {type(error).__name__}: {error}") from error
        encode_seconds = time.perf_counter() - encode_started
        flags = self._flags
        with flags.lock:
            if flags.closing or flags.broken is not None:
                discard_call(payload)
                raise flags.broken or PoolClosedError("the pool was shut down")
            flags.pending.append(_Pending(task, payload, encode_seconds))
            # When no worker could take the chunk, the manager dispatches it when a worker
            # reports back: neither dispatching here nor waking the manager would do anything.
            dispatchable = flags.capacity > 0
        if not dispatchable or self._manager.dispatch_now():
            return
        with flags.lock:  # the manager is in a step of its loop: make sure it polls afresh
            wake = flags.capacity > 0 and not flags.woken
            if wake:
                flags.woken = True
        if wake:
            self._manager.wake()

    def _encode_shared(self, shared: _sharing.SharedObject) -> _sharing.SharedPayload:
        """The shared object pickled once for this pool's workers (kept for later maps).

        Raises:
            SerializationError: it cannot be pickled.
        """
        with self._shared_lock:
            payload = self._shared_payloads.pop(shared.key, None)
        if payload is None:
            try:
                payload = _sharing.encode(shared, self._encode_prefix)
            except Exception as error:
                raise SerializationError(
                    f"the map's shared object could not be pickled: {type(error).__name__}: {error}"
                ) from error
            _sharing.when_released(shared.value, functools.partial(_forget_shared, weakref.ref(self), shared.key))
        with self._shared_lock:
            self._shared_payloads[shared.key] = payload
            while len(self._shared_payloads) > MAX_SHARED_OBJECTS:
                self._shared_payloads.popitem(last=False)  # its segments go with its last job
        return payload

    def forget_shared(self, key: bytes) -> None:
        """Drop the encoded copy of a shared object the caller let go of (jobs using it keep theirs)."""
        with self._shared_lock:
            self._shared_payloads.pop(key, None)

    def check_item(self, item: Any) -> None:
        """Raise `SerializationError` if `item` cannot be pickled (used to find the bad item)."""
        try:
            _transport.discard(_transport.encode(item, self._encode_prefix))
        except Exception as error:
            raise SerializationError(f"{type(error).__name__}: {error}") from error

    def cancel(self, job_id: int, *, stop_running: bool) -> None:
        """Withdraw the job's queued and prefetched chunks; with `stop_running`, kill its running ones.

        Only workers whose *running* chunk belongs to the job are killed (and replaced); a
        chunk of another job killed by a race with its start is sent again, uncharged.
        Returns once the manager has written the withdrawals (it waits for the manager, at
        most `CANCEL_WAIT_SECONDS`, never for a worker); a worker never starts a chunk while
        a message is still arriving, so a withdrawn chunk does not start after this returns.
        Chunks already running finish; their outcomes still reach the job, which ignores them.
        """
        flags = self._flags
        command = _Cancel(job_id, stop_running)
        with flags.lock:
            dropped = [p for p in flags.pending if p.task.job.job_id == job_id]
            if dropped:
                flags.pending = collections.deque(p for p in flags.pending if p.task.job.job_id != job_id)
            flags.commands.append(command)
        for pending in dropped:
            discard_call(pending.payload)
        self._manager.wake()
        # Return once the withdrawals are on their way: a worker's reader thread takes them
        # at once, so a chunk sent ahead does not start after the caller has moved on.
        if threading.current_thread() is not self._manager and self._manager.is_alive():
            command.applied.wait(CANCEL_WAIT_SECONDS)

    def shutdown(self) -> None:
        """Stop every worker (busy ones are killed) and the manager; idempotent."""
        flags = self._flags
        with flags.lock:
            already = flags.closing
            flags.closing = True
            if not already:
                flags.commands.append(_Shutdown())
        if not already:
            self._manager.wake()
        if threading.current_thread() is not self._manager:
            self._manager.join(timeout=STOP_GRACE_SECONDS + 5.0)
        if self._manager.is_alive():  # it is stuck: make sure no worker outlives us
            self._manager.kill_all()


class _Manager(threading.Thread):
    """The thread that owns the workers: starts them, feeds them, reads them, kills them.

    Its loop is six named steps: apply the caller's commands, dispatch pending chunks,
    wait for an event (a socket readable or writable, a worker's death, a wake-up byte or
    the next deadline), handle what happened, enforce timeouts, enforce the memory limit.
    """

    def __init__(self, config: PoolConfig, flags: _Flags) -> None:
        pool_id = next(_pool_ids)
        super().__init__(name=f"parmap-pool-{pool_id}", daemon=True)
        self.config = config
        self.flags = flags
        self.context = multiprocessing.get_context(config.start_method)
        self.prefix = _transport.segment_prefix(os.getpid(), f"p{pool_id}")
        self.started = threading.Event()
        self.start_error: BaseException | None = None
        self._pool_id = pool_id
        self._initializer, self._initargs = _initializer_payload(config, self.context.get_start_method())
        self._wake_reader, self._wake_writer = os.pipe()
        os.set_blocking(self._wake_reader, False)
        # A full pipe means a wake-up is pending anyway: the caller must never wait on it.
        os.set_blocking(self._wake_writer, False)
        self._poll = select.poll()
        self._poll.register(self._wake_reader, select.POLLIN)
        #: The loop lock: held by whichever thread runs a step of the manager's loop, the
        #: manager thread (each pass, but its wait) or a submitting thread ([dispatch_now][]).
        #: Everything below is only touched under it.
        self.lock = threading.Lock()
        self._stopped = False  # the loop has ended: nothing may be dispatched any more
        self._waiting_until = math.inf  # when the manager's current wait ends by itself
        self._workers: dict[int, _Worker] = {}
        self._by_fd: dict[int, _Worker] = {}
        self._numbers = itertools.count()
        self._failed_starts = 0
        #: The OOM-kill counters as the pool started, to tell an OOM kill from another SIGKILL.
        self._oom = OomCounter()
        self._memory_checked_at = 0.0
        #: Under fork, the fork server this pool's workers are forked from (see
        #: `parmap.backends._zygote`): joined here, in the thread starting the pool, before
        #: the manager thread exists, so that no worker is forked from a multi-threaded
        #: process. `None`: the manager forks them itself (another start method, a platform
        #: without memfds, or an initializer that cannot be pickled to a running server).
        self._server_key = f"{os.getpid()}-p{pool_id}"
        self._server: ForkServer | None = None
        if self.context.get_start_method() == "fork":
            self._server = join_fork_server(self._server_key, config.initializer, config.initargs)

    # ------------------------------------------------------------------ the loop

    def run(self) -> None:
        try:
            self._start_workers()
        except BaseException as error:
            self.start_error = error
            self.started.set()
            self._close()
            return
        self.started.set()
        try:
            while True:
                with self.lock:
                    if self._apply_commands():
                        break
                    self._dispatch()
                    wake_at = self._next_wake()
                    self._waiting_until = math.inf if wake_at is None else wake_at
                events = self._poll.poll(_milliseconds_until(wake_at))  # the one step without the lock
                with self.lock:
                    self._handle_events(events)
                    self._enforce_timeouts()
                    self._enforce_memory_limit()
        except BaseException as error:
            with self.flags.lock:
                self.flags.broken = error
        finally:
            with self.lock:
                self._stopped = True
                self._close()

    def dispatch_now(self) -> bool:
        """Send pending chunks to the workers from the calling thread, if the loop is free.

        Called by `submit` in the job's thread: a chunk then reaches an idle worker at once,
        instead of after the manager thread has woken up and taken the GIL from the caller
        (which holds it while it pickles the next chunks: measured on 200,000 `x*x+1`
        items, the first chunk left 4 ms later, and each later one up to 2 ms later).
        Dispatching never waits on a worker (sockets are non-blocking), so neither thread
        waits long on the other. False if the manager thread is in a step of its loop: it
        dispatches the chunk itself before it next waits.
        """
        if not self.lock.acquire(blocking=False):
            return False
        try:
            if self._stopped:
                return False
            self._dispatch()
            # The manager's `poll`, started before, must start afresh when a chunk sent here
            # brings a deadline nearer (its timeout, the memory check of a running chunk) or
            # was not taken whole by its socket (it waits for POLLOUT, not watched yet).
            wake_at = self._next_wake()
            stale = (wake_at is not None and wake_at < self._waiting_until) or any(
                worker.outbox for worker in self._workers.values()
            )
        finally:
            self.lock.release()
        if stale:
            self.wake()
        return True

    def _start_workers(self) -> None:
        for _ in range(self.config.workers):
            self._start_worker()

    def wake(self) -> None:
        """Interrupt the manager's wait (any thread)."""
        try:
            os.write(self._wake_writer, b"\0")
        except OSError:  # closed, or full (a wake-up is pending anyway)
            pass

    def _apply_commands(self) -> bool:
        """Run the caller's commands; True when the manager should stop (shut down or broken)."""
        while True:
            with self.flags.lock:
                if self.flags.broken is not None:
                    return True
                if not self.flags.commands:
                    return False
                command = self.flags.commands.popleft()
            if isinstance(command, _Shutdown):
                return True
            self._cancel(command.job_id, command.stop_running)
            command.applied.set()

    def _cancel(self, job_id: int, stop_running: bool) -> None:
        for worker in list(self._workers.values()):
            running = worker.running()
            for pending in worker.held:
                if pending.task.job.job_id != job_id or pending is running:
                    continue
                pending.cancelled = True
                self._withdraw(worker, pending)
            if stop_running and running is not None and running.task.job.job_id == job_id and worker.kill is None:
                self._kill(worker, _Kill("cancel", job_id=job_id, chunk_id=running.task.chunk_id))

    def _dispatch(self) -> None:
        """Idle workers first; prefetch only while none is idle or starting; rebalance."""
        flags = self.flags
        workers = list(self._workers.values())
        usable = [w for w in workers if w.usable]
        for worker in usable:
            if not worker.held:
                pending = self._take_pending(prefetch=False)
                if pending is None:
                    break
                self._send_chunk(worker, pending)
        idle = [w for w in usable if not w.held]
        starting = any(not w.ready and w.kill is None for w in workers)
        capacity = len(idle)
        if not idle and not starting:
            for worker in usable:
                while len(worker.held) < PREFETCH:
                    pending = self._take_pending(prefetch=True)
                    if pending is None:
                        break
                    self._send_chunk(worker, pending)
            capacity = sum(PREFETCH - len(w.held) for w in usable)
        elif idle:
            self._rebalance(len(idle))
        with flags.lock:
            flags.capacity = capacity

    def _take_pending(self, *, prefetch: bool) -> _Pending | None:
        """The next chunk to send; chunks of a job cancelled meanwhile are dropped, never sent."""
        while True:
            with self.flags.lock:
                pending = self.flags.pending
                if not pending or (prefetch and len(pending[0].payload) > PREFETCH_MAX_BYTES):
                    return None
                taken = pending.popleft()
            if not taken.task.job.cancelled:
                return taken
            discard_call(taken.payload)

    def _rebalance(self, idle: int) -> None:
        """Nothing pending and `idle` workers idle: take back prefetched chunks that wait."""
        now = time.monotonic()
        for worker in self._workers.values():
            if idle <= 0:
                return
            if len(worker.held) < 2 or worker.kill is not None:
                continue
            running = worker.running()
            if running is None or now - worker.slot[SLOT_CHUNK_STARTED] < WITHDRAW_AFTER_SECONDS:
                continue
            for pending in worker.held:
                if pending is not running and pending.task.chunk_id not in worker.withdrawing:
                    self._withdraw(worker, pending)
                    idle -= 1
                    break

    def _next_rebalance(self) -> float | None:
        """When a waiting prefetched chunk becomes worth taking back for an idle worker."""
        if not any(w.usable and not w.held for w in self._workers.values()):
            return None
        times = []
        for worker in self._workers.values():
            if len(worker.held) >= 2 and worker.kill is None and not worker.withdrawing:
                times.append(worker.slot[SLOT_CHUNK_STARTED] + WITHDRAW_AFTER_SECONDS)
        return min(times) if times else None

    def _next_wake(self) -> float | None:
        """When the loop must next run without an event (`time.monotonic()`), or `None`: a
        timeout to enforce, a prefetched chunk to take back, a memory check."""
        deadlines = [
            d for d in (self._next_deadline(), self._next_rebalance(), self._next_memory_check()) if d is not None
        ]
        return min(deadlines) if deadlines else None

    def _handle_events(self, events: list[tuple[int, int]]) -> None:
        deaths: list[_Worker] = []
        for fd, mask in events:
            if fd == self._wake_reader:
                # Drain first, then re-arm: a submit between the two finds the flag still
                # set and skips its byte, and its chunk is dispatched in the next step anyway.
                try:
                    while os.read(self._wake_reader, 4096):
                        pass
                except BlockingIOError:
                    pass
                with self.flags.lock:
                    self.flags.woken = False
                continue
            worker = self._by_fd.get(fd)
            if worker is None:
                continue
            if fd == worker.process.sentinel:
                deaths.append(worker)
                continue
            if mask & select.POLLOUT:
                self._flush(worker)
            if mask & (select.POLLIN | select.POLLHUP | select.POLLERR):
                self._read(worker)
        for worker in deaths:
            if worker.number in self._workers:
                self._on_exit(worker)

    # ------------------------------------------------------------------ workers

    def _start_worker(self) -> _Worker:
        parent_end, child_end = self.context.Pipe(duplex=True)
        try:
            # SLOT_SIZE doubles of shared memory, read here and written by the worker (which
            # maps the same buffer). The heap's buffer, unlike sharedctypes, spares ctypes; a
            # worker of the fork server maps a memfd the server is handed.
            shared: Any = Slot(SLOT_SIZE * 8) if self._server is not None else BufferWrapper(SLOT_SIZE * 8)
            slot = shared.create_memoryview().cast("d")
            for index in range(SLOT_SIZE):  # the heap reuses freed blocks: never trust their bytes
                slot[index] = 0.0
            slot[SLOT_CHUNK] = -1
            slot[SLOT_POSITION] = POSITION_STARTING
            number = next(self._numbers)
            method = self.context.get_start_method()
            parent = 0 if method == "forkserver" else os.getpid()
            # A forked worker inherits our end of its socket too: it closes it, so that the
            # socket reads as closed in the worker once this process is gone.
            inherited = parent_end.fileno() if method == "fork" else -1
            name = f"{WORKER_NAME_PREFIX}{self._pool_id}.{number}"
            inner_threads = inner_threads_of(self.config.inner_threads, explicit=self.config.inner_threads_explicit)
            process: Any = None
            if self._server is not None:
                try:
                    process = self._server.start(
                        self._server_key,
                        name=name,
                        prefix=f"{self.prefix}w{number}-",
                        memory_limit=self.config.max_worker_memory,
                        inner_threads=inner_threads,
                        conn=child_end,
                        slot=shared,
                    )
                except ServerGone:  # killed, most likely: this pool forks its workers itself now
                    self._leave_fork_server()
            if process is None:
                process = self.context.Process(  # type: ignore[attr-defined]
                    target=worker_main,
                    name=name,
                    args=(
                        child_end,
                        shared,
                        self._initializer,
                        self._initargs,
                        f"{self.prefix}w{number}-",
                        parent,
                        inherited,
                        self.config.max_worker_memory,
                        inner_threads,
                    ),
                    daemon=True,
                )
                process.start()
        except BaseException:
            parent_end.close()
            raise
        finally:
            child_end.close()
        fd = parent_end.fileno()
        os.set_blocking(fd, False)
        worker = _Worker(number, process, parent_end, fd, slot=slot, slot_buffer=shared, pid=process.pid)
        self._workers[number] = worker
        self._by_fd[fd] = worker
        self._by_fd[process.sentinel] = worker
        self._poll.register(fd, select.POLLIN)
        self._poll.register(process.sentinel, select.POLLIN)
        return worker

    def _send(self, worker: _Worker, body: bytes) -> None:
        """Queue `body` for `worker` and write as much as its socket takes now (never waits)."""
        worker.outbox.append(memoryview(FRAME.pack(len(body))))
        worker.outbox.append(memoryview(body))
        self._flush(worker)

    def _flush(self, worker: _Worker) -> None:
        outbox = worker.outbox
        try:
            while outbox:
                written = os.writev(worker.fd, list(itertools.islice(outbox, 64)))
                while outbox and written >= len(outbox[0]):
                    written -= len(outbox[0])
                    outbox.popleft()
                if written:
                    outbox[0] = outbox[0][written:]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:  # the worker died; its sentinel reports the loss
            outbox.clear()
        if worker.number in self._workers and not worker.frames.eof:
            self._poll.modify(worker.fd, select.POLLIN | (select.POLLOUT if outbox else 0))

    def _send_chunk(self, worker: _Worker, pending: _Pending) -> None:
        job = pending.task.job
        assert job.function_payload is not None
        key, function = job.function_payload
        worker.held.append(pending)
        pending.task.dispatched_at = time.monotonic()
        self._send_once(worker, worker.functions, key, function)
        shared: _sharing.SharedPayload | None = job.shared_payload
        if shared is not None:
            self._send_once(worker, worker.shared, shared.key, shared.data)
        self._send(worker, pending.payload)

    def _send_once(self, worker: _Worker, holding: _Holding, key: bytes, payload: bytes) -> None:
        """Send `payload` ahead of a chunk, unless the worker holds `key` already (LRU)."""
        if key in holding.keys:
            holding.keys.move_to_end(key)
            return
        evict = None
        if len(holding.keys) >= holding.capacity:
            evict, _ = holding.keys.popitem(last=False)
        worker.loads_sent += 1
        holding.loads[worker.loads_sent] = key
        if len(holding.loads) > 2 * holding.capacity:
            del holding.loads[next(iter(holding.loads))]
        self._send(worker, holding.tag + pickle.dumps((key, payload, evict, worker.loads_sent), protocol=5))
        holding.keys[key] = None

    def _withdraw(self, worker: _Worker, pending: _Pending) -> None:
        chunk_id = pending.task.chunk_id
        if chunk_id in worker.withdrawing:
            return
        worker.withdrawing.add(chunk_id)
        self._send(worker, b"W" + CHUNK_ID.pack(chunk_id))

    def _kill(self, worker: _Worker, kill: _Kill) -> None:
        worker.kill = kill
        worker.process.kill()

    def _read(self, worker: _Worker) -> None:
        try:
            messages = worker.frames.read(worker.fd)
        except ValueError:
            messages = []
            self._stray(worker)
        if worker.frames.eof and worker.number in self._workers:
            # A closed socket polls as hung up for ever: stop watching it (the sentinel,
            # which fires as the process ends, reports the death).
            self._by_fd.pop(worker.fd, None)
            try:
                self._poll.unregister(worker.fd)
            except (KeyError, ValueError):
                pass
        for message in messages:
            if worker.kill is not None and worker.kill.reason == "stray":
                return
            self._receive(worker, message)

    def _stray(self, worker: _Worker) -> None:
        """Something other than the worker wrote to its socket: trust nothing more from it."""
        if worker.kill is None or worker.kill.reason != "stray":
            self._kill(worker, _Kill("stray"))

    def _receive(self, worker: _Worker, message: bytearray) -> None:
        kind = bytes(message[:1])
        if kind == b"D":
            self._on_result(worker, message)
        elif kind == b"P":
            chunk_id, position, fraction = PROGRESS.unpack_from(message, 1)
            pending = worker.find(chunk_id)
            if pending is not None:
                self._deliver(ChunkProgress(pending.task, position, fraction))
        elif kind == b"w":
            chunk_id, withdrawn = WITHDRAWN.unpack_from(message, 1)
            worker.withdrawing.discard(chunk_id)
            pending = worker.find(chunk_id)
            if withdrawn and pending is not None:
                worker.held.remove(pending)
                if pending.cancelled:
                    discard_call(pending.payload)
                else:
                    with self.flags.lock:
                        self.flags.pending.appendleft(pending)
        elif kind == b"R":
            (pid,) = PID.unpack_from(message, 1)
            if pid != worker.pid:
                self._stray(worker)
                return
            if self._starts_above_limit(worker):
                return
            worker.ready = True
            self._failed_starts = 0
            self._oom.watch(pid)  # a worker may live in another cgroup than this process
            self._publish_ready()
        elif kind == b"f":
            self._on_unloadable(worker, message)
        elif kind == b"I":
            text = pickle.loads(memoryview(message)[1 + PID.size :])
            error = InitializerError("the pool's initializer raised in a worker")
            error.__cause__ = RemoteTraceback(text)
            self._break(error)
        else:
            self._stray(worker)

    def _claim(self, worker: _Worker, message: bytearray) -> _Pending | None:
        """The held chunk a `D` or `f` message answers, no longer held; `None` for a stray.

        Both carry the chunk id and the sender's pid: an answer for a chunk this worker does
        not hold, or from another process (a task's forked child writing to the pipe), fails
        the worker loudly instead of landing on the wrong items.
        """
        chunk_id, pid = result_header(message)
        pending = worker.find(chunk_id)
        if pid != worker.pid or pending is None:
            self._stray(worker)
            return None
        worker.held.remove(pending)
        return pending

    def _on_result(self, worker: _Worker, message: bytearray) -> None:
        pending = self._claim(worker, message)
        if pending is None:
            return
        task = pending.task
        worker.withdrawing.discard(task.chunk_id)
        if result_retiring(message):
            worker.retiring = True
        self._dispatch()  # the worker is free: its next chunk goes before anything else
        decode = functools.partial(_decoded, task, message, worker.pid, pending.encode_seconds)
        if result_in_band(message):
            self._deliver(ChunkArrived(task, decode))  # unpickled in the job's thread
        else:
            # Its segments are mapped and unlinked now, whether or not the job still waits.
            self._deliver(decode())

    def _on_unloadable(self, worker: _Worker, message: bytearray) -> None:
        pending = self._claim(worker, message)
        if pending is None:
            return
        job = pending.task.job
        assert job.function_payload is not None
        worker.functions.keys.pop(job.function_payload[0], None)  # sent again next time: it may load then
        description = bytes(message[1 + 12 :]).decode(errors="replace")
        failure = f"the function {_name_of(job.function)} could not be unpickled in a worker: {description}"
        self._deliver(ChunkFailed(pending.task, SerializationError(failure)))

    def _on_exit(self, worker: _Worker) -> None:
        """The worker's process ended: report the chunk it was running, re-queue the others."""
        self._read(worker)  # its last messages come first
        worker.process.join(timeout=1.0)
        self._forget(worker)
        _transport.remove_segments(f"{self.prefix}w{worker.number}-")
        running = worker.running()
        kill = worker.kill
        if kill is None and worker.process.exitcode == -signal.SIGKILL:
            worker.oom_killed = self._oom.claim()
        # Died unpickling a function or a shared object: the chunks that need it fail (sending it
        # again would kill the next worker the same way). Which one it was comes from the slot,
        # never from the order of the queue: a cancelled job's function can still be ahead of
        # another job's chunk, which is then sent again uncharged.
        loading = running is None and kill is None and worker.slot[SLOT_POSITION] == POSITION_LOADING
        number = int(worker.slot[SLOT_LOADING])
        died_loading = (worker.functions.loads.get(number), worker.shared.loads.get(number)) if loading else None
        requeue: list[_Pending] = []
        for pending in worker.held:
            job_id = pending.task.job.job_id
            unloadable = None if died_loading is None else _needed_of(pending, *died_loading)
            if pending.cancelled or (kill is not None and kill.reason == "cancel" and job_id == kill.job_id):
                discard_call(pending.payload)  # its job is gone; nobody waits for it
            elif unloadable is not None:
                discard_call(pending.payload)
                self._deliver(
                    ChunkFailed(
                        pending.task,
                        SerializationError(
                            f"{unloadable} could not be unpickled in a worker: the worker died unpickling it "
                            f"({worker.describe_exit()})"
                        ),
                    )
                )
            elif pending is running and (kill is None or kill.reason != "cancel"):
                discard_call(pending.payload)
                self._report_loss(worker, pending.task)
            else:
                requeue.append(pending)  # never started here (or killed for another job): uncharged
        with self.flags.lock:
            self.flags.pending.extendleft(reversed(requeue))
        self._publish_ready()
        if not worker.ready and kill is None:
            phase = worker.slot[SLOT_POSITION]
            if phase == POSITION_INITIALIZING:
                self._break(
                    InitializerError(f"the pool's initializer ended its worker process ({worker.describe_exit()})")
                )
                return
            if worker.process.exitcode == EXIT_UNGUARDED_MAIN:
                self._break(PoolStartError(unguarded_main_message(self.context.get_start_method())))
                return
            self._failed_starts += 1
            if self._failed_starts >= MAX_FAILED_STARTS:
                self._break(
                    WorkerLostError(
                        f"worker processes exit before becoming ready ({worker.describe_exit()}); "
                        "under spawn or forkserver, is the main module importable and guarded by "
                        "if __name__ == '__main__'?",
                        exitcode=worker.process.exitcode,
                    )
                )
                return
        with self.flags.lock:
            stopping = self.flags.closing or self.flags.broken is not None
        if not stopping:
            try:
                self._start_worker()
            except Exception as error:
                broken = WorkerLostError(f"could not start a replacement worker: {error}")
                broken.__cause__ = error
                self._break(broken)

    def _forget(self, worker: _Worker) -> None:
        del self._workers[worker.number]
        for fd in (worker.fd, worker.process.sentinel):
            self._by_fd.pop(fd, None)
            try:
                self._poll.unregister(fd)
            except (KeyError, ValueError):
                pass
        worker.outbox.clear()
        worker.conn.close()

    def _report_loss(self, worker: _Worker, task: ChunkTask) -> None:
        raw = worker.slot[SLOT_POSITION]
        # Several async items at once (SLOT_SHARED): the position only names the oldest.
        exact = not worker.slot[SLOT_SHARED]
        position: int | None = int(raw) if exact and 0 <= raw < len(task.items) else None
        exitcode = worker.process.exitcode
        kill = worker.kill
        error: BaseException
        if (
            kill is not None
            and kill.reason == "timeout"
            and kill.chunk_id == task.chunk_id
            and kill.position is not None
        ):
            position = kill.position
            error = timeout_error(task.indices[position], task.job.timeout)
        elif kill is not None and kill.reason == "timeout" and kill.chunk_id == task.chunk_id:
            position = None  # several async items and a blocked loop: run them again one by one
            error = WorkerLostError(
                f"worker pid {worker.pid} was stopped: its event loop was blocked past an item's timeout "
                "with several items running, so they run again one at a time",
                pid=worker.pid,
            )
        elif kill is not None and kill.reason == "memory" and kill.chunk_id == task.chunk_id:
            position = position if kill.position is None else kill.position
            if position is None and len(task.items) == 1:
                position = 0
            error = self._memory_error(worker, task, position, kill.rss)
        elif kill is not None and kill.reason == "stray":
            error = WorkerLostError(
                f"a process other than worker pid {worker.pid} wrote to its pipe (did a task fork and its "
                "child return?); the worker was stopped",
                indices=list(task.indices) if position is None else [task.indices[position]],
                pid=worker.pid,
            )
        elif position is None and len(task.items) == 1:
            position = 0
            phases = {
                POSITION_READING: " while unpickling it",
                POSITION_PICKLING: " while pickling its result",
                POSITION_LOADING: " while unpickling its function",
            }
            error = self._lost_error(worker, task, 0, exitcode, phases.get(raw, ""))
        elif position is None:
            error = WorkerLostError(
                f"a worker died before its chunk's items could be told apart ({worker.describe_exit()})",
                exitcode=exitcode,
                pid=worker.pid,
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
            f"the worker process (pid {worker.pid}) running item {index}{phase} died: {worker.describe_exit()}",
            indices=[index],
            exitcode=exitcode,
            pid=worker.pid,
        )

    # ------------------------------------------------------------------ timeouts

    @staticmethod
    def _deadline_of(worker: _Worker) -> tuple[float, _Pending | None] | None:
        """When the worker's running item overruns (with that chunk); `None` if never."""
        if worker.kill is not None or not worker.held:
            return None
        running = worker.running()
        if running is None:  # not started yet: look again within the shortest timeout held
            timeouts = [p.task.job.timeout for p in worker.held if p.task.job.timeout is not None]
            return (time.monotonic() + min(timeouts), None) if timeouts else None
        timeout = running.task.job.timeout
        if timeout is None or math.isinf(timeout):
            return None
        # The worker writes the start time before the position; reading in the opposite
        # order never pairs a new position with an old start time.
        position = worker.slot[SLOT_POSITION]
        started = worker.slot[SLOT_STARTED]
        if position < 0 or started <= 0:
            return time.monotonic() + timeout, None  # between items: look again
        return float(started) + timeout, running

    def _next_deadline(self) -> float | None:
        deadlines = [found[0] for found in map(self._deadline_of, self._workers.values()) if found]
        return min(deadlines) if deadlines else None

    def _enforce_timeouts(self) -> None:
        now = time.monotonic()
        for worker in list(self._workers.values()):
            found = self._deadline_of(worker)
            if found is not None and found[1] is not None and found[0] <= now:
                # Several async items at once and the loop blocked: the oldest item may be an
                # innocent one kept waiting by the blocker, so nobody is blamed: the chunk is
                # sent again one item at a time, where the blocker overruns alone.
                position = None if worker.slot[SLOT_SHARED] else int(worker.slot[SLOT_POSITION])
                self._kill(
                    worker,
                    _Kill(
                        "timeout", job_id=found[1].task.job.job_id, chunk_id=found[1].task.chunk_id, position=position
                    ),
                )

    # ------------------------------------------------------------------ the memory limit

    def _memory_error(self, worker: _Worker, task: ChunkTask, position: int | None, rss: int | None) -> WorkerLostError:
        """The error of an item whose worker the manager killed for passing `max_worker_memory` by far."""
        limit = self.config.max_worker_memory
        seen = "an unknown amount" if rss is None else format_bytes(rss)
        what = (
            f"running item {task.indices[position]}"
            if position is not None
            else "running several items at once (they run again one at a time)"
        )
        return WorkerLostError(
            f"worker pid {worker.pid} {what} was killed: its resident memory ({seen}) passed the memory limit "
            f"max_worker_memory={format_bytes(limit or 0)} by far (x{MEMORY_KILL_FACTOR:g})",
            indices=list(task.indices) if position is None else [task.indices[position]],
            exitcode=worker.process.exitcode,
            pid=worker.pid,
        )

    def _starts_above_limit(self, worker: _Worker) -> bool:
        """A fresh worker already above `max_worker_memory` breaks the pool, with a clear error.

        Such a pool could not honour the limit: each worker would retire after every chunk
        (or, 1.5 times above, fail every item). Under fork it is most often the parent's own
        memory, which a forked worker counts as resident until it exits.
        """
        limit = self.config.max_worker_memory
        rss = None if limit is None else resident_bytes(worker.pid)
        if limit is None or rss is None or rss <= limit:
            return False
        hint = (
            "a forked worker counts the pages it shares with the parent: use start_method='spawn' or "
            "'forkserver', or raise the limit"
            if self.context.get_start_method() == "fork"
            else "raise the limit"
        )
        self._break(
            PoolStartError(
                f"a fresh worker process (pid {worker.pid}) already uses {format_bytes(rss)}, above "
                f"max_worker_memory={format_bytes(limit)}: {hint}"
            )
        )
        return True

    def _next_memory_check(self) -> float | None:
        """When to read the busy workers' memory next; `None` without a limit or a busy worker."""
        if self.config.max_worker_memory is None:
            return None
        if not any(w.held and w.kill is None for w in self._workers.values()):
            return None
        return self._memory_checked_at + MEMORY_CHECK_SECONDS

    def _enforce_memory_limit(self) -> None:
        """Kill a worker whose running chunk took it far past `max_worker_memory`.

        A worker a little above the limit is left to finish its chunk: it retires itself
        after it (it reads its own memory then), and a replacement takes its place.
        """
        due = self._next_memory_check()
        now = time.monotonic()
        if due is None or now < due:
            return
        self._memory_checked_at = now
        limit = self.config.max_worker_memory
        assert limit is not None
        for worker in list(self._workers.values()):
            if worker.kill is not None or worker.running() is None:
                continue
            rss = resident_bytes(worker.pid)
            if rss is None or rss <= limit * MEMORY_KILL_FACTOR:
                continue
            running = worker.running()
            if running is None:  # it finished the chunk meanwhile: it retires on its own
                continue
            raw = worker.slot[SLOT_POSITION]
            exact = not worker.slot[SLOT_SHARED] and 0 <= raw < len(running.task.items)
            self._kill(
                worker,
                _Kill(
                    "memory",
                    job_id=running.task.job.job_id,
                    chunk_id=running.task.chunk_id,
                    position=int(raw) if exact else None,
                    rss=rss,
                ),
            )

    # ------------------------------------------------------------------ outcomes and the end

    def _publish_ready(self) -> None:
        pids = tuple(w.pid for w in self._workers.values() if w.ready and w.kill is None)
        with self.flags.lock:
            self.flags.ready_pids = pids

    def _deliver(self, outcome: Outcome) -> None:
        try:
            outcome.task.job.deliver(outcome)
        except Exception:  # a closed job's queue: the job no longer listens
            pass

    def _break(self, error: BaseException) -> None:
        """The pool cannot go on: the loop ends and `_close` fails every chunk with `error`.

        The first cause wins: a second worker dying of the same initializer in the same
        round (without a traceback to send) must not replace the error that carries one.
        """
        with self.flags.lock:
            if self.flags.broken is None:
                self.flags.broken = error

    def _fail_all(self, error: BaseException) -> None:
        with self.flags.lock:
            pending, self.flags.pending = list(self.flags.pending), collections.deque()
        for item in pending:
            discard_call(item.payload)
            self._deliver(ChunkFailed(item.task, error))
        for worker in self._workers.values():
            for item in worker.held:
                if not item.cancelled:
                    self._deliver(ChunkFailed(item.task, error))

    def _close(self) -> None:
        """Stop every worker: idle ones are asked, busy and starting ones killed at once."""
        with self.flags.lock:
            self.flags.capacity = 0
            closed = self.flags.broken if self.flags.broken is not None else PoolClosedError("the pool was shut down")
            commands, self.flags.commands = list(self.flags.commands), collections.deque()
        for command in commands:  # every chunk is about to fail: no caller waits on a cancel
            if isinstance(command, _Cancel):
                command.applied.set()
        self._fail_all(closed)
        for worker in self._workers.values():
            if worker.held or not worker.ready or worker.outbox:
                if worker.kill is None:
                    self._kill(worker, _Kill("shutdown"))
            else:
                self._send(worker, b"S")
            worker.held.clear()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for worker in list(self._workers.values()):
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.exitcode is None:
                worker.process.kill()
                worker.process.join(timeout=1.0)
            self._forget(worker)
        _transport.remove_segments(self.prefix)
        with self.flags.lock:
            self.flags.ready_pids = ()
        self._leave_fork_server()
        # Leave the fork handler's list first: a child forked later must not close these fd
        # numbers, which the parent may by then have reused (e.g. for a new worker's pipes).
        _forget_manager(self)
        os.close(self._wake_reader)
        os.close(self._wake_writer)

    def _leave_fork_server(self) -> None:
        """Stop using the fork server (it exits once no pool uses it)."""
        server, self._server = self._server, None
        if server is not None:
            leave_fork_server(server, self._server_key)

    def kill_all(self) -> None:
        """Last resort from another thread, when this one is stuck: kill every worker."""
        for worker in list(self._workers.values()):
            if worker.process.exitcode is None:
                worker.process.kill()
                worker.process.join(timeout=1.0)

    def close_in_child(self) -> None:
        """In a forked child of the caller: close this pool's sockets and pipe, touch nothing else."""
        for worker in list(self._workers.values()):
            try:
                worker.conn.close()
            except OSError:
                pass
        for fd in (self._wake_reader, self._wake_writer):
            try:
                os.close(fd)
            except OSError as error:
                if error.errno != errno.EBADF:
                    raise


def _milliseconds_until(deadline: float | None) -> int | None:
    """A `poll` timeout that ends at `deadline` (`None`: wait for an event)."""
    if deadline is None:
        return None
    return math.ceil(min(max(0.0, deadline - time.monotonic()), MAX_WAIT_SECONDS) * 1000)


def _decoded(task: ChunkTask, message: bytearray, pid: int, encode_seconds: float) -> ChunkDone | ChunkUndecodable:
    """A `D` message's outcome: its results, or what to do when they cannot be unpickled here."""
    started = time.perf_counter()
    try:
        result = decode_result(message, task.indices, task.careful)
    except BaseException as error:
        return undecodable_outcome(task, error)
    transport = encode_seconds + result.timings.decode_seconds + time.perf_counter() - started
    return done_outcome(task, result, worker=pid, transport_seconds=transport)


def _initializer_payload(config: PoolConfig, start_method: str) -> tuple[Any, tuple[Any, ...] | None]:
    """`(initializer, initargs to pass as Process arguments or None)`: what `worker_main` takes.

    Under fork the initializer and its arguments are passed as they are: a forked worker
    inherits them, as `multiprocessing.Pool` passes them, so nothing is pickled (a 200 MB
    table in `initargs` costs nothing to send). Otherwise the initializer is cloudpickled
    with `initargs` when they can be; `multiprocessing` locks, values and queues (which may
    only be shared by inheritance) cannot be pickled that way, and are passed as `Process`
    arguments instead, which inherits them at start under every start method.
    """
    if config.initializer is None:
        return None, None
    if start_method == "fork":
        return config.initializer, config.initargs
    try:
        return _transport.dumps((config.initializer, config.initargs)), None
    except Exception:
        return _transport.dumps((config.initializer, None)), config.initargs


def _name_of(function: object) -> str:
    """How an error names the job's function: its qualified name, else its repr."""
    name = getattr(function, "__qualname__", None)
    return name if isinstance(name, str) else _describe(function)


def _describe(obj: object) -> str:
    try:
        return str(obj)
    except BaseException:
        return f"<{type(obj).__qualname__}>"


def _forget_shared(backend: weakref.ref[ProcessBackend], key: bytes) -> None:
    alive = backend()
    if alive is not None:
        alive.forget_shared(key)


def _needed_of(pending: _Pending, function_key: bytes | None, shared_key: bytes | None) -> str | None:
    """What the chunk needs that its worker died unpickling (the function, or the map's
    shared object named by those keys), for the error; `None` if it needs neither."""
    job = pending.task.job
    if function_key is not None and job.function_payload is not None and job.function_payload[0] == function_key:
        return f"the function {_name_of(job.function)}"
    if shared_key is not None and job.shared is not None and job.shared.key == shared_key:
        return "the map's shared object"
    return None


def _describe_exit(exitcode: int | None, *, oom_killed: bool = False) -> str:
    """`exit code N`, or `terminated by SIGNAME`; a SIGKILL says whether the OOM killer sent it.

    A SIGKILL parmap did not send is most often the kernel's OOM killer; `oom_killed` says
    the kernel counted an OOM kill in our cgroup meanwhile (see [OomCounter][]).
    """
    if exitcode is None:
        return "exit code unknown"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = ""
        if -exitcode == signal.SIGKILL and oom_killed:
            hint = " (killed by the OOM killer)"
        elif -exitcode == signal.SIGKILL:
            hint = " (likely out of memory, or another process killed it)"
        return f"terminated by {name}{hint}"
    return f"exit code {exitcode}"


def format_bytes(size: int) -> str:
    """`size` in the largest decimal unit it fills (`312.5 MB`), as `max_worker_memory` reads them."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _forget_manager(manager: _Manager) -> None:
    for backend in list(_live_backends):
        if getattr(backend, "_manager", None) is manager:
            _live_backends.discard(backend)


def _close_inherited_in_child() -> None:
    """In a forked child: close the sockets of the parent's pools, which the child must not use."""
    for backend in list(_live_backends):
        manager = getattr(backend, "_manager", None)
        if manager is not None:
            manager.close_in_child()
    _live_backends.clear()


os.register_at_fork(after_in_child=_close_inherited_in_child)

backend_class = ProcessBackend
