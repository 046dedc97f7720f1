"""Settings from outside the decorator: `parmap.config(...)` scopes and `PARMAP_*` variables.

A library decorates its functions; the program that uses the library decides how they run.
Every map resolves its settings from five layers, the later winning key by key:

| layer | set by | holds |
|---|---|---|
| built-in default | parmap | every option |
| decorator | `@parallel(...)` | pool and job options |
| environment | `PARMAP_WORKERS`, `PARMAP_BACKEND`, `PARMAP_START_METHOD`, `PARMAP_PROGRESS` | those four |
| `parmap.config(...)` | the caller, innermost scope last | pool and job options |
| per call | `f.map(items, ...)` keywords | job options |

Two rules make a layer that picks a backend mean what it says:

* Options that belong to one backend (see [BACKEND_ONLY][]) set in a lower layer are dropped
  when a higher layer picks a backend they do not apply to: `config(backend="serial")`
  around a function decorated with `backend="dask", address=...` runs it serially.
* In `config()`, `address=` or `client=` without `backend=` means `backend="dask"`.

`PARMAP_PROGRESS=0` is the exception to the order: it turns every bar off, per-call
`progress=True` included, for CI logs. `PARMAP_PROGRESS=1` turns bars on at the
environment's place in the order.

Scopes live in a [contextvars.ContextVar][]: nested `with` blocks stack, each thread starts
with none (a thread's context is its own), each asyncio task sees the scopes of the code that
created it, and `map_async`, `imap` and `aimap` read them when they are called.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from . import _options

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._config import MapOptions, PoolConfig
    from ._decorator import ParallelOptions

F = TypeVar("F", bound=Callable[..., Any])

#: Options that apply to some backends only, and those backends (from [parmap._options][]).
#: A lower layer's value is dropped when a higher layer picks a backend outside its set.
BACKEND_ONLY: Mapping[str, tuple[str, ...]] = {
    option.name: option.backends for option in _options.OPTIONS if option.backends is not None
}

#: The environment variables and the option each sets (from [parmap._options][]).
ENVIRONMENT_VARIABLES: Mapping[str, str] = {
    option.environment[0]: option.name for option in _options.OPTIONS if option.environment is not None
}

_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS = frozenset({"0", "false", "no", "off"})

#: How many resolved settings each decorated function keeps: a program alternates between
#: few scopes (a handful of `config()` blocks, one environment).
RESOLVED_KEPT = 8


class Layer:
    """One layer's settings, as given (validated), and where they came from (for errors).

    A plain class (compared and hashed by identity), not a dataclass: it is built at
    import, where a dataclass would cost about a millisecond of code generation.
    """

    __slots__ = ("bars_off", "settings", "source")

    def __init__(self, settings: Mapping[str, Any], source: str, bars_off: bool = False) -> None:
        self.settings = settings
        self.source = source
        #: `PARMAP_PROGRESS=0`: no bar, whatever the call says.
        self.bars_off = bars_off


_scopes: contextvars.ContextVar[tuple[Layer, ...]] = contextvars.ContextVar("parmap_config", default=())


class config(contextlib.ContextDecorator):  # lower case: used like a function, `with parmap.config(...)`
    """Settings for every decorated function called inside: `with parmap.config(workers=2): ...`.

    Takes every option of [parallel][parmap.parallel], pool options (`workers`, `backend`,
    ...) and per-call options (`progress`, `chunksize`, `timeout`, ...) alike: the
    [option tables](#pool-options) list them all. Inside the block, every map of every
    decorated function (yours and those of the libraries you call) uses them unless the
    call passes its own. The order, each winning
    over the next: per-call keyword, innermost `config()`, environment (`PARMAP_*`),
    decorator, built-in default.

    ```python
    import parmap

    # Debug a library's parallel code in one process:
    with parmap.config(backend="serial"):
        ...
    with parmap.config(workers=2, progress=False):
        ...
    ```

    Also a decorator: `@parmap.config(workers=2)` runs the function (plain or `async def`)
    inside the scope. Scopes nest, and each thread and asyncio task sees its own (a new
    thread starts with none); `map_async`, `imap` and `aimap` take the scope in force when
    they are called. `address=` or `client=` without `backend=` selects `backend="dask"`; a
    backend picked here drops the options of another backend set by the decorator or the
    environment (`address=` under `backend="serial"`).

    Raises:
        TypeError: an unknown option, or an option of the wrong type.
        ValueError: an option with an unusable value.
    """

    def __init__(self, **settings: Unpack[ParallelOptions]) -> None:
        given: dict[str, Any] = dict(settings)
        if "backend" not in given and any(given.get(key) is not None for key in ("address", "client")):
            given["backend"] = "dask"
        _validate(given, "config()")
        self._layer = Layer(given, "parmap.config()")

    def __enter__(self) -> config:
        _scopes.set((*_scopes.get(), self._layer))
        return self

    def __exit__(self, *exc_info: object) -> None:
        stack = _scopes.get()
        # The last entry of this scope: entered and left in the same context, so it is there
        # (a `with` block); a scope left out of order still removes only itself.
        for position in range(len(stack) - 1, -1, -1):
            if stack[position] is self._layer:
                _scopes.set(stack[:position] + stack[position + 1 :])
                return

    def __call__(self, function: F) -> F:
        """Run `function` inside this scope (an `async def` one for the whole of its await)."""
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def scoped(*args: Any, **kwargs: Any) -> Any:
                with self:
                    return await function(*args, **kwargs)

            return scoped  # type: ignore[return-value]
        return super().__call__(function)

    def __repr__(self) -> str:
        options = ", ".join(f"{key}={value!r}" for key, value in self._layer.settings.items())
        return f"parmap.config({options})"


def _validate(settings: Mapping[str, Any], where: str) -> None:
    """Check `settings` as the decorator would, naming `where` in an unknown-option error."""
    from . import _decorator

    _decorator._split_settings(settings, where)


@functools.lru_cache(maxsize=16)
def _environment_layer(raw: tuple[str | None, ...]) -> Layer | None:
    """The layer the `PARMAP_*` variables make, from their raw values (cached by them).

    Raises:
        ValueError: a variable's value is unusable; the message names the variable.
    """
    settings: dict[str, Any] = {}
    bars_off = False
    for (variable, option), value in zip(ENVIRONMENT_VARIABLES.items(), raw):
        if value is None or not value.strip():
            continue
        text = value.strip()
        if option == "workers":
            try:
                settings[option] = int(text)
            except ValueError:
                raise ValueError(f"{variable} must be an int >= 1, got {value!r}") from None
        elif option == "progress":
            word = text.lower()
            if word not in _TRUE_WORDS | _FALSE_WORDS:
                raise ValueError(f"{variable} must be 0 (every bar off) or 1 (bars on), got {value!r}")
            bars_off = word in _FALSE_WORDS
            settings[option] = not bars_off
        else:
            settings[option] = text
        try:
            _validate({option: settings[option]}, variable)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{variable}={value!r} is not usable: {error}") from None
    if not settings:
        return None
    return Layer(settings, "environment", bars_off=bars_off)


def _layers() -> tuple[Layer, ...]:
    """The layers above the decorator in force here: the environment's, then the scopes."""
    environment = _environment_layer(tuple(os.environ.get(variable) for variable in ENVIRONMENT_VARIABLES))
    scopes = _scopes.get()
    return scopes if environment is None else (environment, *scopes)


def merge(decorator: Mapping[str, Any], layers: tuple[Layer, ...]) -> dict[str, Any]:
    """The decorator's settings with `layers` applied in order (see the module's rules)."""
    merged = dict(decorator)
    for layer in layers:
        backend = layer.settings.get("backend")
        if backend is not None:
            for key, backends in BACKEND_ONLY.items():
                if backend not in backends and key not in layer.settings:
                    merged.pop(key, None)
        merged.update(layer.settings)
    return merged


class Resolver:
    """A decorated function's settings as the layers in force make them, cached.

    The decorator's own [PoolConfig][parmap._config.PoolConfig] and
    [MapOptions][parmap._config.MapOptions] are used as they are when no layer is in force
    (the common case costs four `os.environ` reads); otherwise the merged settings are
    validated once per combination of layers, and the last few are kept.
    """

    def __init__(self, decorator: Mapping[str, Any], config: PoolConfig, options: MapOptions) -> None:
        self._decorator = decorator
        self._own = (config, options)
        self._resolved: dict[tuple[int, ...], tuple[tuple[Layer, ...], tuple[PoolConfig, MapOptions]]] = {}
        self._lock = threading.Lock()  # maps of one function may start in several threads

    def resolve(self) -> tuple[PoolConfig, MapOptions, bool]:
        """The pool config, the default job options, and whether every bar is off.

        Raises:
            TypeError, ValueError: the merged settings do not fit together (a decorator's
                `max_worker_memory` under `config(backend="thread")` set in the same scope).
        """
        layers = _layers()
        if not layers:
            return (*self._own, False)
        bars_off = any(layer.bars_off for layer in layers)
        key = tuple(id(layer) for layer in layers)
        with self._lock:
            found = self._resolved.get(key)
        # The entry holds its layers, so their ids cannot be reused while it is kept.
        if found is not None and all(a is b for a, b in zip(found[0], layers)):
            return (*found[1], bars_off)
        from . import _decorator

        resolved = _decorator._split_settings(merge(self._decorator, layers))
        with self._lock:
            if len(self._resolved) >= RESOLVED_KEPT:
                self._resolved.pop(next(iter(self._resolved)))
            self._resolved[key] = (layers, resolved)
        return (*resolved, bars_off)
