"""The fork server: under fork, every worker is forked from a one-thread copy of the caller.

Python 3.12+ warns on every `os.fork()` of a multi-threaded process ("This process is
multi-threaded, use of fork() may lead to deadlocks in the child"): a lock another thread
held at that moment stays locked forever in the child. A pool's own threads (its manager
thread, the helper threads of `parmap._transport`, a map's feeder or event-loop thread)
exist whenever a worker is *replaced* (a crash, `max_tasks_per_worker`, the memory limit)
and whenever a second pool starts, so forking workers from the caller would warn (and take
the hazard) every time.

So under fork parmap makes a fork server first, in the caller's thread, when the first
map of a fork pool begins ([prepare][], before that map starts any thread: `map_async`
and `aimap` start their pool in a background thread, a `shared=` object is hashed on
helper threads) or else when the pool starts ([join][]). `os.fork()` copies only the
forking thread, so the server is a one-thread copy of the caller as it is at that moment,
and it stays one thread (it only reads its socket, forks and reaps). Every worker of every
fork pool, the first ones and their replacements, is forked by it (a `multiprocessing`
fork `Process` started there, with the usual bootstrap): no fork of a multi-threaded
process is parmap's doing. (A fork server, rather than forking the first workers from the
caller and only replacements from elsewhere: a pool's workers would then see two
different states; and rather than `multiprocessing`'s forkserver for replacements: that
re-imports `__main__`, which a script written for fork does not guard.)

What a worker inherits is the caller's state when the server was made. For the pool the
server was made for, its initializer and arguments are inherited as they are (nothing
pickled), as `multiprocessing.Pool` passes them, and a replacement worker has the same
state as the workers it replaces (under `Pool` a replacement is forked from the parent at
replacement time, so what a worker sees depends on when it happened to be replaced). A
pool of another configuration started later uses the same server: its workers have the
state of the moment the server was made, and its initializer is cloudpickled to the server
(by value for `__main__`, by reference otherwise); one that cannot be pickled (a
`multiprocessing` lock among the arguments) makes that pool fork its workers from the
caller, as before. The server stays while the process runs (a broken pool's replacement
uses it too: a server made anew then would fork a process where parmap's threads run),
until `parmap.shutdown()` ([close][]), after which the next pool copies the caller afresh.

Protocol (caller -> server, one `SOCK_SEQPACKET` message each, file descriptors attached):

| message | fds | the server |
|---|---|---|
| `("pool", key)` | a memfd of the pickled `(initializer, initargs)` | keeps them for `key` |
| `("alias", key, origin)` | | serves `key` with the initializer it inherited for `origin` |
| `("drop", key)` | | forgets them |
| `("spawn", key, name, prefix, limit, threads)` | socket, slot, status pipe | forks it; writes pid, then exit code |
| `("kill", pid)` | | SIGKILLs its child `pid` unless it has exited |

The server reaps its children itself, and only it signals them, so a pid is never reused
under a kill. It exits when the caller's end of the socket closes (a clean close, or the
caller's death); the workers die with it (`PR_SET_PDEATHSIG`, see `_worker`).
"""

from __future__ import annotations

import errno
import importlib
import mmap
import multiprocessing
import multiprocessing.util
import os
import pickle
import select
import signal
import socket
import struct
import threading
import weakref
from typing import Any

from .. import _transport
from ._inner_threads import InnerThreads
from ._worker import WORKER_MODULES, worker_main

#: The pid (or `-errno`) a status pipe carries first, then the exit code.
_PID = struct.Struct("q")
_EXIT = struct.Struct("i")

#: The most file descriptors one message carries (`spawn`: socket, slot, status pipe).
_MAX_FDS = 3

#: The longest message: every message is a small tuple (a payload travels in a memfd).
_MAX_MESSAGE = 64 * 1024

#: How long closing waits for the server to exit after its socket closed: it exits at
#: once (no pool uses it by then), so this only bounds a server that hangs, then killed.
CLOSE_WAIT_SECONDS = 2.0

#: How often the server looks again at a worker whose sentinel closed before it exited (a
#: task that closed its descriptors): rare, so 0.1 s costs nothing and bounds how late its
#: death is reported.
LINGER_CHECK_SECONDS = 0.1

#: The server's process name (`/proc/<pid>/comm`, at most 15 bytes), so that tools (and the
#: tests' leak checks) tell it from a worker; each worker takes the caller's name back.
SERVER_NAME = "parmap-forksrv"


def available() -> bool:
    """Whether a fork server can run here (Linux: memfds and `SOCK_SEQPACKET`)."""
    return hasattr(os, "memfd_create") and hasattr(socket, "SOCK_SEQPACKET") and hasattr(socket, "send_fds")


class ServerGone(OSError):
    """The fork server has exited (killed, most likely): the pool forks its workers itself."""


class Slot:
    """A worker's slot in a memfd, so a worker forked by the server can map it too."""

    def __init__(self, size: int) -> None:
        self.fd = os.memfd_create("parmap-slot", os.MFD_CLOEXEC)
        os.ftruncate(self.fd, size)
        self.size = size
        self._map = mmap.mmap(self.fd, size)
        self._closer = weakref.finalize(self, _close_quietly, self.fd)

    def create_memoryview(self) -> memoryview:
        """The slot's bytes (the `multiprocessing.heap.BufferWrapper` method `_worker` calls)."""
        return memoryview(self._map)

    def close_fd(self) -> None:
        """Once the server has its copy: the mapping lives on without the descriptor."""
        self._closer()


class ServedProcess:
    """The caller's handle on a worker the server forked: the part of `Process` the manager uses.

    `sentinel` turns readable once the worker has exited (the server writes its exit code
    into the status pipe); `kill()` asks the server, which alone may signal its children.
    """

    def __init__(self, server: ForkServer, pid: int, status: int) -> None:
        self._server = server
        self.pid = pid
        self.sentinel = status
        self._exitcode: int | None = None
        weakref.finalize(self, _close_quietly, status)

    @property
    def exitcode(self) -> int | None:
        if self._exitcode is None:
            self.join(0)
        return self._exitcode

    def join(self, timeout: float | None = None) -> None:
        """Wait up to `timeout` seconds (`None`: no bound) for the worker's exit code."""
        if self._exitcode is not None:
            return
        waiting = select.poll()
        waiting.register(self.sentinel, select.POLLIN)
        if not waiting.poll(None if timeout is None else max(0, int(timeout * 1000))):
            return
        try:
            data = os.read(self.sentinel, _EXIT.size)
        except OSError:
            data = b""
        # No code: the server died; its workers die with it (PR_SET_PDEATHSIG).
        self._exitcode = _EXIT.unpack(data)[0] if len(data) == _EXIT.size else -signal.SIGKILL

    def kill(self) -> None:
        if self.exitcode is None:
            self._server.kill(self.pid)


class ForkServer:
    """The caller's end of the fork server (see the module docstring); one per process."""

    def __init__(self, key: str, initializer: Any, initargs: Any, *, in_use: bool = True) -> None:
        """Fork the server now, from the calling thread, for the pool `key` starting now:
        its `initializer` and `initargs` are inherited as they are. Without `in_use` no pool
        uses it yet (made ahead of the pool, by [prepare][]).

        Raises:
            OSError: the socket or the fork failed.
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._pools: set[str] = {key} if in_use else set()
        #: The pool the server was made for, and the initializer it inherited (kept in the
        #: server for good: its pages are the caller's, shared copy-on-write).
        self._origin = (key, initializer, initargs)
        #: A message could not be sent: the server is gone.
        self.broken = False
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = False
        # What the caller has buffered is the caller's to write: the server, which flushes
        # before each fork as `multiprocessing` does, would write it again.
        multiprocessing.util._flush_std_streams()  # type: ignore[attr-defined]
        try:
            pid = os.fork()
        except BaseException:
            ours.close()
            theirs.close()
            raise
        if pid == 0:  # the server: it never returns into the caller's code
            code = 1
            try:
                ours.close()
                name = _rename(SERVER_NAME)
                _serve(theirs, {key: (initializer, initargs)}, name)
                code = 0
            finally:
                os._exit(code)
        theirs.close()
        self.pid = pid
        self._socket = ours

    def add_pool(self, key: str, initializer: Any, initargs: Any) -> bool:
        """Register a pool started after the server: its initializer travels pickled, unless
        it is the very one the server inherited.

        Returns False (the pool then forks its workers itself) when it cannot be pickled.
        """
        origin, inherited, inherited_args = self._origin
        try:
            if initializer is inherited and initargs is inherited_args:
                self._send(("alias", key, origin), [])
            elif initializer is None:
                self._send(("pool", key), [])
            else:
                self._send_pool(key, _transport.dumps((initializer, initargs)))
        except Exception:  # it cannot be pickled (or the server is gone)
            return False
        with self._lock:
            self._pools.add(key)
        return True

    def _send_pool(self, key: str, payload: bytes) -> None:
        fd = os.memfd_create("parmap-initializer", os.MFD_CLOEXEC)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            os.lseek(fd, 0, os.SEEK_SET)
            self._send(("pool", key), [fd])
        finally:
            os.close(fd)

    def unused(self) -> bool:
        with self._lock:
            return not self._pools

    def drop_pool(self, key: str) -> bool:
        """The pool closed; True when no pool uses the server any more (the caller closes it)."""
        with self._lock:
            self._pools.discard(key)
            last = not self._pools
        if not last and key != self._origin[0]:
            try:
                self._send(("drop", key), [])
            except OSError:
                pass
        return last

    def start(
        self,
        key: str,
        *,
        name: str,
        prefix: str,
        memory_limit: int | None,
        inner_threads: InnerThreads | None,
        conn: Any,
        slot: Slot,
    ) -> ServedProcess:
        """Have the server fork a worker; return once it has (its pid known).

        Raises:
            ServerGone: the server has exited.
            OSError: the server's fork failed (its errno), as `Process.start` would.
        """
        status_r, status_w = os.pipe()
        try:
            self._send(("spawn", key, name, prefix, memory_limit, inner_threads), [conn.fileno(), slot.fd, status_w])
        except OSError as error:
            os.close(status_r)
            raise ServerGone(f"parmap's fork server has exited: {error}") from error
        finally:
            os.close(status_w)
            slot.close_fd()
        data = b""
        try:
            while len(data) < _PID.size:
                chunk = os.read(status_r, _PID.size - len(data))
                if not chunk:
                    break
                data += chunk
        except BaseException:
            os.close(status_r)
            raise
        if len(data) < _PID.size:  # it died before it could answer
            os.close(status_r)
            self.broken = True
            raise ServerGone("parmap's fork server has exited")
        (pid,) = _PID.unpack(data)
        if pid <= 0:
            os.close(status_r)
            raise OSError(-pid, f"the fork server could not fork a worker: {os.strerror(-pid)}")
        return ServedProcess(self, pid, status_r)

    def kill(self, pid: int) -> None:
        try:
            self._send(("kill", pid), [])
        except OSError:  # the server is gone, and its workers with it
            pass

    def _send(self, message: tuple[Any, ...], fds: list[int]) -> None:
        data = pickle.dumps(message)
        with self._lock:
            try:
                socket.send_fds(self._socket, [data], fds)
            except OSError:
                self.broken = True
                raise

    def close(self) -> None:
        """Close the server's socket and reap it (it exits at once); idempotent."""
        with self._lock:
            if self._closed:
                return  # reaped already: its pid may be another process's now
            self._closed = True
        self._socket.close()
        if os.getpid() != self._pid:
            return
        waiting = select.poll()
        try:
            fd = os.pidfd_open(self.pid)  # type: ignore[attr-defined, unused-ignore]
        except (AttributeError, OSError):
            fd = -1
        if fd >= 0:
            waiting.register(fd, select.POLLIN)
            exited = waiting.poll(int(CLOSE_WAIT_SECONDS * 1000))
            os.close(fd)
            if not exited:
                _kill_quietly(self.pid)
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass

    def close_in_child(self) -> None:
        """In a child forked by the caller: drop the inherited socket, reap nothing."""
        self._socket.close()


_server: ForkServer | None = None
_server_lock = threading.Lock()


def join(key: str, initializer: Any, initargs: Any) -> ForkServer | None:
    """The server this pool's workers are forked from (made now, from the calling thread,
    when none runs); `None` when it cannot serve the pool (the pool forks them itself)."""
    global _server
    if not available():
        return None
    with _server_lock:
        _drop_if_broken()
        if _server is None:
            try:
                _server = ForkServer(key, initializer, initargs)
            except OSError:
                return None
            return _server
        server = _server
    return server if server.add_pool(key, initializer, initargs) else None


def prepare(initializer: Any, initargs: Any) -> None:
    """Make the server now, if none runs, for a pool about to start with this initializer.

    Called in the caller's thread when a map begins, before parmap starts any thread for
    it: a map whose pool starts in a background thread (`map_async`, `aimap`), or one that
    hashes a `shared=` object on helper threads first, would otherwise fork the server from
    a multi-threaded process. The pool then finds the server running, and, its initializer
    being the one the server inherited, sends nothing. Without a pool it stays until one
    comes (or the caller exits, which ends it).
    """
    global _server
    if not available():
        return
    with _server_lock:
        _drop_if_broken()
        if _server is None:
            try:
                _server = ForkServer("prepared", initializer, initargs, in_use=False)
            except OSError:
                return


def _drop_if_broken() -> None:
    """Forget a server that is gone (its pools close it when they leave it)."""
    global _server
    if _server is not None and _server.broken:
        server, _server = _server, None
        if server.unused():
            server.close()


def leave(server: ForkServer, key: str) -> None:
    """The pool `key` closed. The server stays for the pools to come (a broken pool's
    replacement among them) until [close][]; one already closed or gone is closed once its
    last pool has left it."""
    global _server
    with _server_lock:
        last = server.drop_pool(key)
        if server.broken and _server is server:
            _server = None  # gone: the next pool makes a new one
        if not last or _server is server:
            return
    server.close()


def close_if_unused() -> None:
    """A pool could not start: close the server unless another pool uses it (the process
    is most likely out of files or processes, and the server is one more)."""
    global _server
    with _server_lock:
        server = _server
        if server is None or not server.unused():
            return
        _server = None
    server.close()


def close() -> None:
    """`parmap.shutdown()` and exit: close the server (reaped at once if no pool uses it,
    else once its last pool leaves), so that the next pool copies the caller afresh."""
    global _server
    with _server_lock:
        server, _server = _server, None
    if server is not None and server.unused():
        server.close()


def _forget_in_child() -> None:
    global _server, _server_lock
    if _server is not None:
        _server.close_in_child()
    _server = None
    _server_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)


# ---------------------------------------------------------------------------- the server


#: The signals the server ignores (see `_serve`).
_SIGNALS_IGNORED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

#: In the server: the caller's handlers of those signals, which each worker gets back.
_caller_handlers: list[tuple[int, Any]] = []


def _serve(control: socket.socket, pools: dict[str, tuple[Any, Any]], name: str | None) -> None:
    """The server's loop: fork workers, kill them when asked, report their exits.

    `name` is the caller's process name, which each worker takes back.
    """
    global _caller_handlers
    # Ctrl-C, a terminal's hang-up and a SIGTERM sent to the process group are the caller's
    # to handle (the server ends with the caller anyway): ignored here, and given back to
    # each worker as the caller had them.
    _caller_handlers = [(number, signal.getsignal(number)) for number in _SIGNALS_IGNORED]
    for number in _SIGNALS_IGNORED:
        signal.signal(number, signal.SIG_IGN)
    # Imported once here, inherited by every worker: each would import them on its own
    # (the server was made before the caller needed them), 5-10 ms a worker at a cold start.
    for module in WORKER_MODULES:
        importlib.import_module(module)
    server = _Server(control, pools, name)
    while server.serve_once():
        pass


class _Server:
    """The server's state: its socket, the pools' initializers, its children."""

    def __init__(self, control: socket.socket, pools: dict[str, tuple[Any, Any]], name: str | None) -> None:
        self.control = control
        self.pools = pools
        self.name = name
        self.context = multiprocessing.get_context("fork")
        self.children: dict[int, tuple[Any, int]] = {}  # sentinel -> (process, status write end)
        self.by_pid: dict[int, Any] = {}
        #: Workers whose sentinel closed while they still run (a task closed its descriptors):
        #: checked every `LINGER_CHECK_SECONDS` instead, so the loop never blocks on one.
        self.lingering: list[tuple[Any, int]] = []
        self.waiting = select.poll()
        self.waiting.register(control.fileno(), select.POLLIN)

    def serve_once(self) -> bool:
        """Handle what arrived; False once the caller has closed the socket (or died)."""
        events = self.waiting.poll(int(LINGER_CHECK_SECONDS * 1000) if self.lingering else None)
        for process, status in list(self.lingering):
            if process.exitcode is not None:
                self.lingering.remove((process, status))
                self._report(process, status)
        for fd, _ in events:
            if fd != self.control.fileno():
                self._reap(fd)
                continue
            try:
                data, fds, _, _ = socket.recv_fds(self.control, _MAX_MESSAGE, _MAX_FDS)
            except OSError:
                data, fds = b"", []
            if not data:
                return False
            message = pickle.loads(data)
            if message[0] == "spawn":
                try:
                    self._spawn(message, fds)
                except Exception:  # a pool it does not know: that worker fails, the server stays
                    if len(fds) == _MAX_FDS:  # else the status pipe did not come (out of files)
                        _write_quietly(fds[-1], _PID.pack(-errno.EINVAL))
                    for received in fds:
                        _close_quietly(received)
            elif message[0] == "kill":
                process = self.by_pid.get(message[1])
                if process is not None:
                    process.kill()  # a no-op once reaped: the pid is never someone else's
            elif message[0] == "pool":
                # The pickle is kept as it is, and unpickled by each worker (`worker_main`
                # takes the bytes): the server never runs or imports the pool's code.
                payload = None
                for payload_fd in fds:
                    with os.fdopen(payload_fd, "rb") as file:
                        payload = file.read()
                self.pools[message[1]] = (payload, None)
            elif message[0] == "alias" and message[2] in self.pools:
                self.pools[message[1]] = self.pools[message[2]]
            elif message[0] == "drop":
                self.pools.pop(message[1], None)
        return True

    def _spawn(self, message: tuple[Any, ...], fds: list[int]) -> None:
        _, key, worker_name, prefix, memory_limit, inner_threads = message
        conn_fd, slot_fd, status = fds
        initializer, initargs = self.pools[key]
        closing = (self.control.fileno(), *(w for _, w in self.children.values()), status)
        try:
            process: Any = self.context.Process(
                target=_run_worker,
                name=worker_name,
                args=(conn_fd, slot_fd, closing, self.name, initializer, initargs, prefix, memory_limit, inner_threads),
                daemon=True,
            )
            process.start()
        except OSError as error:
            _write_quietly(status, _PID.pack(-(error.errno or 1)))
            os.close(status)
        else:
            _write_quietly(status, _PID.pack(process.pid))
            self.children[process.sentinel] = (process, status)
            self.by_pid[process.pid] = process
            self.waiting.register(process.sentinel, select.POLLIN)
        finally:
            os.close(conn_fd)
            os.close(slot_fd)

    def _reap(self, sentinel: int) -> None:
        """A worker exited: reap it, then tell the caller its exit code."""
        process, status = self.children.pop(sentinel)
        self.waiting.unregister(sentinel)
        if process.exitcode is None:  # it closed its sentinel and runs on: never wait on it
            self.lingering.append((process, status))
            return
        self._report(process, status)

    def _report(self, process: Any, status: int) -> None:
        del self.by_pid[process.pid]
        _write_quietly(status, _EXIT.pack(process.exitcode))
        os.close(status)


# Called by multiprocessing with positional arguments (the Process's args).
def _run_worker(  # noqa: PLR0917
    conn_fd: int,
    slot_fd: int,
    closing: tuple[int, ...],
    name: str | None,
    initializer: Any,
    initargs: Any,
    prefix: str,
    memory_limit: int | None,
    inner_threads: InnerThreads | None,
) -> None:
    """A worker forked by the server: drop the server's descriptors, then `worker_main`."""
    from multiprocessing.connection import Connection

    for fd in closing:
        _close_quietly(fd)
    for number, handler in _caller_handlers:
        if handler is not None:
            signal.signal(number, handler)
    if name is not None:
        _rename(name)
    slot = _MappedSlot(slot_fd)
    worker_main(Connection(conn_fd), slot, initializer, initargs, prefix, os.getppid(), -1, memory_limit, inner_threads)


class _MappedSlot:
    """The worker's side of a [Slot][]: its memfd, mapped."""

    def __init__(self, fd: int) -> None:
        self._map = mmap.mmap(fd, os.fstat(fd).st_size)
        os.close(fd)

    def create_memoryview(self) -> memoryview:
        return memoryview(self._map)


def _rename(name: str) -> str | None:
    """Set this process's name (`comm`); return the one it had (`None`: not on this system)."""
    try:
        with open("/proc/self/comm", "r+") as comm:
            previous = comm.read().strip()
            comm.seek(0)
            comm.write(name)
    except OSError:
        return None
    return previous


def _write_quietly(fd: int, data: bytes) -> None:
    try:
        os.write(fd, data)
    except OSError:  # the caller closed its end: nobody waits for this worker now
        pass


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


__all__ = [
    "ForkServer",
    "ServedProcess",
    "ServerGone",
    "Slot",
    "available",
    "close",
    "close_if_unused",
    "join",
    "leave",
    "prepare",
]
