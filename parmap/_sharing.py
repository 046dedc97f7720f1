"""The `shared=` object of a map: how it is recognised, encoded once, and read by workers.

A map's shared object is sent to each worker once, and not again for as long as the same
object is passed to later maps. "The same" is decided by its [SharedObject.key][]:

* **Buffers by content.** A NumPy array, `bytes`, `bytearray` or `memoryview` is keyed by
  a digest of its type, dtype, shape and bytes: an array changed in place is sent again,
  an equal copy is not. The digest is computed once per map call, in the caller
  ([digest_of][]: SHA-1, 0.19 s for 200 MB where BLAKE2b took 0.46 s on the same core;
  a map that ships 200 MB to every worker costs more than that anyway).
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
import dataclasses
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

_BUFFER_TYPES = (bytes, bytearray, memoryview)

_lock = threading.Lock()
_serials = itertools.count(1)
#: `id(object)` -> (what returns the object while it is remembered, its key). A weak
#: reference where the object takes one, so that remembering it never keeps it alive.
_by_identity: collections.OrderedDict[int, tuple[Callable[[], Any], bytes]] = collections.OrderedDict()


@dataclasses.dataclass(eq=False)
class SharedObject:
    """A map's `shared=` object and the key that says whether a worker already holds it."""

    value: Any
    key: bytes


def identify(value: Any) -> SharedObject:
    """The [SharedObject][] for `value` (see the module docstring for what makes two equal)."""
    digest = digest_of(value)
    if digest is not None:
        return SharedObject(value, b"b" + digest)
    with _lock:
        known = _by_identity.pop(id(value), None)
        if known is None or known[0]() is not value:  # never seen, or another object had this id
            known = (_reference(value), b"i" + next(_serials).to_bytes(8, "little"))
        _by_identity[id(value)] = known
        while len(_by_identity) > REMEMBERED_OBJECTS:
            _by_identity.popitem(last=False)
    return SharedObject(value, known[1])


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
    if type(value) in _BUFFER_TYPES:
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

    hasher = hashlib.sha1(layout.encode(), usedforsecurity=False)
    hasher.update(view.cast("B") if view.c_contiguous else view.tobytes())
    return hasher.digest()


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
    subject = _SharedBuffer(value) if type(value) in _BUFFER_TYPES else value
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
