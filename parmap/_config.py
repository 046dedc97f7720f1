"""Configuration records and all validation of user-supplied options.

Two records, split by what they decide:

* `PoolConfig` picks the shared pool (backend, workers, start method, initializer,
  backend options). It is frozen and hashable: the registry keeps one pool per value.
* `MapOptions` shapes one job (chunking, progress, timeouts, retries, ...). The
  decorator sets defaults; every map method overrides them per call.

Every bad value raises `TypeError` (wrong type) or `ValueError` (right type, bad value)
here, at decoration or call time, before any work starts.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, Literal, Union

from . import _cpus, _options
from ._state import NO_SHARED

BACKEND_NAMES = ("process", "thread", "serial", "dask")
START_METHODS = ("fork", "spawn", "forkserver")
CHECKPOINT_MODES = ("resume", "overwrite")

#: The options that pick a pool (see [parmap._options][]): given to `@parallel(...)` or
#: `parmap.config(...)`, never to a map call (a per-call value would need a pool of its own
#: for that call). The error for one given to a map call says where it goes
#: (see [parmap._advice][]).
POOL_OPTIONS = _options.POOL_OPTIONS

Chunksize = Union[int, Literal["auto"]]
ProgressOption = Union[bool, Mapping[str, Any]]


def default_workers() -> int:
    """The number of CPUs this process may use: the default `workers=`.

    The smallest of the process's CPU affinity, its cgroups' CPU quota (cgroup v2 `cpu.max`
    or v1 `cpu.cfs_quota_us`, rounded up: a container given `--cpus=1.5` runs two workers)
    and `os.process_cpu_count()` on Python 3.13+; at least 1. Not the machine's total,
    which in a container is often far more than it may use.
    """
    return _cpus.available_cpus()


#: `inner_threads="auto"` (the default): `cpus // workers` native threads per worker process.
INNER_THREADS_AUTO = "auto"

#: The backends whose workers are processes parmap starts, where `inner_threads` applies:
#: thread and serial workers share the caller's process (limiting its pools would limit the
#: caller's), and the Dask workers parmap starts already get one thread per native pool
#: from Dask (`distributed.nanny.pre-spawn-environ`, with `threads_per_worker=1`).
INNER_THREADS_BACKENDS = ("process",)


def validate_inner_threads(value: object, backend: str, workers: int, cpus: int) -> tuple[int | None, bool]:
    """The limit of native threads per worker process (`None`: left alone), and whether it
    was given (`True`: it overrides the user's environment variables). `cpus` is
    [default_workers][]'s count, which the default divides among the `workers`.

    Raises:
        TypeError: `value` is neither an int, `None` nor `"auto"`.
        ValueError: an int under 1, or another string.
    """
    if value is None:
        return None, False
    given: int | None = None
    if isinstance(value, str):
        if value != INNER_THREADS_AUTO:
            raise ValueError(f'inner_threads must be an int >= 1, None or "auto", got {value!r}')
    elif isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f'inner_threads must be an int >= 1, None or "auto", got {type(value).__name__}')
    elif value < 1:
        raise ValueError(f'inner_threads must be an int >= 1, None or "auto", got {value!r}')
    else:
        given = value
    if backend not in INNER_THREADS_BACKENDS:
        return None, False
    if given is not None:
        return given, True
    return _cpus.default_inner_threads(cpus, workers), False


@dataclasses.dataclass(frozen=True)
class PoolConfig:
    """What identifies a shared pool: equal configs share one pool.

    `identity` is a hashable stand-in for the initializer, its arguments and backend
    options, which may themselves be unhashable (a list in `initargs`, a dask `Client`).
    """

    backend: str
    workers: int
    start_method: str | None = None
    initializer: Callable[..., object] | None = dataclasses.field(default=None, compare=False)
    initargs: tuple[Any, ...] = dataclasses.field(default=(), compare=False)
    backend_options: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    identity: object = None
    #: How deep in nested maps the pool lives (0: the main program); each depth has its own
    #: pools, so a task waiting on an inner map never waits on its own pool.
    depth: int = 0
    #: Resident bytes a worker process may use (`max_worker_memory=`); `None`: no limit.
    max_worker_memory: int | None = None
    #: Native threads per pool (BLAS, OpenMP, ...) in each worker process (`inner_threads=`,
    #: see [parmap.backends._inner_threads][]); `None`: environment and pools left alone.
    inner_threads: int | None = None
    #: Whether `inner_threads` was given (it then overrides the user's `OMP_NUM_THREADS`
    #: and the like) rather than computed (which keeps them).
    inner_threads_explicit: bool = False

    @classmethod
    def build(
        cls,
        *,
        backend: object,
        workers: object,
        start_method: object,
        initializer: object,
        initargs: object,
        backend_options: Mapping[str, Any] | None = None,
        max_worker_memory: object = None,
        inner_threads: object = INNER_THREADS_AUTO,
    ) -> PoolConfig:
        """Validate the pool-level options and return the config that names the pool.

        Raises:
            TypeError: an option has the wrong type.
            ValueError: an option has the right type but an unusable value.
        """
        backend_name = validate_backend(backend)
        # Read once (about 50 µs: the cgroup files), and only when a default needs it.
        needs_cpus = workers is None or (isinstance(inner_threads, str) and backend_name in INNER_THREADS_BACKENDS)
        cpus = default_workers() if needs_cpus else 1
        n_workers = cpus if workers is None else validate_positive_int("workers", workers)
        if start_method is not None:
            if not isinstance(start_method, str):
                raise TypeError(
                    f"start_method must be None or one of {START_METHODS}, got {type(start_method).__name__}"
                )
            if start_method not in START_METHODS:
                raise ValueError(f"start_method must be None or one of {START_METHODS}, got {start_method!r}")
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be callable or None, got {type(initializer).__name__}")
        if not isinstance(initargs, tuple):
            if isinstance(initargs, list):
                initargs = tuple(initargs)
            else:
                raise TypeError(f"initargs must be a tuple, got {type(initargs).__name__}")
        options = dict(backend_options or {})
        memory_limit = validate_max_worker_memory(max_worker_memory, backend_name, options)
        thread_limit, thread_limit_given = validate_inner_threads(inner_threads, backend_name, n_workers, cpus)
        return cls(
            backend=backend_name,
            workers=n_workers,
            start_method=start_method,
            initializer=initializer,
            initargs=initargs,
            backend_options=options,
            identity=_identity_of(initializer, initargs, options),
            max_worker_memory=memory_limit,
            inner_threads=thread_limit,
            inner_threads_explicit=thread_limit_given,
        )


#: Units of `max_worker_memory` strings, in bytes. Decimal prefixes are powers of 1000 and
#: binary ones (`KiB`, ...) powers of 1024, as in the IEC standard, Dask and `ls --si`; a bare
#: `K`, `M`, `G`, `T` means the decimal unit too, as Dask reads it (`memory_limit="2G"`), so a
#: limit means the same bytes in parmap and in Dask.
MEMORY_UNITS = {
    "": 1,
    "b": 1,
    **{f"{prefix}{suffix}": 1000**power for power, prefix in enumerate("kmgt", 1) for suffix in ("", "b")},
    **{f"{prefix}ib": 1024**power for power, prefix in enumerate("kmgt", 1)},
}

_MEMORY_PATTERN = re.compile(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*", re.IGNORECASE)

_MEMORY_HELP = 'an int of bytes >= 1 or a string such as "2GB", "512 MiB" or "1.5e9"'


def parse_memory_size(value: str) -> int:
    """Bytes in a size such as `"2GB"`, `"512 MiB"`, `"800M"`, `"1.5GiB"` or `"2e9"`.

    Units (case-insensitive, see [MEMORY_UNITS][]): none or `B`; `kB`, `MB`, `GB`, `TB`
    (powers of 1000, also written `K`, `M`, `G`, `T`); `KiB`, `MiB`, `GiB`, `TiB` (powers
    of 1024). A fraction is rounded down to whole bytes.

    Raises:
        ValueError: not a number with one of these units, or under one byte.
    """
    match = _MEMORY_PATTERN.fullmatch(value)
    unit = MEMORY_UNITS.get(match.group(2).lower()) if match else None
    if match is None or unit is None:
        raise ValueError(f"max_worker_memory must be {_MEMORY_HELP}, got {value!r}")
    try:
        size = int(float(match.group(1)) * unit)
    except OverflowError:  # "1e999": no machine has that much
        raise ValueError(f"max_worker_memory is too large: {value!r}") from None
    if size < 1:
        raise ValueError(f"max_worker_memory must be at least one byte, got {value!r}")
    return size


def validate_max_worker_memory(value: object, backend: str, backend_options: Mapping[str, Any]) -> int | None:
    """The limit in bytes (`None`: no limit), checked against the backend that must enforce it.

    Raises:
        TypeError: `value` is neither `None`, an int nor a str.
        ValueError: a bad size; or a backend whose workers parmap does not run as its own
            processes: thread and serial (they share the caller's memory), Dask with
            `address=` or `client=` (parmap does not manage those workers); or a process
            backend off Linux (the limit reads `/proc`).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"max_worker_memory must be {_MEMORY_HELP}, got {type(value).__name__}")
    if isinstance(value, str):
        limit = parse_memory_size(value)
    elif value < 1:
        raise ValueError(f"max_worker_memory must be {_MEMORY_HELP}, got {value!r}")
    else:
        limit = value
    if backend in ("thread", "serial"):
        raise ValueError(
            f"max_worker_memory does not apply to backend={backend!r}: its workers share the caller's "
            "memory; the limit applies to worker processes (backend='process' or 'dask')"
        )
    named = [name for name in ("address", "client") if name in backend_options]
    if backend == "dask" and named:
        raise ValueError(
            "max_worker_memory applies to the LocalCluster parmap starts for backend='dask'; with "
            f"{' or '.join(f'{name}=' for name in named)} parmap does not manage the workers: "
            "set the cluster's own memory_limit instead"
        )
    if backend == "process" and not sys.platform.startswith("linux"):
        raise ValueError("max_worker_memory needs Linux: the process backend reads a worker's memory from /proc")
    return limit


def _identity_of(initializer: object, initargs: tuple[Any, ...], options: Mapping[str, Any]) -> object:
    """A hashable key for the unhashable parts of a pool config.

    Objects are compared by value where they hash, and otherwise by the bytes of their
    pickle (equal pickles make the same worker state), falling back to identity.
    """
    parts = (initializer, initargs, tuple(sorted(options.items(), key=lambda kv: kv[0])))
    try:
        hash(parts)
        return parts
    except TypeError:
        pass
    import cloudpickle  # only for unhashable initargs or options: not on a plain map's path

    try:
        return cloudpickle.dumps(parts)
    except Exception:
        return tuple(id(part) for part in parts)


@dataclasses.dataclass(frozen=True)
class MapOptions:
    """Options of one job; the decorator's values are defaults, each call may override them."""

    chunksize: Chunksize = "auto"
    progress: ProgressOption = False
    timeout: float | None = None
    retries: int = 0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    return_exceptions: bool = False
    max_tasks_per_worker: int | None = None
    max_in_flight: int | None = None
    seed: int | None = None
    checkpoint: str | None = None
    checkpoint_mode: str = "resume"
    stats: bool = False
    concurrency: int = 1
    #: The object [parmap.shared][] returns in the tasks, sent to each worker once
    #: (see [parmap._sharing][]); never compared (it may be an array).
    shared: Any = dataclasses.field(default=NO_SHARED, compare=False)

    def replace(
        self, overrides: Mapping[str, Any], *, label: str = "the function", function: Callable[..., Any] | None = None
    ) -> MapOptions:
        """Return a copy with `overrides` applied and validated.

        `label` and `function` name the decorated function in the error for an unknown
        option (its parameters tell a misplaced argument of the function from a typo).

        Raises:
            TypeError: an option is unknown (a pool option, a misspelt option or an
                argument of the function: the message says which, and the fix), or has
                the wrong type.
            ValueError: an option has the right type but an unusable value.
        """
        if not overrides:
            return self
        per_call = [f.name for f in dataclasses.fields(self)]
        unknown = set(overrides) - set(per_call)
        if unknown:
            from ._advice import unknown_call_options

            given = {name: overrides[name] for name in unknown}
            raise TypeError(
                unknown_call_options(given, label=label, function=function, per_call=per_call, pool=POOL_OPTIONS)
            )
        return dataclasses.replace(self, **validate_map_options(overrides))


def validate_map_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and normalise the job options present in `options`.

    Raises:
        TypeError: an option has the wrong type.
        ValueError: an option has the right type but an unusable value.
    """
    checked: dict[str, Any] = {}
    for name, value in options.items():
        if name == "chunksize":
            checked[name] = validate_chunksize(value)
        elif name == "progress":
            checked[name] = validate_progress(value)
        elif name == "timeout":
            checked[name] = validate_timeout(value)
        elif name == "retries":
            checked[name] = validate_non_negative_int("retries", value)
        elif name == "retry_on":
            checked[name] = validate_retry_on(value)
        elif name in ("return_exceptions", "stats"):
            checked[name] = validate_bool(name, value)
        elif name == "checkpoint":
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"checkpoint must be a file path or None, got {type(value).__name__}")
            checked[name] = None if value is None else os.fspath(value)
        elif name == "checkpoint_mode":
            if not isinstance(value, str):
                raise TypeError(f"checkpoint_mode must be one of {CHECKPOINT_MODES}, got {type(value).__name__}")
            if value not in CHECKPOINT_MODES:
                raise ValueError(f"checkpoint_mode must be one of {CHECKPOINT_MODES}, got {value!r}")
            checked[name] = value
        elif name == "concurrency":
            checked[name] = validate_positive_int(name, value)
        elif name == "shared":
            checked[name] = value  # any object: whatever cannot be pickled fails when it is sent
        elif name in ("max_tasks_per_worker", "max_in_flight"):
            checked[name] = None if value is None else validate_positive_int(name, value)
        elif name == "seed":
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(f"seed must be an int or None, got {type(value).__name__}")
            checked[name] = value
        else:
            raise TypeError(f"unknown option: {name}")
    return checked


def validate_backend(backend: object) -> str:
    if not isinstance(backend, str):
        raise TypeError(f"backend must be one of {BACKEND_NAMES}, got {type(backend).__name__}")
    if backend not in BACKEND_NAMES:
        raise ValueError(f"backend must be one of {BACKEND_NAMES}, got {backend!r}")
    return backend


def validate_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def validate_non_negative_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 0, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return value


def validate_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}")
    return value


def validate_chunksize(value: object) -> Chunksize:
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f'chunksize must be "auto" or an int >= 1, got {value!r}')
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f'chunksize must be "auto" or an int >= 1, got {type(value).__name__}')
    if value < 1:
        raise ValueError(f'chunksize must be "auto" or an int >= 1, got {value!r}')
    return value


def validate_progress(value: object) -> ProgressOption:
    """`True`, `False` or a dict of keyword arguments that `tqdm` accepts.

    The dict may also hold `tqdm_class`: the bar's class, `tqdm.std.tqdm` or a subclass
    of it (`tqdm.rich.tqdm`, `tqdm.notebook.tqdm`, your own), instead of `tqdm.auto`'s.
    The other keys are checked against that class's keywords.

    Raises:
        TypeError: `value` is of another type, names a key the bar's class does not take
            (checked here, at decoration or call time, rather than when the bar opens in
            the job's thread, which for `map_async` is a background thread), or has a
            `tqdm_class` that is not `tqdm.std.tqdm` or a subclass of it.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise TypeError("progress must be a bool or a dict of tqdm keyword arguments (str keys)")
        bar_class = validate_tqdm_class(value["tqdm_class"]) if "tqdm_class" in value else None
        unknown = sorted(set(value) - tqdm_keywords(bar_class))
        if unknown:
            raise TypeError(_unknown_progress_keys_message(unknown, bar_class))
        return dict(value)
    raise TypeError(f"progress must be a bool or a dict of tqdm keyword arguments, got {type(value).__name__}")


def validate_tqdm_class(value: object) -> type:
    """The `tqdm_class` of a `progress=` dict: `tqdm.std.tqdm` or a subclass of it.

    Raises:
        TypeError: `value` is not such a class (an instance, a function, another class).
    """
    import tqdm.std

    if not (isinstance(value, type) and issubclass(value, tqdm.std.tqdm)):
        raise TypeError(
            "progress's tqdm_class must be tqdm.std.tqdm or a subclass of it (tqdm.auto.tqdm, "
            f"tqdm.rich.tqdm, tqdm.notebook.tqdm, your own), got {value!r}"
        )
    return value


#: Keywords of tqdm's bar that the progress option may not set: parmap drives the bar with
#: `update()`, so an iterable given here would never be iterated.
_PROGRESS_RESERVED = frozenset({"self", "iterable", "args", "kwargs"})

#: Keys of a `progress=` dict that are parmap's own, not the bar's: the bar's class.
_PROGRESS_OWN_KEYWORDS = frozenset({"tqdm_class"})

#: Keywords that tqdm's own bar classes pop from `**kwargs` (so no signature shows them),
#: by class. `tqdm.notebook`'s are always accepted: `tqdm.auto` picks it in a notebook.
_PROGRESS_POPPED_KEYWORDS = {
    "tqdm.notebook.tqdm_notebook": frozenset({"display"}),
    "tqdm.rich.tqdm_rich": frozenset({"progress", "options"}),
}


@functools.lru_cache(maxsize=64)
def tqdm_keywords(bar_class: type | None = None) -> frozenset[str]:
    """The keys a `progress=` dict may hold for bars of `bar_class` (default: `tqdm.auto`'s).

    `tqdm.std.tqdm`'s own parameters, `tqdm_class`, the keywords `tqdm.notebook`
    takes, and those each class between `bar_class` and `tqdm.std.tqdm` names in its
    `__init__` or pops from its `**kwargs` (`token=` of `tqdm.contrib.telegram`,
    `options=` of `tqdm.rich`). Read from the signatures once per class, on the first
    dict given, so that a bar-less program never imports tqdm and a new tqdm release's
    parameters are accepted as they come.
    """
    import inspect

    import tqdm.std

    names = set(inspect.signature(tqdm.std.tqdm.__init__).parameters)
    names |= _PROGRESS_OWN_KEYWORDS | _PROGRESS_POPPED_KEYWORDS["tqdm.notebook.tqdm_notebook"]
    for klass in bar_class.__mro__ if bar_class is not None else ():
        if klass is tqdm.std.tqdm:
            break
        names |= _PROGRESS_POPPED_KEYWORDS.get(f"{klass.__module__}.{klass.__qualname__}", frozenset())
        init = klass.__dict__.get("__init__")
        if init is not None:
            names.update(
                name
                for name, parameter in inspect.signature(init).parameters.items()
                if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
            )
    return frozenset(names - _PROGRESS_RESERVED)


def _unknown_progress_keys_message(unknown: list[str], bar_class: type | None = None) -> str:
    import difflib  # only on this error

    accepted = sorted(tqdm_keywords(bar_class))
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, accepted, n=1)
        hints.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    bar = "tqdm" if bar_class is None else f"{bar_class.__module__}.{bar_class.__qualname__}"
    return f"progress got unknown tqdm keyword argument(s): {', '.join(hints)}; {bar} accepts {', '.join(accepted)}"


def validate_timeout(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, got {type(value).__name__}")
    if not value > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {value!r}")
    return float(value)


def validate_retry_on(value: object) -> tuple[type[BaseException], ...]:
    types = value if isinstance(value, tuple) else (value,)
    for item in types:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise TypeError(f"retry_on must be an exception type or a tuple of them, got {item!r}")
    return types
