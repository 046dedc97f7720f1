"""The loop of a worker process, and the nesting markers every backend uses.

A worker talks to its pool's manager thread over one private socket, in the messages of
[parmap.backends._protocol][] (each framed by its length). Two threads share it:

* the *reader* thread reads every message as it arrives, so the manager's writes never
  wait for a running task, and answers `Withdraw` at once, even while a task runs: a
  chunk still waiting in the worker's inbox is given back and will never run here;
* the *main* thread takes functions and chunks from the inbox in order, runs each chunk
  with [run_chunk][] and sends its `ChunkResult`.

It also writes four numbers into a small shared array (`slot`, see `SLOT_*` in
`_protocol`): the position of the running item, when that item started (with a timeout),
the id of the chunk it started last and when. The manager reads them when the worker dies
or overruns, so it knows exactly which item to blame without any per-item message, and
whether a held chunk has started.

A worker dies with its parent: on Linux through `PR_SET_PDEATHSIG` (the kernel kills it,
even while a task holds the GIL in one long C call; the signal fires when the forking
*thread* exits, so a worker is started by a thread that lives as long as its pool: the
manager thread, or the fork server's only thread under fork, see `_zygote`, which itself
ends with the caller), elsewhere through a thread waiting on the parent's sentinel. A process forked by a
task that returns into this loop never writes to the socket: every send checks the pid,
and such a child exits at once.

This module must stay light: a spawned worker imports it, and neither tqdm nor the
decorator machinery is needed here.
"""

from __future__ import annotations

import collections
import os
import pickle
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import _reducers, _seeding, _sharing, _state, _transport
from ..errors import PoolStartError, SerializationError
from ._inner_threads import InnerThreads, limit_inner_threads
from ._protocol import (
    CHUNK_ID,
    FRAME,
    PID,
    POSITION_INITIALIZING,
    POSITION_LOADING,
    POSITION_PICKLING,
    POSITION_READING,
    POSITION_RUNNING,
    PROGRESS,
    RESULT_HEADER,
    SLOT_CHUNK,
    SLOT_CHUNK_STARTED,
    SLOT_LOADING,
    SLOT_POSITION,
    WITHDRAWN,
    ChunkResult,
    Timings,
    decode_call,
    describe,
    encode_result,
    format_traceback,
    run_chunk,
)
from ._resources import resident_bytes

__all__ = [
    "EXIT_UNGUARDED_MAIN",
    "WORKER_NAME_PREFIX",
    "StarCall",
    "in_worker_process",
    "mark_worker_thread",
    "nesting_depth",
    "refuse_pool_while_importing_main",
    "unguarded_main_message",
    "worker_main",
]

_nested = threading.local()
_in_worker_process = False

#: `prctl` option number of `PR_SET_PDEATHSIG` (linux/prctl.h).
PR_SET_PDEATHSIG = 1

#: How every worker process's name begins (`Process(name=...)`): under spawn and
#: forkserver, multiprocessing sets the name before the child imports the main script, so
#: a map called during that import knows it runs in a parmap worker.
WORKER_NAME_PREFIX = "parmap-worker-"

#: Exit code of a worker whose import of the main script started a process pool (a script
#: without the `if __name__ == "__main__":` guard, under spawn or forkserver). The worker
#: exits with it quietly, before any parmap code of its own ran, and the parent turns it
#: into one `PoolStartError`. 78 is `EX_CONFIG` of BSD's sysexits.h ("something was found
#: in an unconfigured or misconfigured state"); neither Python nor multiprocessing uses it.
EXIT_UNGUARDED_MAIN = 78


def nesting_depth() -> int:
    """0 in the main program; above 0 inside a parmap worker (process or thread)."""
    depth: int = getattr(_nested, "depth", 0)
    return max(depth, 1 if _in_worker_process else 0)


def in_worker_process() -> bool:
    """True inside a parmap worker process, which may not start processes of its own."""
    return _in_worker_process


def mark_worker_thread(depth: int) -> None:
    _nested.depth = depth


def refuse_pool_while_importing_main(start_method: str | None) -> None:
    """Stop a process pool from starting while this process still imports the main script.

    Under spawn and forkserver each worker imports the main script before it runs any of
    parmap's code; a script that calls a map outside `if __name__ == "__main__":` would
    start a pool in every worker, and multiprocessing would print a long traceback from
    each. Instead, a parmap worker exits at once, silently, with [EXIT_UNGUARDED_MAIN][],
    which its parent reports as one [PoolStartError][parmap.PoolStartError] (see
    [unguarded_main_message][]); any other process still importing its main script
    (multiprocessing sets `_inheriting` on the current process for that time) gets that
    error here.

    Raises:
        PoolStartError: this process is not a parmap worker and is still importing its
            main script.
    """
    import multiprocessing.process  # already imported wherever a pool can start

    current = multiprocessing.process.current_process()
    if not getattr(current, "_inheriting", False):
        return
    if current.name.startswith(WORKER_NAME_PREFIX):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):  # closed or replaced streams
                pass
        os._exit(EXIT_UNGUARDED_MAIN)
    raise PoolStartError(unguarded_main_message(start_method))


def unguarded_main_message(start_method: str | None) -> str:
    """What to do when the main script starts a map as it is imported (one line).

    `start_method` is the pool's (`None`: multiprocessing's default).
    """
    if start_method is None:
        import multiprocessing

        start_method = multiprocessing.get_start_method(allow_none=True)
    method = "the spawn or forkserver start method" if start_method is None else f"the {start_method!r} start method"
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None) not in (None, "__main__"):
        script = f"the main module {spec.name!r}"
    elif path:
        script = f"the script {path}"
    else:
        script = "the main script"
    return (
        f"{script} starts a parallel map when it is imported: under {method} "
        "every worker process imports the main script first, so the pool cannot start. Put the code "
        'that runs the map under `if __name__ == "__main__":` (functions and imports may stay at module level)'
    )


class StarCall:
    """`fn(*item)`: what starmap ships, so the worker loop knows one calling convention."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, item: Any) -> Any:
        return self.fn(*item)

    def __repr__(self) -> str:
        return repr(self.fn)  # errors name the caller's function, never this wrapper


# --------------------------------------------------------------------------- child process


class _Channel:
    """The worker's end of its socket: blocking, framed, one writer at a time, pid-checked."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pid = os.getpid()
        self._send_lock = threading.Lock()

    def send(self, body: bytes) -> None:
        if os.getpid() != self.pid:
            os._exit(0)  # a child forked by a task: the socket is its parent's
        with self._send_lock:
            try:
                views = [memoryview(FRAME.pack(len(body))), memoryview(body)]
                while views:
                    written = os.writev(self.fd, views)
                    while views and written >= len(views[0]):
                        written -= len(views[0])
                        views.pop(0)
                    if views and written:
                        views[0] = views[0][written:]
            except OSError:
                os._exit(0)  # the parent is gone; nobody is left to report to

    def _read_exactly(self, size: int) -> bytearray:
        buffer = bytearray(size)
        view = memoryview(buffer)
        filled = 0
        while filled < size:
            got = os.readv(self.fd, [view[filled:]])
            if got == 0:
                raise EOFError
            filled += got
        return buffer

    def recv(self) -> bytearray:
        (length,) = FRAME.unpack(self._read_exactly(FRAME.size))
        return self._read_exactly(length)


class _Inbox:
    """Messages the reader thread received and the main thread has not taken yet.

    A chunk never starts while a message is still arriving on the socket or half read:
    that message may be the `Withdraw` of this very chunk, sent before the caller moved on
    (the caller's `cancel` returns once the manager has written it). So the reader holds
    `reading` while it reads and dispatches one message, and the main thread takes a chunk
    only under `reading` with nothing left to read.
    """

    def __init__(self, slot: Any, fd: int) -> None:
        self._slot = slot
        self._messages: collections.deque[bytearray] = collections.deque()
        self._condition = threading.Condition()
        self.reading = threading.Lock()
        self._dispatched = 0  # messages the reader has handled, to wait for its progress
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)

    def put(self, message: bytearray) -> None:
        with self._condition:
            self._messages.append(message)
            self._dispatched += 1
            self._condition.notify()

    def take(self) -> bytearray:
        """The next message; a chunk is marked started in the slot before anyone can withdraw it."""
        while True:
            with self.reading:
                arriving = bool(self._poll.poll(0))
                with self._condition:
                    if self._messages and (not arriving or self._messages[0][:1] != b"C"):
                        return self._pop()
                    seen = self._dispatched
            with self._condition:  # wait for the reader to handle what is arriving
                while self._dispatched == seen:
                    self._condition.wait()

    def _pop(self) -> bytearray:
        message = self._messages.popleft()
        if message[:1] == b"C":
            self._slot[SLOT_POSITION] = POSITION_READING
            self._slot[SLOT_CHUNK_STARTED] = time.monotonic()
            (self._slot[SLOT_CHUNK],) = CHUNK_ID.unpack_from(message, 1)
        return message

    def withdraw(self, chunk_id: int) -> bool:
        """Remove chunk `chunk_id` if it has not been taken; True if it was."""
        with self._condition:
            self._dispatched += 1
            self._condition.notify()
            for message in self._messages:
                if message[:1] == b"C" and CHUNK_ID.unpack_from(message, 1)[0] == chunk_id:
                    self._messages.remove(message)
                    return True
            return False


# Called by multiprocessing with positional arguments (the Process's args).
#: Modules every worker process imports when it starts (the parent-death signal, the
#: parent watcher, the fork that starts it, the ASCII codec reading `/proc/self/maps` in
#: `_inner_threads`): the fork server imports them once, before it forks any worker, so
#: that each worker inherits them.
WORKER_MODULES = (
    "ctypes",
    "encodings.ascii",
    "multiprocessing.connection",
    "multiprocessing.popen_fork",
    "multiprocessing.heap",
)


def worker_main(  # noqa: PLR0917
    conn: Any,
    shared: Any,
    initializer: Any,
    initargs: Any,
    prefix: str,
    parent: int,
    inherited: int,
    memory_limit: int | None = None,
    inner_threads: InnerThreads | None = None,
) -> None:
    """Entry point of a worker process: initialise, then run chunks until told to stop.

    `initializer` is the pool's initializer: `None`, the function itself (inherited under
    fork), or cloudpickled `(function, initargs or None)`. `initargs`, when not `None`, are
    its arguments passed as a `Process` argument (inherited at start, so `multiprocessing`
    locks, values and queues work); otherwise they travel inside the pickle. `parent` is
    the pid whose death must end this process (the caller; `0` under forkserver, whose
    server is the parent).
    `inherited` is the parent's end of this worker's socket, inherited under fork (`-1`
    otherwise): closed here. `memory_limit` is the pool's `max_worker_memory` in bytes: a
    worker whose resident memory is above it after a chunk retires (`None`: no limit).
    `inner_threads` caps the native thread pools, first of all: before anything is
    unpickled here, so a task's imports read it (see [parmap.backends._inner_threads][]).
    """
    limit_inner_threads(inner_threads)
    global _in_worker_process
    _in_worker_process = True
    _reducers.bind_main_globals()  # before the initializer is unpickled: see parmap._reducers
    # Ctrl-C in a terminal reaches the whole process group; the parent decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if inherited >= 0:
        os.close(inherited)
    _die_with_parent(parent)
    _seeding.reseed_worker()
    _watch_parent(prefix)
    _state.set_process_state({})  # before the initializer, which may fill it
    # `shared` is the parent's multiprocessing.heap.BufferWrapper: SLOT_SIZE doubles.
    slot = shared.create_memoryview().cast("d")
    channel = _Channel(conn.fileno())
    pid = os.getpid()
    if initializer is not None:
        slot[SLOT_POSITION] = POSITION_INITIALIZING
        try:
            if isinstance(initializer, bytes):
                initializer, packed_args = pickle.loads(initializer)
                initargs = packed_args if initargs is None else initargs
            initializer(*initargs)
        except BaseException as error:
            channel.send(b"I" + PID.pack(pid) + pickle.dumps(format_traceback(error)))
            return
    del initializer, initargs
    slot[SLOT_POSITION] = POSITION_READING
    inbox = _Inbox(slot, channel.fd)
    threading.Thread(target=_read_loop, args=(channel, inbox), name="parmap-reader", daemon=True).start()
    channel.send(b"R" + PID.pack(pid))
    _serve(channel, inbox, slot, prefix, memory_limit)
    del conn


def _read_loop(channel: _Channel, inbox: _Inbox) -> None:
    """The reader thread: every message into the inbox, except withdrawals, answered here."""
    waiting = select.poll()
    waiting.register(channel.fd, select.POLLIN)
    while True:
        waiting.poll()  # without the lock: the main thread may take chunks meanwhile
        with inbox.reading:
            try:
                message = channel.recv()
            except (EOFError, OSError):
                os._exit(0)  # the parent is gone
            if message[:1] == b"W":
                (chunk_id,) = CHUNK_ID.unpack_from(message, 1)
                withdrawn = inbox.withdraw(chunk_id)
            else:
                inbox.put(message)
        if message[:1] == b"W":
            channel.send(b"w" + WITHDRAWN.pack(chunk_id, withdrawn))


class _Unloadable:
    """Stands for a function that could not be unpickled here."""

    def __init__(self, description: str) -> None:
        self.description = description


def _serve(channel: _Channel, inbox: _Inbox, slot: Any, prefix: str, memory_limit: int | None) -> None:
    functions: dict[bytes, Callable[[Any], Any] | _Unloadable] = {}
    shared_objects: dict[bytes, Any] = {}  # key -> a map's shared object (or _Unloadable)
    items_run = 0
    pid = channel.pid

    def reporter(position: int, fraction: float) -> None:
        channel.send(b"P" + PROGRESS.pack(int(slot[SLOT_CHUNK]), position, fraction))

    while True:
        message = inbox.take()
        kind = message[:1]
        if kind == b"S":
            return
        if kind == b"F":
            _load(functions, message, slot, pickle.loads)
            continue
        if kind == b"H":
            _load(shared_objects, message, slot, _sharing.decode)
            continue
        decode_started = time.perf_counter()
        call = decode_call(message)
        del message
        decode_seconds = time.perf_counter() - decode_started
        function = functions.get(call.function_key)
        if not callable(function):
            description = function.description if isinstance(function, _Unloadable) else "it never arrived"
            channel.send(b"f" + RESULT_HEADER.pack(call.chunk_id, pid) + description.encode(errors="replace"))
            continue
        shared = _state.NO_SHARED
        if call.shared_key is not None:
            shared = shared_objects.get(call.shared_key, _Unloadable("it never arrived"))
            if isinstance(shared, _Unloadable):
                function = _SharedUnloadable(shared.description)
        budget = None if call.max_tasks is None else max(call.max_tasks - items_run, 0)
        slot[SLOT_POSITION] = POSITION_RUNNING
        item_seconds: list[float] | None = [] if call.profile else None
        with _state.installed_shared(shared):
            values, errors, completed, compute = run_chunk(
                function,
                call.indices,
                call.items,
                timeout=call.timeout,
                seed=call.seed,
                slot=slot,
                careful=call.careful,
                budget=budget,
                reporter=reporter,
                item_seconds=item_seconds,
                concurrency=call.concurrency,
            )
        del function, shared
        if os.getpid() != pid:
            os._exit(0)  # a task forked and its child returned here: it must not answer
        items_run += completed
        retiring = (call.max_tasks is not None and items_run >= call.max_tasks) or _over_limit(memory_limit)
        slot[SLOT_POSITION] = POSITION_PICKLING
        result = ChunkResult(
            call.chunk_id, pid, completed, retiring, Timings(compute, decode_seconds, item_seconds), values, errors
        )
        indices, careful = call.indices, call.careful
        # The chunk's items are not needed any more: drop them before the results travel.
        del call, values, errors
        encoded = encode_result(result, indices, careful, prefix)
        del result
        channel.send(encoded)
        del encoded
        if retiring:
            return


def _over_limit(memory_limit: int | None) -> bool:
    """The worker's resident memory is above `max_worker_memory` (read in about 10 µs)."""
    if memory_limit is None:
        return False
    rss = resident_bytes()
    return rss is not None and rss > memory_limit


def _load(store: dict[bytes, Any], message: bytearray, slot: Any, decode: Callable[[bytes], Any]) -> None:
    """A `LoadFunction` or `LoadShared`: decode its payload into `store` under its key.

    What cannot be decoded is kept as an [_Unloadable][] that says why (the worker lives on).
    """
    key, payload, evict, number = pickle.loads(memoryview(message)[1:])
    if evict is not None:
        store.pop(evict, None)
    slot[SLOT_LOADING] = number  # written before the position: the manager reads it after
    slot[SLOT_POSITION] = POSITION_LOADING
    try:
        store[key] = decode(payload)
    except BaseException as error:
        store[key] = _Unloadable(f"{type(error).__name__}: {describe(error)}")
    slot[SLOT_POSITION] = POSITION_READING


class _SharedUnloadable:
    """Runs in place of the task when the map's shared object could not be unpickled here:
    each item fails with a `SerializationError` that says why (the worker lives on)."""

    def __init__(self, description: str) -> None:
        self.description = description

    def __call__(self, item: Any) -> Any:
        raise SerializationError(f"the map's shared object could not be unpickled in a worker: {self.description}")


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to kill this process when its parent dies (Linux); exit if it already has.

    Under forkserver the parent is the fork server, which exits once the caller and every
    process holding the caller's "alive" pipe are gone; a forked server child inherits a
    copy of that pipe, so it is closed here, or the server (and this worker) would outlive
    the caller. A daemonic worker never starts processes, so it never needs the pipe.
    """
    if not parent:
        _release_forkserver_alive_pipe()
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no libc prctl: the watcher thread remains
        return
    if parent and os.getppid() != parent:
        os._exit(0)  # the parent died before the signal was armed


def _release_forkserver_alive_pipe() -> None:
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    fd = getattr(server, "_forkserver_alive_fd", None)
    if server is None or fd is None:
        return
    try:
        os.close(fd)
    except OSError:
        return
    server._forkserver_alive_fd = None


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
