"""The `shared=` object of a map: how it is recognised, encoded once, and read by workers.

A map's shared object is sent to each worker once, and not again for as long as the same
object is passed to later maps. "The same" is decided by its [SharedObject.key][]:

* **Buffers by content.** A NumPy array, `bytes`, `bytearray` or `memoryview` is keyed by
  a digest of its type, dtype, shape and bytes: an array changed in place is sent again,
  an equal copy is not. The same `bytes` object, or the same array over one's memory,
  passed again is known by identity, without a new digest (its bytes cannot change). Otherwise
  the digest is computed once per map call, in the caller ([digest_of][]: SHA-1, 0.19 s
  for 200 MB on one core where BLAKE2b took 0.46 s; a large buffer is hashed in blocks on
  several threads, 0.10 s on two cores).
* **Anything else by identity.** Other objects (a dict, a model, a `numpy.memmap`, whose
  data lives in its file) are keyed by a serial number given to the object the first time
  it is passed and kept while it is remembered ([REMEMBERED_OBJECTS][] most recent): an
  object mutated in place between two maps is *not* sent again. The remembered objects
  are weakly referenced where they allow it (else held), so an `id()` cannot be reused
  by another object while its key is live.

On the process backend the object is pickled once per pool ([encode][]): NumPy arrays and
large buffers go to shared-memory segments that every worker maps (copy-on-write: no copy
per worker), and that outlive their readers for as long as the caller holds the encoded
object ([SharedPayload][]: a finalizer unlinks them). A top-level `bytes` or `bytearray`
arrives as a `memoryview` of the mapped segment (read-only for `bytes`): a `bytes` object
cannot wrap memory it does not own, and copying it into every worker is what `shared=`
exists to avoid. The thread and serial backends hand the object itself to the tasks; Dask
scatters it once to every worker (`broadcast=True`).
"""

from __future__ import annotations

import collections
import itertools
import pickle
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

from . import _transport

#: Objects keyed by identity that are remembered (held) at once, most recent first; an
#: older one passed again is sent again. A handful covers a program alternating between a
#: few tables, and bounds what the caller holds on to.
REMEMBERED_OBJECTS = 8

#: Shared objects a backend keeps sent (a worker's copies, a pool's encoded copy, Dask's
#: broadcast futures); the least recently used beyond it is dropped, and a later map
#: passing it sends it again. Each may be large: a few cover maps alternating between
#: tables without holding many.
MAX_KEPT = 4


#: A buffer at least this large is hashed in blocks of `DIGEST_BLOCK_BYTES` on the helper
#: threads (hashlib releases the GIL): 200 MB took 0.19 s on one thread and 0.10 s on two
#: (2 cores); below 32 MB the hand-off would cost more than it saves.
PARALLEL_DIGEST_MIN_BYTES = 32 << 20
DIGEST_BLOCK_BYTES = 8 << 20

_lock = threading.Lock()
_serials = itertools.count(1)
#: `id(object)` -> (what returns the object while it is remembered, its key, whether its
#: bytes could change then). A weak reference where the object takes one, so that
#: remembering it never keeps it alive.
_by_identity: collections.OrderedDict[int, tuple[Callable[[], Any], bytes, bool]] = collections.OrderedDict()


class SharedObject:
    """A map's `shared=` object and the key that says whether a worker already holds it."""

    __slots__ = ("key", "value")

    def __init__(self, value: Any, key: bytes) -> None:
        self.value = value
        self.key = key


def identify(value: Any) -> SharedObject:
    """The [SharedObject][] for `value` (see the module docstring for what makes two equal)."""
    with _lock:
        known = _by_identity.pop(id(value), None)
    if known is not None and known[0]() is not value:
        known = None  # another object had this id
    may_change = _may_change(value)
    if known is not None and not known[2] and not may_change:
        key = known[1]  # the same object, whose bytes could not change since: no digest
    else:
        digest = digest_of(value)
        if digest is not None:
            key = b"b" + digest
        elif known is not None:
            key = known[1]
        else:
            key = b"i" + next(_serials).to_bytes(8, "little")
    with _lock:
        _by_identity[id(value)] = (_reference(value), key, may_change)
        while len(_by_identity) > REMEMBERED_OBJECTS:
            _by_identity.popitem(last=False)
    return SharedObject(value, key)


def _may_change(value: Any) -> bool:
    """Whether a buffer's bytes may differ from when it was last passed (other objects: no).

    `bytes` never change, nor does a NumPy array over the memory of a `bytes` object
    (`numpy.frombuffer(data)`, read-only all the way down): passed again, such an object is
    known by identity, its digest not computed again. A read-only array that owns its
    memory is not enough: `setflags(write=True)` makes it writable again.
    """
    numpy = sys.modules.get("numpy")
    if type(value) is bytes:
        return False
    if type(value) in _transport.BUFFER_TYPES:
        return True
    if numpy is None or not isinstance(value, numpy.ndarray) or isinstance(value, numpy.memmap):
        return False
    array: Any = value
    while isinstance(array, numpy.ndarray):
        if array.flags.writeable:
            return True
        array = array.base
    return type(array) is not bytes


def forget_all() -> None:
    """Forget every remembered object (`parmap.shutdown()`): none is held any more, and each
    is sent again when next passed (the pools that held them are gone)."""
    with _lock:
        _by_identity.clear()


def _reference(value: Any) -> Callable[[], Any]:
    try:
        return weakref.ref(value)
    except TypeError:  # a dict, a list, ...: held while remembered, so its id stays its own
        return lambda: value


def when_released(value: Any, callback: Callable[[], object]) -> None:
    """Call `callback` once `value` is garbage-collected, if it takes weak references.

    A pool drops what it keeps of a shared object (its encoded copy, the shared-memory
    segments behind it) once the caller has let go of the object itself.
    """
    try:
        weakref.finalize(value, callback)
    except TypeError:  # no weak references: kept until evicted or the pool shuts down
        pass


def digest_of(value: Any) -> bytes | None:
    """A digest of a buffer's type, layout and content; `None` for other objects."""
    numpy = sys.modules.get("numpy")
    if type(value) in _transport.BUFFER_TYPES:
        view = memoryview(value)
        layout = f"{type(value).__name__}:{view.format}:{view.shape}"
    elif numpy is not None and isinstance(value, numpy.ndarray) and not isinstance(value, numpy.memmap):
        if value.dtype.hasobject:
            return None  # pointers, not data: by identity
        layout = f"{type(value).__module__}.{type(value).__qualname__}:{value.dtype.str}:{value.shape}"
        view = memoryview(value if value.flags.c_contiguous else numpy.ascontiguousarray(value))
    else:
        return None
    import hashlib  # only in a caller that shares a buffer: it loads OpenSSL (~3 ms)

    data = view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
    hasher = hashlib.sha1(layout.encode(), usedforsecurity=False)
    if data.nbytes < PARALLEL_DIGEST_MIN_BYTES:
        hasher.update(data)
    else:  # the digest of its blocks' digests, the blocks hashed side by side
        blocks = [data[start : start + DIGEST_BLOCK_BYTES] for start in range(0, data.nbytes, DIGEST_BLOCK_BYTES)]
        for block_digest in _transport.helper_threads().map(_sha1, blocks):
            hasher.update(block_digest)
    return hasher.digest()


def _sha1(block: memoryview) -> bytes:
    import hashlib

    return hashlib.sha1(block, usedforsecurity=False).digest()


class SharedPayload:
    """A shared object pickled for the process backend's workers, and its segments' lifetime.

    `data` is the encoded message; the shared-memory segments it names are unlinked when
    this object is collected (the pool's cache and every job using it let go), or when the
    pool shuts down (it removes every segment of its prefix).
    """

    def __init__(self, key: bytes, data: bytes) -> None:
        self.key = key
        self.data = data
        weakref.finalize(self, _transport.discard, data)


def encode(shared: SharedObject, prefix: str) -> SharedPayload:
    """Pickle the shared object once, its large buffers into segments named with `prefix`.

    Raises:
        Exception: whatever pickling it raises (the caller makes it a `SerializationError`).
    """
    value = shared.value
    subject = _SharedBuffer(value) if type(value) in _transport.BUFFER_TYPES else value
    return SharedPayload(shared.key, _transport.encode(subject, prefix))


def decode(data: bytes | memoryview) -> Any:
    """Inverse of [encode][] in a worker: maps the segments and leaves them for the others."""
    return _transport.decode(data, unlink=False)


class _SharedBuffer:
    """A top-level `bytes`/`bytearray`/`memoryview`: arrives as a view of the mapped segment."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = data

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return (_rebuild_view, (type(self.data) is bytes, pickle.PickleBuffer(self.data)))


def _rebuild_view(read_only: bool, buffer: Any) -> memoryview:
    view = memoryview(buffer)
    return view.toreadonly() if read_only else view
