"""What crosses a process boundary, and how.

* Functions, items, results and exceptions are pickled with the standard pickler
  (protocol 5) while everything in them travels by name: functions and classes importable
  from their module, plain data, NumPy arrays. The first message that holds something
  else (a lambda, a closure, a `__main__` function or class, a module object) is pickled
  again with cloudpickle, which is imported then, and every later message goes straight
  to cloudpickle: lambdas, closures and `__main__` functions travel under every start
  method, and a program that never needs cloudpickle never imports it (with the `logging`
  it imports: about 5 ms of a cold start). Both produce the same pickle for what the
  standard pickler can do, at the same speed; see [dumps][].
* Large buffers (NumPy arrays, `bytes`, `bytearray`, `memoryview` of at least
  `OUT_OF_BAND_MIN_BYTES`) leave the pickle stream as protocol-5 out-of-band buffers
  and travel through shared-memory files (segments) in `/dev/shm` instead of the pipe.
  The receiver maps the file and unlinks it at once, so the data is copied once, not four
  times, and a segment never outlives its reader. Segments whose reader died are removed
  by name prefix (see [remove_segments][]).
* When the segments do not fit (`/dev/shm` is small: Docker gives 64 MB; its free space
  is checked before writing) or cannot be written for any other reason, the message falls
  back to an in-band pickle through the pipe, as `multiprocessing.Pool` always works;
  whatever was written is unlinked first.
  Only if that in-band pickle cannot be made either is there an error, and it names the
  segment directory.
* A function is identified by the digest of its pickle ([function_key][]), so each
  worker unpickles a function once and reuses it for every later chunk.

## Segment names and the watcher

Every segment is named `parmap-<caller pid>-<pool tag>-...` ([segment_prefix][]): the
caller writes its items under its pool's prefix, and workers write their results under the
prefix the caller's pool gave them, so every segment of one caller shares
`parmap-<caller pid>-`, whoever wrote it.

A caller killed by SIGKILL (or by a SIGTERM it does not handle) runs no cleanup, and its
workers die with it at once (`PR_SET_PDEATHSIG`), so none of them can remove what is left
in `/dev/shm`: items still queued in a pipe, results not yet read. A watcher does:

    caller ──(first segment it writes)──> Popen(python -I -S -c WATCHER, stdin=pipe)
    caller alive ............ watcher blocks in read(stdin)
    shutdown() .............. caller writes b"c", closes the pipe, reaps the watcher
    normal exit ............. the same with b"x": the watcher sweeps once, then exits
    caller killed ........... the kernel closes the pipe: read() returns b"" with no b"c"
                              -> unlink /dev/shm/parmap-<pid>-* WATCHER_SWEEPS times,
                                 WATCHER_SWEEP_SECONDS apart, then exit

Why this shape:

* A separate process, because nothing inside the caller survives SIGKILL, and workers
  die at the same moment. A pipe end held only by the caller is the one signal of its
  death that needs no polling and no GIL: the kernel closes it however the caller dies.
* Started lazily by the caller's first segment, or by the first large result it reads
  (workers may write more): a program that never moves a megabyte pays nothing, and
  `import parmap` and a cold start of small items start no process. A result segment
  written before either is not watched; a backend that wants those covered too calls
  [watch_segments][] when its pool starts (one `Popen`, ~0.4 ms of the caller's time).
* `python -I -S`: isolated and without `site`, so it starts in ~15 ms on another core
  and imports nothing of the user's; `close_fds` (the default), so it holds none of the
  caller's pipes open; its own session and SIGINT/SIGTERM ignored, so Ctrl-C in a terminal
  or a SIGTERM sent to the whole group cannot stop it before the caller is gone (then it
  exits by itself).
* Several sweeps: a worker being killed may still finish creating a file just after the
  caller died.
* `parmap.shutdown()` sweeps nothing: the caller lives on and may already be writing
  segments for new pools. Interpreter exit sweeps once, after every pool is shut down:
  what is left then (a message encoded but never sent) has no reader any more.
* In a child forked by the caller, the inherited write end is closed at once
  (`os.register_at_fork`), and the child never sends the close byte: the parent's watcher
  must see EOF when the parent dies, not wait for the child, and must not be told to stop
  by a child that exits normally. A child that writes segments starts its own watcher,
  under its own pid. Nor does such a child unlink the parent's segments through the pool
  objects it inherited: [discard][] and [remove_segments][] act only on segments of this
  process or of its `multiprocessing` parent (a worker's caller), see [may_remove][].

Nothing here blocks on a queue or a pipe (the watcher's pipe is written only to close it).
"""

from __future__ import annotations

import errno
import functools
import io
import mmap
import os
import pickle
import random
import struct
import sys
import threading
import types
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, Any

from . import _reducers

try:  # hashlib's own blake2b: importing hashlib would also load OpenSSL (~3 ms per start)
    from _blake2 import blake2b
except ImportError:  # an interpreter built without it
    from hashlib import blake2b

if TYPE_CHECKING:
    import concurrent.futures
    import subprocess

PROTOCOL = 5

#: Buffers at least this large travel through shared memory. Below it, the copy through
#: the pipe costs less than creating, mapping and unlinking a file (measured: ~30 us).
OUT_OF_BAND_MIN_BYTES = 1 << 20

_IN_BAND = b"\x00"
_OUT_OF_BAND = b"\x01"


def _segment_dir() -> str:
    if os.path.isdir("/dev/shm"):
        return "/dev/shm"
    import tempfile  # only without /dev/shm: it imports shutil, bz2 and lzma (3 ms of a cold start)

    return tempfile.gettempdir()


#: Where segments are written: the shared-memory filesystem, read at each write (tests point
#: it at a small filesystem to see the fallback to the pipe).
_SEGMENT_DIR = _segment_dir()


#: Types whose instances must be pickled by their own `__reduce_ex__`. wrapt proxies (the
#: decorated function) pose as the function they wrap, so cloudpickle would otherwise copy
#: the bare function and the copy would lose its map methods.
PICKLED_BY_OWN_REDUCE: set[type] = set()


def _parmap_reduction(obj: Any, kind: type) -> Any:
    """The reductions parmap makes itself, under either pickler (`NotImplemented`: none).

    Decorated functions keep their type, and the global random generators travel by
    reference, so a task written `from random import random` draws from its worker's own
    generator instead of a copy of the caller's (every worker would otherwise draw the same
    numbers); file-backed `numpy.memmap` arrays travel by reference (see
    [parmap._reducers][]).
    """
    if kind in PICKLED_BY_OWN_REDUCE:
        return obj.__reduce_ex__(PROTOCOL)
    if obj is random._inst:
        return (_global_random, ())
    if kind.__name__ == "RandomState" and obj is _numpy_global_state():
        return (_numpy_global_state, ())
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(obj, numpy.memmap):
        by_reference = _reducers.reduce_memmap(obj, numpy)
        if by_reference is not None:
            return by_reference
    return NotImplemented


class _NeedsCloudpickle(Exception):
    """Raised inside the standard pickler: `obj` cannot travel by name."""


#: Modules whose functions and classes never travel by name: a worker's `__main__` is not
#: the caller's script (and `__mp_main__` is that script, imported again under spawn).
_MAIN_MODULES = frozenset({"__main__", "__mp_main__"})


class _StandardPickler(pickle.Pickler):
    """The standard pickler, with parmap's reductions, for what travels by name.

    A function or class is pickled by name (as the standard pickler does) only when its
    module is an imported, ordinary module (a `__spec__`, not `__main__`); the name itself
    is checked by the standard pickler, which fails for a lambda, a local function or a
    name that holds another object. Anything it cannot pickle makes [dumps][] start again
    with cloudpickle, which decides as it always does (by name, or by value).
    """

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is types.FunctionType or isinstance(obj, type):
            module = sys.modules.get(getattr(obj, "__module__", None) or "")
            if module is None or module.__name__ in _MAIN_MODULES or getattr(module, "__spec__", None) is None:
                raise _NeedsCloudpickle
            return NotImplemented
        return _parmap_reduction(obj, kind)


@functools.cache
def _cloud_pickler() -> type[pickle.Pickler]:
    """cloudpickle's pickler with parmap's reductions, made when first needed.

    Besides [_parmap_reduction][], the reducers of [parmap._reducers][]: `__main__`
    functions share their worker's `__main__` globals, and code objects keep their file
    name and source lines.
    """
    import cloudpickle

    class CloudPickler(cloudpickle.Pickler):  # type: ignore[misc]
        def reducer_override(self, obj: Any) -> Any:
            kind = type(obj)
            own = _parmap_reduction(obj, kind)
            if own is not NotImplemented:
                return own
            if _shipping_now.active is not None and (kind is types.FunctionType or isinstance(obj, type)):
                shipped = _shipped_reduction(obj)
                if shipped is not None:
                    return shipped
            if kind is types.FunctionType:
                return _reducers.reduce_function(obj, super().reducer_override(obj))
            if kind is types.CodeType:
                return _reducers.reduce_code(obj)
            return super().reducer_override(obj)

    pickler: type[pickle.Pickler] = CloudPickler
    return pickler


class _Shipping(threading.local):
    """The `shipping` in force in this thread; `None`: nothing is shipped."""

    active: shipping | None = None


_shipping_now = _Shipping()
#: Held while modules are registered with cloudpickle for one by-value pickle.
_by_value_lock = threading.Lock()


class shipping:
    """In this thread, pickle the functions and classes of `modules` for another machine.

    Each travels as [parmap._shipping.load][] of its module's name, its name, its module
    file's digest and its pickle by value: the receiver uses its own copy of the module
    when it has that file, the copy by value otherwise (see [parmap._shipping][]).
    """

    def __init__(self, modules: frozenset[str]) -> None:
        #: The module names shipped, submodules of a shipped package included.
        self.modules = modules
        #: Whether anything pickled inside shipped a function or class of `modules`.
        self.used = False
        self._previous: shipping | None = None

    def __enter__(self) -> shipping:
        self._previous = _shipping_now.active
        _shipping_now.active = self if self.modules else None
        return self

    def __exit__(self, *exc_info: object) -> None:
        _shipping_now.active = self._previous


def _shipped_reduction(obj: Any) -> Any:
    """The reduction of a function or class of a shipped module; `None` when it is not one.

    Only what the module holds under its own name: anything else (a lambda, a local
    function) cloudpickle pickles by value anyway.
    """
    active = _shipping_now.active
    module_name = getattr(obj, "__module__", None)
    if active is None or not isinstance(module_name, str) or module_name not in active.modules:
        return None
    from . import _shipping

    module = sys.modules.get(module_name)
    qualname = getattr(obj, "__qualname__", "")
    if module is None or _shipping.attribute(module, qualname) is not obj:
        return None
    digest = _shipping.module_digest(module)
    if digest is None:
        return None
    active.used = True
    return (_shipping.load, (module_name, qualname, digest, _dumps_by_value(obj, active)))


def _dumps_by_value(obj: Any, active: shipping) -> bytes:
    """cloudpickle's pickle of `obj` with the modules of `active` registered to travel by value."""
    import cloudpickle

    with _by_value_lock:
        registered = set(cloudpickle.list_registry_pickle_by_value())
        added = [sys.modules[name] for name in active.modules if name in sys.modules and name not in registered]
        for module in added:
            cloudpickle.register_pickle_by_value(module)
        _shipping_now.active = None  # inside: plain by value, never wrapped again
        try:
            return _dump(_cloud_pickler(), obj, None)
        finally:
            _shipping_now.active = active
            for module in added:
                cloudpickle.unregister_pickle_by_value(module)


def _global_random() -> random.Random:
    return random._inst


def _numpy_global_state() -> Any:
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return None
    return numpy.random.mtrand._rand


def dumps(
    obj: Any,
    buffer_callback: Callable[[pickle.PickleBuffer], Any] | None = None,
    restart: Callable[[], None] | None = None,
) -> bytes:
    """Pickle `obj` (protocol 5): the standard pickler first, cloudpickle if it must.

    While cloudpickle is not imported in this process, the standard pickler tries first.
    If it fails (something in `obj` does not travel by name, or is of a type only
    cloudpickle handles), `restart` is called (so that `buffer_callback` can forget the
    buffers of the failed try) and `obj` is pickled with cloudpickle, which this imports.
    Once cloudpickle is imported (here, or by the program: Dask, a
    `register_pickle_by_value`), every message uses it: a program that needed it once will
    likely need it again, and it pickles plain data exactly as fast.

    Raises:
        Whatever cloudpickle raises for what neither pickler can do.
    """
    if "cloudpickle" not in sys.modules and _shipping_now.active is None:
        try:
            return _dump(_StandardPickler, obj, buffer_callback)
        except Exception:
            if restart is not None:
                restart()
    return _dump(_cloud_pickler(), obj, buffer_callback)


def _dump(
    pickler: type[pickle.Pickler], obj: Any, buffer_callback: Callable[[pickle.PickleBuffer], Any] | None
) -> bytes:
    with io.BytesIO() as file:
        pickler(file, protocol=PROTOCOL, buffer_callback=buffer_callback).dump(obj)
        return file.getvalue()


def segment_prefix(owner_pid: int, tag: str) -> str:
    """The name prefix of the shared-memory segments written for `owner_pid`'s pool `tag`.

    Workers write their results under the prefix their caller's pool gave them, so every
    segment of one caller starts with `parmap-<owner_pid>-`, which its watcher removes if
    the caller is killed.
    """
    return f"{_owner_prefix(owner_pid)}{tag}-"


def _owner_prefix(owner_pid: int) -> str:
    return f"parmap-{owner_pid}-"


def may_remove(name: str) -> bool:
    """Whether this process may unlink segments named `name` (or a prefix of such names).

    Only a segment's caller (its pid is in the name) and that caller's own workers (whose
    `multiprocessing` parent it is) may. A child the caller forked itself (`os.fork` inside
    an `imap` loop) is neither: whatever the parent's objects it inherited try to release
    on its way out, the parent's segments are left to the parent.
    """
    if name.startswith(_owner_prefix(os.getpid())):
        return True
    multiprocessing = sys.modules.get("multiprocessing")
    parent = multiprocessing.parent_process() if multiprocessing is not None else None
    return parent is not None and name.startswith(_owner_prefix(parent.pid))


def encode(obj: Any, prefix: str) -> bytes:
    """Pickle `obj`; buffers of `OUT_OF_BAND_MIN_BYTES` or more go to shared-memory files.

    NumPy arrays (and anything else exposing `PickleBuffer`) go out of band directly.
    `bytes`, `bytearray` and `memoryview` have no out-of-band form of their own, so
    when a message turns out large (or holds a memoryview, which cannot be pickled at all)
    the large ones among its items or results are wrapped and the message pickled again.

    Raises whatever pickling raises (the caller turns it into a `SerializationError`).
    """
    large: list[memoryview] = []

    def keep_out_of_band(buffer: pickle.PickleBuffer) -> bool:
        raw = buffer.raw()
        if raw.nbytes < OUT_OF_BAND_MIN_BYTES:
            return True  # small: stays in the pickle stream
        large.append(raw)
        return False

    subject = obj  # what was pickled: obj, or obj with its large buffers wrapped
    try:
        body: bytes = dumps(obj, keep_out_of_band, large.clear)
    except TypeError:
        subject = _wrap_large_buffers(obj, depth=3)
        if subject is obj:
            raise
        large.clear()
        body = dumps(subject, keep_out_of_band, large.clear)
    else:
        if len(body) >= OUT_OF_BAND_MIN_BYTES:
            subject = _wrap_large_buffers(obj, depth=3)
            if subject is not obj:
                large.clear()  # the second pickle names every buffer again, in its own order
                body = dumps(subject, keep_out_of_band, large.clear)
    if not large:
        return _IN_BAND + body
    try:
        segments = _write_segments(prefix, large)
    except OSError as error:  # no room in /dev/shm (ENOSPC), too many open files, ...
        return _IN_BAND + _dumps_in_band(subject, sum(raw.nbytes for raw in large), error)
    names = "\0".join(segments).encode()
    return _OUT_OF_BAND + struct.pack("<I", len(names)) + names + body


def _dumps_in_band(subject: Any, nbytes: int, segment_error: OSError) -> bytes:
    """Pickle `subject` whole, its large buffers included, after its segments failed.

    Raises:
        MemoryError: not even the in-band pickle fits; the message names the segment
            directory and why it could not be used.
    """
    try:
        return dumps(subject)
    except MemoryError as error:
        raise MemoryError(
            f"a message with {nbytes} bytes of buffers could neither be written to {_SEGMENT_DIR} "
            f"({segment_error}) nor pickled into the pipe (out of memory)"
        ) from error


#: The buffers that have no out-of-band pickle of their own (NumPy arrays have one).
BUFFER_TYPES = (bytes, bytearray, memoryview)


class _OutOfBand:
    """Carries a large `bytes`/`bytearray`/`memoryview` as a protocol-5 `PickleBuffer`."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = data

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return (_rebuild_buffer, (type(self.data).__name__, pickle.PickleBuffer(self.data)))


def _rebuild_buffer(kind: str, buffer: Any) -> bytes | bytearray | memoryview:
    view = memoryview(buffer)
    if kind == "memoryview":
        return view  # backed by the mapped segment: no copy at all
    return bytearray(view) if kind == "bytearray" else bytes(view)


def _wrap_large_buffers(obj: Any, depth: int) -> Any:
    """`obj` with large buffers among its (nested) list and tuple elements wrapped."""
    if type(obj) in BUFFER_TYPES:
        size = obj.nbytes if type(obj) is memoryview else len(obj)
        return _OutOfBand(obj) if size >= OUT_OF_BAND_MIN_BYTES or type(obj) is memoryview else obj
    if depth == 0 or type(obj) not in (list, tuple):
        return obj
    wrapped = [_wrap_large_buffers(element, depth - 1) for element in obj]
    if all(new is old for new, old in zip(wrapped, obj)):
        return obj
    return wrapped if type(obj) is list else tuple(wrapped)


def decode(data: bytes | memoryview, *, unlink: bool = True) -> Any:
    """Inverse of [encode][]; maps and unlinks any shared-memory segments it names.

    With `unlink=False` the segments are left for other readers (a map's shared object,
    which every worker maps; its owner unlinks them).

    The first message a caller receives whose segments others wrote under its name (large
    results) starts its watcher, if no segment of its own has yet: its workers may write
    more (see [watch_segments][] for watching from the start).
    """
    if data[:1] == _IN_BAND:
        return pickle.loads(memoryview(data)[1:])
    (names_length,) = struct.unpack_from("<I", data, 1)
    names = bytes(data[5 : 5 + names_length]).decode().split("\0")
    if _watcher is None and names[0].startswith(_owner_prefix(os.getpid())):
        watch_segments()
    buffers = [_map_segment(name, unlink) for name in names]
    return pickle.loads(memoryview(data)[5 + names_length :], buffers=buffers)


def in_band(data: bytes | memoryview) -> bool:
    """Whether an encoded message is whole in itself: decoding it maps no segment, and
    dropping it undecoded leaves nothing behind."""
    return data[:1] == _IN_BAND


def discard(data: bytes | memoryview) -> None:
    """Release the shared-memory segments of an encoded message that will never be decoded.

    Does nothing for segments this process has no say over (see [may_remove][]).
    """
    if data[:1] == _OUT_OF_BAND:
        (names_length,) = struct.unpack_from("<I", data, 1)
        names = bytes(data[5 : 5 + names_length]).decode().split("\0")
        _unlink_all([name for name in names if may_remove(name)])


def remove_segments(prefix: str) -> None:
    """Unlink every segment whose name starts with `prefix` (its reader is gone).

    Does nothing for segments this process has no say over (see [may_remove][]).
    """
    if not may_remove(prefix):
        return
    import glob  # only after a worker's death

    for path in glob.glob(os.path.join(_SEGMENT_DIR, glob.escape(prefix) + "*")):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


#: Threads that write the segments of one message side by side: the cost of a segment is
#: the kernel allocating its pages, which runs without the GIL and on every core. (They
#: also hash a large shared object's blocks: see `parmap._sharing`.)
SEGMENT_WRITERS = 4

_writers: concurrent.futures.ThreadPoolExecutor | None = None
_writers_lock = threading.Lock()


def helper_threads() -> concurrent.futures.ThreadPoolExecutor:
    """The threads that write segments (and hash large buffers), started on first use.

    Only work that runs without the GIL and never waits on another task of this pool goes
    there (a segment write, a hash), so nothing submitted to it can deadlock it.
    """
    global _writers
    with _writers_lock:
        if _writers is None:
            import concurrent.futures  # only for messages with several large buffers

            _writers = concurrent.futures.ThreadPoolExecutor(SEGMENT_WRITERS, thread_name_prefix="parmap-shm")
        return _writers


def _write_segments(prefix: str, buffers: list[memoryview]) -> list[str]:
    """Write each buffer to a new segment (several at once); return their names in order.

    Raises:
        OSError: a segment could not be written (the segment directory lacks the room, for
            one); every segment already written for this message is unlinked first.
    """
    needed = sum(raw.nbytes for raw in buffers)
    free = _free_bytes(_SEGMENT_DIR)
    if needed > free:  # fail before writing anything, rather than after filling the directory
        raise OSError(errno.ENOSPC, f"{needed} bytes do not fit in the {free} bytes free", _SEGMENT_DIR)
    if prefix.startswith(_owner_prefix(os.getpid())):
        watch_segments()  # before the first write: a kill right after it is covered
    if len(buffers) <= 1:
        return [_write_segment(prefix, raw) for raw in buffers]
    writers = helper_threads()
    futures = [writers.submit(_write_segment, prefix, raw) for raw in buffers]
    names: list[str] = []
    failure: BaseException | None = None
    for future in futures:
        try:
            names.append(future.result())
        except BaseException as error:
            failure = failure or error
    if failure is not None:
        _unlink_all(names)
        try:
            raise failure
        finally:
            # No frame <-> traceback cycle may hold the buffers: the cyclic GC cannot free a
            # memoryview that others were cast from safely (CPython crashes in tp_clear).
            del failure, futures, future
    return names


def _free_bytes(directory: str) -> int:
    """Bytes an unprivileged writer may still put in `directory`'s filesystem."""
    try:
        stats = os.statvfs(directory)
    except OSError:
        return sys.maxsize  # cannot tell: try the write, whose failure falls back too
    return stats.f_bavail * stats.f_frsize


# ---------------------------------------------------------------- the watcher

#: Sweeps of the segment directory after the caller died, and the pause between them. A
#: dying worker may still be creating a file for a moment after its caller is gone (it is
#: killed by PR_SET_PDEATHSIG within milliseconds); two seconds of sweeps cover that with a
#: wide margin while the watcher still exits promptly.
WATCHER_SWEEPS = 8
WATCHER_SWEEP_SECONDS = 0.25

#: The byte the caller sends before closing the pipe after `parmap.shutdown()`: "do not
#: sweep" (the caller lives on and may be writing segments for new pools already).
_NORMAL_CLOSE = b"c"

#: The byte sent instead at interpreter exit, once every pool is shut down: "sweep once"
#: (whatever is left can have no reader any more: a message never decoded, say).
_EXITING = b"x"

#: Longest wait for the watcher to exit after a normal close; it exits as soon as it reads
#: the close byte, so this is only reached if it is stuck (it is then killed).
_WATCHER_EXIT_SECONDS = 5.0

# Runs as `python -I -S -c _WATCHER_CODE DIRECTORY PREFIX SWEEPS SECONDS`; stdin is the pipe.
# Only builtin modules: starts in milliseconds.
_WATCHER_CODE = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
directory, prefix, sweeps, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
last = b""
while True:
    data = os.read(0, 4096)
    if not data:
        break
    last = data[-1:]
if last == b"c":
    sys.exit(0)
for sweep in range(1 if last == b"x" else sweeps):
    if sweep:
        time.sleep(pause)
    try:
        names = os.listdir(directory)
    except OSError:
        names = []
    for name in names:
        if name.startswith(prefix):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass
"""

_watcher: subprocess.Popen[bytes] | None = None
_watcher_failed = False  # it could not be started; do not try again for every message
_watcher_lock = threading.Lock()
#: Watchers inherited through os.fork: the parent's children, never waited on here (a Popen
#: collected in the child would try to).
_inherited_watchers: list[subprocess.Popen[bytes]] = []


def watch_segments() -> None:
    """Make sure this process's segments are removed if it is killed; idempotent, cheap.

    Starts the watcher (see the module docstring) on the first call in this process. A
    watcher that cannot be started (no `sys.executable`, a frozen program, no processes
    left) is not an error: segments still work, only a killed caller may leave some behind.
    """
    global _watcher, _watcher_failed
    if _watching() or _watcher_failed:
        return
    with _watcher_lock:
        if _watching() or _watcher_failed:
            return
        if _watcher is not None and _watcher.stdin is not None:
            _watcher.stdin.close()  # it was killed from outside: a new one takes over
        if not sys.executable or getattr(sys, "frozen", False):
            _watcher_failed = True  # sys.executable would not run our code
            return
        import subprocess  # only once a segment is written

        command = [
            sys.executable,
            "-I",
            "-S",
            "-c",
            _WATCHER_CODE,
            _SEGMENT_DIR,
            _owner_prefix(os.getpid()),
            str(WATCHER_SWEEPS),
            str(WATCHER_SWEEP_SECONDS),
        ]
        try:
            _watcher = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, bufsize=0, start_new_session=True
            )
        except OSError:
            _watcher_failed = True


def _watching() -> bool:
    """Whether a watcher runs (one waitpid(WNOHANG) call: nothing next to writing a megabyte)."""
    watcher = _watcher
    return watcher is not None and watcher.poll() is None


def stop_watcher(*, exiting: bool = False) -> None:
    """Tell the watcher this process is closing normally, and reap it.

    With `exiting` (the interpreter is exiting and every pool is shut down) the watcher
    sweeps this process's segments once before it exits; without, it sweeps nothing.
    """
    global _watcher, _watcher_failed
    with _watcher_lock:
        watcher, _watcher = _watcher, None
        _watcher_failed = False
    if watcher is None:
        return
    pipe: IO[bytes] | None = watcher.stdin
    if pipe is not None:
        try:
            pipe.write(_EXITING if exiting else _NORMAL_CLOSE)
        except OSError:  # it died: nothing to tell
            pass
        try:
            pipe.close()
        except OSError:
            pass
    import subprocess  # already loaded: it started the watcher

    try:
        watcher.wait(_WATCHER_EXIT_SECONDS)
    except subprocess.TimeoutExpired:  # stuck: it must not outlive shutdown()
        watcher.kill()
        watcher.wait()


def _forget_in_child() -> None:
    """After `os.fork`: the parent's writer threads and watcher are the parent's."""
    global _writers, _writers_lock, _watcher, _watcher_failed, _watcher_lock
    _writers, _writers_lock = None, threading.Lock()  # the parent's threads do not exist here
    watcher, _watcher, _watcher_failed, _watcher_lock = _watcher, None, False, threading.Lock()
    if watcher is not None:
        _inherited_watchers.append(watcher)
        if watcher.stdin is not None:
            try:
                watcher.stdin.close()  # our copy of the parent's pipe: its EOF must mean the parent died
            except OSError:
                pass


os.register_at_fork(after_in_child=_forget_in_child)


def _write_segment(prefix: str, raw: memoryview) -> str:
    # os.write into a fresh tmpfs file lets the kernel copy straight into new pages: about
    # twice as fast as ftruncate + mmap + copy, which faults every page in first.
    name = f"{prefix}{os.urandom(12).hex()}"
    path = os.path.join(_SEGMENT_DIR, name)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        view = raw.cast("B")
        written = 0
        while written < len(view):
            written += os.write(fd, view[written:])
    except BaseException:
        os.unlink(path)
        raise
    finally:
        os.close(fd)
    return name


def _map_segment(name: str, unlink: bool = True) -> memoryview:
    path = os.path.join(_SEGMENT_DIR, name)
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        # Copy-on-write: the receiver may write to its array without touching the sender's.
        mapped = (
            mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
            if size
            else mmap.mmap(-1, 1)
        )
    finally:
        os.close(fd)
        if unlink:
            os.unlink(path)
    return memoryview(mapped)[:size]


def _unlink_all(names: Sequence[str]) -> None:
    for name in names:
        try:
            os.unlink(os.path.join(_SEGMENT_DIR, name))
        except FileNotFoundError:
            pass


def dumps_function(fn: Any) -> tuple[bytes, bytes]:
    """Pickle a function once per job; return `(key, payload)`.

    The key is a digest of the pickle, so an unchanged function is recognised by every
    worker that already holds it, while a redefined one (new code or new closure values)
    gets a new key.
    """
    payload = dumps(fn)
    return function_key(payload), payload


def function_key(payload: bytes) -> bytes:
    return digest(payload, 16)


def digest(data: bytes, size: int) -> bytes:
    """A BLAKE2b digest of `size` bytes."""
    return blake2b(data, digest_size=size).digest()
