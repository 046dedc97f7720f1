"""The reducers parmap adds to cloudpickle (called from `_transport._Pickler.reducer_override`).

Three things cloudpickle does its own way, changed here:

* **`__main__` functions share the worker's `__main__` globals.** cloudpickle gives every
  function it pickles by value a fresh globals dict holding copies of the globals it
  names, so an initializer that sets a global writes into its own dict and the task never
  sees it. Here a function whose globals are the caller's `__main__` namespace is rebuilt,
  in a process that [binds][bind_main_globals] (a parmap worker), over that process's own
  `sys.modules["__main__"].__dict__`, as `multiprocessing.Pool` tasks are. The globals the
  pickle carries are written there by [the rule][apply_carried_globals]: a name the
  worker's own code rebound (the initializer, a task) keeps the worker's value; a name
  still holding what the worker started with, or what parmap last carried, takes the
  caller's newer value. Anywhere else (the caller reading a result) the function gets the
  fresh dict cloudpickle would have made, so unpickling never writes into the caller's
  globals.
* **Code objects keep their file name and carry their source lines**, so a task's
  traceback names the user's file, line and source line, even where the file does not
  exist (an IPython cell, a script on another host): the lines are registered in the
  unpickling process's `linecache` unless it can read the file itself.
* **File-backed `numpy.memmap` arrays travel by reference** (file name, byte offset,
  shape, strides, dtype, mode), as joblib sends them, instead of being copied whole;
  `w+` opens again as `r+` (`w+` would truncate the file). A copy-on-write map (`c`) is
  copied: its changes are in this process only, never in the file.

Each reducer checks the shape of what cloudpickle returns and, if it is not the one it
knows (cloudpickle 2.2 to 3.x), leaves cloudpickle's reduction as it is.
"""

from __future__ import annotations

import functools
import linecache
import mmap
import os
import sys
import types
from typing import Any


@functools.cache
def _cloudpickle_parts() -> tuple[Any, Any, Any]:
    """cloudpickle's `(_code_reduce, _function_setstate, _make_function)`, imported on first use.

    Each is `None` in a cloudpickle that moved them (its reductions are then left as they
    are). Imported here, not at `import parmap`: cloudpickle (and the `logging` it imports)
    is loaded only once something needs it (see [parmap._transport][]).
    """
    try:  # cloudpickle 3.x
        from cloudpickle.cloudpickle import _code_reduce, _function_setstate, _make_function
    except ImportError:  # pragma: no cover - cloudpickle 2.x keeps them in cloudpickle_fast
        try:
            from cloudpickle.cloudpickle_fast import _code_reduce, _function_setstate, _make_function
        except ImportError:
            return None, None, None
    return _code_reduce, _function_setstate, _make_function


__all__ = [
    "apply_carried_globals",
    "bind_main_globals",
    "binding",
    "reduce_code",
    "reduce_function",
    "reduce_memmap",
]

#: What cloudpickle 3.x's `_code_reduce` puts in place of the file name.
_DYNAMIC_CODE = "<dynamic-code>"
#: Position of the file name among `types.CodeType`'s arguments on 3.8 to 3.13.
_FILENAME_ARG = 10

# ---------------------------------------------------------------- __main__ globals

#: The `__main__` namespace as it was when this process began binding (name -> value):
#: a name still holding that value was not rebound by the worker's own code.
_started_with: dict[str, Any] | None = None
#: What parmap last wrote into this process's `__main__` namespace, name -> value.
_carried: dict[str, Any] = {}
#: Names of the main namespace no carried value ever replaces.
_NEVER_CARRIED = frozenset({"__builtins__", "__name__", "__file__", "__package__", "__spec__", "__loader__"})
#: A random number naming this process in the pickles it makes (renewed in a forked
#: child): a pickle read back by the process that made it (a Dask worker thread in the
#: caller's own process) never binds, whatever that process's setting.
_origin = os.urandom(8)


def _renew_origin() -> None:
    global _origin
    _origin = os.urandom(8)


os.register_at_fork(after_in_child=_renew_origin)


def bind_main_globals() -> None:
    """Rebuild `__main__` functions from now on over this process's `__main__` namespace.

    Called once by a worker process before it unpickles anything (the initializer first);
    idempotent. The namespace is noted as it is now: what the worker's code changes later
    is its own (see [apply_carried_globals][]).
    """
    global _started_with
    if _started_with is None:
        _started_with = dict(_main_namespace())


def binding() -> bool:
    """Whether [bind_main_globals][] was called in this process."""
    return _started_with is not None


def _main_namespace() -> dict[str, Any]:
    main = sys.modules.get("__main__")
    namespace: dict[str, Any] = main.__dict__ if main is not None else {}
    return namespace


class _MainGlobals:
    """Stands for a `__main__` function's globals in a pickle: see [_main_globals][]."""

    def __init__(self, base: dict[str, Any]) -> None:
        self.base = base

    def __reduce__(self) -> tuple[Any, ...]:
        return (_main_globals, (self.base, _origin))


def _main_globals(base: dict[str, Any], origin: bytes) -> dict[str, Any]:
    """The globals a `__main__` function is rebuilt over: this process's `__main__`
    namespace where it binds (and did not make the pickle), else cloudpickle's fresh
    `base` (shared by the functions of one pickle, as cloudpickle shares it)."""
    if _started_with is not None and origin != _origin:
        return _main_namespace()
    return base


def reduce_function(obj: types.FunctionType, reduced: Any) -> Any:
    """cloudpickle's reduction of `obj`, rebuilt over the worker's `__main__` if it is a
    `__main__` function pickled by value; `reduced` itself otherwise."""
    _, _function_setstate, _make_function = _cloudpickle_parts()
    main = sys.modules.get("__main__")
    if main is None or obj.__globals__ is not main.__dict__ or _make_function is None:
        return reduced
    if not (type(reduced) is tuple and len(reduced) == 6 and reduced[0] is _make_function):
        return reduced
    if reduced[5] is not _function_setstate or type(reduced[1]) is not tuple or len(reduced[1]) != 5:
        return reduced
    code, base, name, defaults, closure = reduced[1]
    if type(base) is not dict:
        return reduced
    newargs = (code, _MainGlobals(base), name, defaults, closure)
    return (_make_main_function, newargs, reduced[2], None, None, _set_main_function_state)


def _make_main_function(
    code: types.CodeType, globals_: dict[str, Any], name: Any, defaults: Any, closure: Any
) -> types.FunctionType:
    if globals_ is _main_namespace():
        globals_.setdefault("__builtins__", __builtins__)  # never replaced: it is the worker's
        return types.FunctionType(code, globals_, name, defaults, closure)
    function: types.FunctionType = _cloudpickle_parts()[2](code, globals_, name, defaults, closure)
    return function


def _set_main_function_state(obj: types.FunctionType, state: Any) -> None:
    _function_setstate = _cloudpickle_parts()[1]
    if obj.__globals__ is not _main_namespace() or _started_with is None:
        _function_setstate(obj, state)
        return
    attributes, slots = state
    carried = slots.pop("__globals__", {})
    namespace = obj.__globals__
    builtins = namespace.get("__builtins__")
    slots["__globals__"] = {}
    _function_setstate(obj, (attributes, slots))
    if builtins is not None:
        namespace["__builtins__"] = builtins  # cloudpickle sets its own
    apply_carried_globals(namespace, carried)


def apply_carried_globals(namespace: dict[str, Any], carried: dict[str, Any]) -> None:
    """Write the globals a pickle carried into the worker's `__main__` `namespace`.

    The rule: a carried name is written if it is absent, or if the value there is still
    (by identity) the one the worker started with or the one parmap last carried for that
    name; otherwise the worker's own code rebound it (the initializer's `model`, a task's
    cache) and it keeps the worker's value. So the caller's `model = None`, carried by
    every task that reads `model`, never undoes the initializer, while a caller that
    changes `threshold` and maps again (a new pickle) reaches the worker.
    """
    started = _started_with or {}
    absent = object()
    for name, value in carried.items():
        if name in _NEVER_CARRIED:
            continue
        current = namespace.get(name, absent)
        if current is absent or current is started.get(name, absent) or current is _carried.get(name, absent):
            namespace[name] = value
            _carried[name] = value


# ---------------------------------------------------------------- code objects


def reduce_code(obj: types.CodeType) -> Any:
    """cloudpickle's reduction of a code object, with its real file name and source lines."""
    _code_reduce = _cloudpickle_parts()[0]
    if _code_reduce is None:
        return NotImplemented
    constructor, args = _code_reduce(obj)
    filename = obj.co_filename
    # cloudpickle 3.x writes "<dynamic-code>" there, 2.x the real name.
    if (
        constructor is not types.CodeType
        or len(args) <= _FILENAME_ARG
        or args[_FILENAME_ARG] not in (_DYNAMIC_CODE, filename)
    ):
        return constructor, args
    args = (*args[:_FILENAME_ARG], filename, *args[_FILENAME_ARG + 1 :])
    return (_make_code, (args, obj.co_firstlineno, _source_lines(obj)))


def _last_line(code: types.CodeType) -> int:
    if sys.version_info >= (3, 10):
        lines = [line for _, _, line in code.co_lines() if line is not None]
    else:  # pragma: no cover - 3.9
        import dis

        lines = [line for _, line in dis.findlinestarts(code)]
    return max(lines, default=code.co_firstlineno)


def _source_lines(code: types.CodeType) -> list[str]:
    """The lines of `code` (from its first line to its last) as this process's linecache has them."""
    lines = linecache.getlines(code.co_filename)
    if not lines:
        return []
    return lines[code.co_firstlineno - 1 : _last_line(code)]


#: File names whose linecache entry was registered here from pickled lines.
_registered: set[str] = set()


def _make_code(args: tuple[Any, ...], first_line: int, lines: list[str]) -> types.CodeType:
    code = types.CodeType(*args)
    if lines:
        _remember_lines(code.co_filename, first_line, lines)
    return code


def _remember_lines(filename: str, first_line: int, lines: list[str]) -> None:
    """Register `lines` for `filename` in linecache unless this process can read the file.

    The entry has no modification time, so `linecache.checkcache` leaves it alone. An
    entry for a file this process can read, or one linecache already has, is never
    replaced; entries registered here are filled in by later code objects of the file.
    """
    entry = linecache.cache.get(filename)
    if entry is not None and filename not in _registered:
        return
    if entry is None and os.path.isfile(filename):
        return  # linecache reads it when a traceback needs it
    known = list(entry[2]) if entry is not None and len(entry) == 4 else []
    end = first_line - 1 + len(lines)
    if len(known) < end:
        known.extend("\n" for _ in range(end - len(known)))
    known[first_line - 1 : end] = lines
    linecache.cache[filename] = (sum(map(len, known)), None, known, filename)
    _registered.add(filename)


# ---------------------------------------------------------------- numpy.memmap


def reduce_memmap(obj: Any, numpy: Any) -> Any:
    """A file-backed memmap (or a view of one) by reference: its file, offset and layout.

    Returns `None` for a memmap not backed by an open file, an empty one, or one opened
    copy-on-write (mode `c`: what it holds may differ from the file), which then pickles
    as a plain array, its data copied.
    """
    mapped = getattr(obj, "_mmap", None)
    filename = getattr(obj, "filename", None)
    if mapped is None or not filename or obj.size == 0 or obj.mode == "c":
        return None
    try:
        mapping_start = numpy.frombuffer(mapped, dtype=numpy.uint8).ctypes.data
    except (ValueError, TypeError):  # the map was closed
        return None
    # numpy maps from the file offset rounded down to the allocation granularity.
    first_byte = obj.offset - obj.offset % mmap.ALLOCATIONGRANULARITY
    element0 = first_byte + obj.ctypes.data - mapping_start
    mode = "r+" if obj.mode == "w+" else obj.mode  # w+ again would truncate the file
    writeable = bool(obj.flags.writeable)
    if obj.flags.c_contiguous or obj.flags.f_contiguous:
        order = "C" if obj.flags.c_contiguous else "F"
        return (_open_memmap, (filename, obj.dtype, mode, element0, obj.shape, order, writeable))
    low = sum((n - 1) * s for n, s in zip(obj.shape, obj.strides) if s < 0)
    high = sum((n - 1) * s for n, s in zip(obj.shape, obj.strides) if s > 0) + obj.itemsize
    return (
        _open_strided_memmap,
        (filename, obj.dtype, mode, element0 + low, high - low, -low, obj.shape, obj.strides, writeable),
    )


def _open_memmap(  # noqa: PLR0917 - what the reduction passes, in order
    filename: str, dtype: Any, mode: str, offset: int, shape: tuple[int, ...], order: str, writeable: bool
) -> Any:
    numpy: Any = __import__("numpy")  # loaded: the memmap was pickled from one
    array = numpy.memmap(filename, dtype=dtype, mode=mode, offset=offset, shape=shape, order=order)
    if not writeable:
        array.flags.writeable = False
    return array


def _open_strided_memmap(  # noqa: PLR0917 - what the reduction passes, in order
    filename: str,
    dtype: Any,
    mode: str,
    offset: int,
    length: int,
    element0: int,
    shape: tuple[int, ...],
    strides: tuple[int, ...],
    writeable: bool,
) -> Any:
    """A non-contiguous view over a memmap of the bytes it covers (`offset`, `length`)."""
    numpy: Any = __import__("numpy")
    region = numpy.memmap(filename, dtype=numpy.uint8, mode=mode, offset=offset, shape=(length,))
    view = numpy.ndarray.__new__(numpy.memmap, shape, dtype, buffer=region, offset=element0, strides=strides)
    view._mmap, view.filename, view.offset, view.mode = region._mmap, region.filename, region.offset, region.mode
    if not writeable:
        view.flags.writeable = False
    return view
