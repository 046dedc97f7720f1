"""What crosses a process boundary, and how.

* Functions, items, results and exceptions are pickled with cloudpickle (protocol 5), so
  lambdas, closures and ``__main__`` functions travel under every start method.
* Large buffers (NumPy arrays, ``bytes``, ``bytearray``, ``memoryview`` of at least
  :data:`OUT_OF_BAND_MIN_BYTES`) leave the pickle stream as protocol-5 out-of-band buffers
  and travel through shared-memory files instead of the pipe. The receiver maps the file
  and unlinks it at once, so the data is copied once, not four times, and a segment never
  outlives its reader. Segments whose reader died are removed by name prefix (see
  :func:`remove_segments`).
* A function is identified by the digest of its pickle (:func:`function_key`), so each
  worker unpickles a function once and reuses it for every later chunk.

Nothing here blocks on a queue or a pipe.
"""

from __future__ import annotations

import io
import mmap
import os
import pickle
import random
import struct
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import cloudpickle

try:  # hashlib's own blake2b: importing hashlib would also load OpenSSL (~3 ms per start)
    from _blake2 import blake2b
except ImportError:  # an interpreter built without it
    from hashlib import blake2b

if TYPE_CHECKING:
    import concurrent.futures

PROTOCOL = 5

#: Buffers at least this large travel through shared memory. Below it, the copy through
#: the pipe costs less than creating, mapping and unlinking a file (measured: ~30 us).
OUT_OF_BAND_MIN_BYTES = 1 << 20

_IN_BAND = b"\x00"
_OUT_OF_BAND = b"\x01"
_SEGMENT_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


#: Types whose instances must be pickled by their own ``__reduce_ex__``. wrapt proxies (the
#: decorated function) pose as the function they wrap, so cloudpickle would otherwise copy
#: the bare function and the copy would lose its map methods.
PICKLED_BY_OWN_REDUCE: set[type] = set()


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle, plus: decorated functions keep their type, and the global random
    generators travel by reference, so a task written ``from random import random`` draws
    from its worker's own generator instead of a copy of the caller's (every worker would
    otherwise draw the same numbers)."""

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        if kind in PICKLED_BY_OWN_REDUCE:
            return obj.__reduce_ex__(PROTOCOL)
        if obj is random._inst:
            return (_global_random, ())
        if kind.__name__ == "RandomState" and obj is _numpy_global_state():
            return (_numpy_global_state, ())
        return super().reducer_override(obj)


def _global_random() -> random.Random:
    return random._inst


def _numpy_global_state() -> Any:
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return None
    return numpy.random.mtrand._rand


def dumps(obj: Any, buffer_callback: Callable[[pickle.PickleBuffer], Any] | None = None) -> bytes:
    """Pickle ``obj`` with parmap's cloudpickle subclass (protocol 5)."""
    with io.BytesIO() as file:
        _Pickler(file, protocol=PROTOCOL, buffer_callback=buffer_callback).dump(obj)
        return file.getvalue()


def segment_prefix(owner_pid: int, tag: str) -> str:
    """The name prefix of the shared-memory segments written for ``owner_pid``'s pool ``tag``."""
    return f"parmap-{owner_pid}-{tag}-"


def encode(obj: Any, prefix: str) -> bytes:
    """Pickle ``obj``; buffers of ``OUT_OF_BAND_MIN_BYTES`` or more go to shared-memory files.

    NumPy arrays (and anything else exposing ``PickleBuffer``) go out of band directly.
    ``bytes``, ``bytearray`` and ``memoryview`` have no out-of-band form of their own, so
    when a message turns out large (or holds a memoryview, which cannot be pickled at all)
    the large ones among its items or results are wrapped and the message pickled again.

    Raises whatever pickling raises (the caller turns it into a ``SerializationError``).
    """
    large: list[memoryview] = []

    def keep_out_of_band(buffer: pickle.PickleBuffer) -> bool:
        raw = buffer.raw()
        if raw.nbytes < OUT_OF_BAND_MIN_BYTES:
            return True  # small: stays in the pickle stream
        large.append(raw)
        return False

    try:
        body: bytes = dumps(obj, keep_out_of_band)
    except TypeError:
        wrapped = _wrap_large_buffers(obj, depth=3)
        if wrapped is obj:
            raise
        large.clear()
        body = dumps(wrapped, keep_out_of_band)
    else:
        if len(body) >= OUT_OF_BAND_MIN_BYTES:
            wrapped = _wrap_large_buffers(obj, depth=3)
            if wrapped is not obj:
                large.clear()  # the second pickle names every buffer again, in its own order
                body = dumps(wrapped, keep_out_of_band)
    segments = _write_segments(prefix, large)
    if not segments:
        return _IN_BAND + body
    names = "\0".join(segments).encode()
    return _OUT_OF_BAND + struct.pack("<I", len(names)) + names + body


_BUFFER_TYPES = (bytes, bytearray, memoryview)


class _OutOfBand:
    """Carries a large ``bytes``/``bytearray``/``memoryview`` as a protocol-5 ``PickleBuffer``."""

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
    """``obj`` with large buffers among its (nested) list and tuple elements wrapped."""
    if type(obj) in _BUFFER_TYPES:
        size = obj.nbytes if type(obj) is memoryview else len(obj)
        return _OutOfBand(obj) if size >= OUT_OF_BAND_MIN_BYTES or type(obj) is memoryview else obj
    if depth == 0 or type(obj) not in (list, tuple):
        return obj
    wrapped = [_wrap_large_buffers(element, depth - 1) for element in obj]
    if all(new is old for new, old in zip(wrapped, obj)):
        return obj
    return wrapped if type(obj) is list else tuple(wrapped)


def decode(data: bytes | memoryview) -> Any:
    """Inverse of :func:`encode`; maps and unlinks any shared-memory segments it names."""
    if data[:1] == _IN_BAND:
        return pickle.loads(memoryview(data)[1:])
    (names_length,) = struct.unpack_from("<I", data, 1)
    names = bytes(data[5 : 5 + names_length]).decode().split("\0")
    buffers = [_map_segment(name) for name in names]
    return pickle.loads(memoryview(data)[5 + names_length :], buffers=buffers)


def discard(data: bytes | memoryview) -> None:
    """Release the shared-memory segments of an encoded message that will never be decoded."""
    if data[:1] == _OUT_OF_BAND:
        (names_length,) = struct.unpack_from("<I", data, 1)
        _unlink_all(bytes(data[5 : 5 + names_length]).decode().split("\0"))


def remove_segments(prefix: str) -> None:
    """Unlink every segment whose name starts with ``prefix`` (its reader is gone)."""
    import glob  # only after a worker's death

    for path in glob.glob(os.path.join(_SEGMENT_DIR, glob.escape(prefix) + "*")):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


#: Threads that write the segments of one message side by side: the cost of a segment is
#: the kernel allocating its pages, which runs without the GIL and on every core.
SEGMENT_WRITERS = 4

_writers: concurrent.futures.ThreadPoolExecutor | None = None
_writers_lock = threading.Lock()


def _write_segments(prefix: str, buffers: list[memoryview]) -> list[str]:
    """Write each buffer to a new segment (several at once); return their names in order."""
    if len(buffers) <= 1:
        return [_write_segment(prefix, raw) for raw in buffers]
    global _writers
    with _writers_lock:
        if _writers is None:
            import concurrent.futures  # only for messages with several large buffers

            _writers = concurrent.futures.ThreadPoolExecutor(SEGMENT_WRITERS, thread_name_prefix="parmap-shm")
        futures = [_writers.submit(_write_segment, prefix, raw) for raw in buffers]
    names: list[str] = []
    failure: BaseException | None = None
    for future in futures:
        try:
            names.append(future.result())
        except BaseException as error:
            failure = failure or error
    if failure is not None:
        _unlink_all(names)
        raise failure
    return names


def _forget_writers_in_child() -> None:
    global _writers, _writers_lock
    _writers, _writers_lock = None, threading.Lock()  # the parent's threads do not exist here


os.register_at_fork(after_in_child=_forget_writers_in_child)


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


def _map_segment(name: str) -> memoryview:
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
        os.unlink(path)
    return memoryview(mapped)[:size]


def _unlink_all(names: Sequence[str]) -> None:
    for name in names:
        try:
            os.unlink(os.path.join(_SEGMENT_DIR, name))
        except FileNotFoundError:
            pass


def dumps_function(fn: Any) -> tuple[bytes, bytes]:
    """Pickle a function once per job; return ``(key, payload)``.

    The key is a digest of the pickle, so an unchanged function is recognised by every
    worker that already holds it, while a redefined one (new code or new closure values)
    gets a new key.
    """
    payload = dumps(fn)
    return function_key(payload), payload


def function_key(payload: bytes) -> bytes:
    return digest(payload, 16)


def digest(data: bytes, size: int) -> bytes:
    """A BLAKE2b digest of ``size`` bytes."""
    return blake2b(data, digest_size=size).digest()
