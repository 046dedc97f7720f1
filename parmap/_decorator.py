"""`@parallel`: a wrapt `FunctionWrapper` that keeps the function and adds map methods.

The decorated object *is* the function for every purpose (calls, name, docstring,
`inspect.signature`, `__wrapped__`, binding as a method) and gains `map`, `imap`,
`imap_unordered`, `starmap`, `map_async`, `starmap_async`, `aimap` and
`aimap_unordered`. It knows its `PoolConfig` and default `MapOptions`; the
work itself is done by the engine on the pool the registry hands out. Each map takes one
input per parameter, as the builtin `map` does; two or more are zipped by
`parmap._zipping` and run as a starmap, one is passed on untouched.

Typing: `ParallelFunction[P, R]` keeps the function's signature (`P`, a `ParamSpec`)
and result; the overloads type each map's inputs from it (up to three), `map(...,
stats=True)` as a `ResultList`, the binding of methods and classmethods (`__get__`),
and `async def` functions (`AsyncParallelFunction`: a call gives the coroutine, a map
the awaited values). All of it lives in annotations and `TYPE_CHECKING` blocks; what an
annotation names at run time exists there (`parmap._typing`), so `typing.get_type_hints`
works on 3.9 too.

An `async def` function is decorated the same way: its items are awaited on each worker's
own event loop, `concurrency` at once (see `parmap.backends._async_tasks`). A generator
function is refused: its items would come back as generator objects, which cannot travel.
"""

from __future__ import annotations

import importlib
import inspect
import os
import types
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypedDict, TypeVar, Union, overload

from . import _registry, _transport
from ._async_maps import AsyncMapIterator, AsyncSource
from ._chunking import CostEstimate
from ._config import INNER_THREADS_AUTO, POOL_OPTIONS, MapOptions, PoolConfig, validate_map_options
from ._engine import Job, StopIterationEscape, surfaced
from ._interrupts import counting_interrupts
from ._options import CALL_OPTIONS
from ._progress import make_progress
from ._result import AsyncResult
from ._scope import Resolver
from ._stats import RunStats
from ._typing import ParamSpec, Unpack
from ._zipping import zip_inputs
from .backends._protocol import AsyncCall
from .backends._worker import StarCall

if TYPE_CHECKING:
    from typing_extensions import Never

    class _FunctionWrapper:
        """What the type checker sees of wrapt's proxies, the same under wrapt 1 and 2.

        wrapt 1 ships no type information; this keeps `mypy --strict` (ours and our
        users') exact whichever wrapt is installed.
        """

        __wrapped__: Any
        __name__: str
        _self_parent: Any
        _self_instance: Any

        def __init__(self, wrapped: Any, wrapper: Callable[..., Any]) -> None: ...

    _BoundFunctionWrapper = _FunctionWrapper
else:
    from ._wrapt import proxy_classes

    # Not `from wrapt import ...`: that runs wrapt 2's whole `__init__` (see parmap._wrapt).
    _FunctionWrapper, _BoundFunctionWrapper = proxy_classes()

#: The decorated function's parameters and result: the decorated object keeps its signature.
P = ParamSpec("P")
R = TypeVar("R")
# In the typed surface only: a bound method's parameters, its instance, and the items of
# each input of a map over several inputs (typed like the builtin `map`, up to three).
P2 = ParamSpec("P2")
S = TypeVar("S")
T1 = TypeVar("T1")
T2 = TypeVar("T2")
T3 = TypeVar("T3")
#: What `aimap` reads: a plain or an async iterable.
_Input = Union[Iterable[T1], AsyncIterable[T1]]

if TYPE_CHECKING:
    A1_contra = TypeVar("A1_contra", contravariant=True)
    A2_contra = TypeVar("A2_contra", contravariant=True)
    A3_contra = TypeVar("A3_contra", contravariant=True)
    S_contra = TypeVar("S_contra", contravariant=True)
    R_co = TypeVar("R_co", covariant=True)

    # The typed surface asks things of `self` through callable protocols, never through a
    # ParamSpec's explicit parameters (`_MapMethods[[T1], R]`, `Concatenate[S, P2]`): mypy
    # solves neither (it infers `Never` items, and it ignores a Concatenate's first type),
    # while both checkers solve these. `_map_result` carries the maps' result type, which
    # for an `async def` function is the awaited value, not what a call returns.

    class _Takes1(Protocol[A1_contra, R_co]):
        """A function of one positional item: `map(xs)`."""

        def __call__(self, item: A1_contra, /) -> Any: ...
        @property
        def _map_result(self) -> R_co: ...

    class _Takes2(Protocol[A1_contra, A2_contra, R_co]):
        """A function of two positional items: `map(xs, ys)`."""

        def __call__(self, item: A1_contra, item2: A2_contra, /) -> Any: ...
        @property
        def _map_result(self) -> R_co: ...

    class _Takes3(Protocol[A1_contra, A2_contra, A3_contra, R_co]):
        """A function of three positional items: `map(xs, ys, zs)`."""

        def __call__(self, item: A1_contra, item2: A2_contra, item3: A3_contra, /) -> Any: ...
        @property
        def _map_result(self) -> R_co: ...

    class _ClassCall(Protocol[S_contra, P2, R_co]):
        """A function whose first parameter takes the class: a classmethod, bound to it."""

        def __call__(self, owner: type[S_contra], /, *args: P2.args, **kwargs: P2.kwargs) -> Any: ...
        @property
        def _map_result(self) -> R_co: ...

    class _MethodCall(Protocol[S_contra, P2, R_co]):
        """A function whose first parameter takes the instance: a method, bound to it."""

        def __call__(self, instance: S_contra, /, *args: P2.args, **kwargs: P2.kwargs) -> Any: ...
        @property
        def _map_result(self) -> R_co: ...


class _CallOverrides(TypedDict, total=False):
    """The per-call options but `stats` (which the typed `map` overloads take on their own)."""

    chunksize: Union[int, Literal["auto"]]
    progress: Union[bool, Mapping[str, Any]]
    timeout: Union[float, None]
    retries: int
    retry_on: Union[type[BaseException], tuple[type[BaseException], ...]]
    return_exceptions: bool
    max_tasks_per_worker: Union[int, None]
    max_in_flight: Union[int, None]
    seed: Union[int, None]
    checkpoint: Union[str, os.PathLike[str], None]
    checkpoint_mode: Literal["resume", "overwrite"]
    concurrency: int
    shared: Any


class MapOverrides(_CallOverrides, total=False):
    """Per-call options accepted by every map method (they override the decorator's)."""

    stats: bool


class ResultList(list[R]):
    """The list `map(..., stats=True)` returns: the results, plus the run's [`RunStats`][parmap.RunStats]."""

    stats: RunStats


class ParallelOptions(MapOverrides, total=False):
    """Options of `@parallel(...)`: the pool's, plus defaults for every call."""

    workers: Union[int, None]
    backend: Literal["process", "thread", "serial", "dask"]
    start_method: Union[Literal["fork", "spawn", "forkserver"], None]
    initializer: Union[Callable[..., object], None]
    initargs: tuple[Any, ...]
    max_worker_memory: Union[int, str, None]
    inner_threads: Union[int, Literal["auto"], None]
    address: Union[str, None]
    client: Any
    ship_modules: Sequence[Union[types.ModuleType, str]]


_BACKEND_KEYS = ("address", "client")
#: Every option of `parallel()` and `parmap.config()`: the pool's, then the job's.
OPTION_NAMES = (*POOL_OPTIONS, *CALL_OPTIONS)


def _split_settings(settings: Mapping[str, Any], where: str = "parallel()") -> tuple[PoolConfig, MapOptions]:
    """Validate decorator settings into the pool config and the default job options.

    Raises:
        TypeError: an unknown option (the message names `where` it was given) or a bad type.
        ValueError: an unusable value.
    """
    unknown = set(settings) - set(OPTION_NAMES)
    if unknown:
        from ._advice import unknown_decorator_options  # only on this error

        raise TypeError(unknown_decorator_options(unknown, OPTION_NAMES, where))
    backend_options = {key: settings[key] for key in _BACKEND_KEYS if settings.get(key) is not None}
    if settings.get("ship_modules") is not None:
        from ._shipping import validate_ship_modules  # only when given: it reads the interpreter's paths

        shipped = validate_ship_modules(settings["ship_modules"])
        # Only Dask's workers may lack the caller's files; the other backends ignore it (as
        # they ignore `start_method`), so a `config(ship_modules=...)` scope fits every map.
        if shipped and settings.get("backend") == "dask":
            backend_options["ship_modules"] = shipped
    config = PoolConfig.build(
        backend=settings.get("backend", "process"),
        workers=settings.get("workers"),
        start_method=settings.get("start_method"),
        initializer=settings.get("initializer"),
        initargs=settings.get("initargs", ()),
        backend_options=backend_options,
        max_worker_memory=settings.get("max_worker_memory"),
        inner_threads=settings.get("inner_threads", INNER_THREADS_AUTO),
    )
    if backend_options and config.backend != "dask":
        raise ValueError(f"{', '.join(backend_options)} only apply to backend='dask'")
    job_settings = {key: value for key, value in settings.items() if key in CALL_OPTIONS}
    return config, MapOptions(**validate_map_options(job_settings))


def _is_async(function: object) -> bool:
    """An `async def` function, method, `partial` of one, or object with an async `__call__`."""
    target = getattr(function, "__func__", function)  # staticmethod / classmethod
    call = type(target).__call__ if callable(target) and not inspect.isroutine(target) else None
    return inspect.iscoroutinefunction(target) or (call is not None and inspect.iscoroutinefunction(call))


def _refuse_generators(function: object) -> None:
    target = getattr(function, "__func__", function)
    if inspect.isasyncgenfunction(target):
        raise TypeError(
            "parallel() cannot run an async generator function: its items would return async "
            "generators, which cannot travel between processes; collect the values in an async "
            "def function (`return [x async for x in gen(item)]`) and decorate that"
        )
    if inspect.isgeneratorfunction(target):
        raise TypeError(
            "parallel() cannot run a generator function: its items would return generator "
            "objects, which cannot travel between processes; return a list instead "
            "(`return list(gen(item))`), or decorate a function that calls it"
        )


def _check_concurrency(options: MapOptions, is_async: bool, name: str) -> None:
    if options.concurrency > 1 and not is_async:
        raise ValueError(
            f"concurrency={options.concurrency} applies to async def tasks; {name} is a plain "
            "function, which runs one item at a time per worker (use more workers instead)"
        )


def _call_through(wrapped: Callable[..., Any], instance: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A plain call runs the function here, unchanged."""
    return wrapped(*args, **kwargs)


class _MapMethods(Generic[P, R]):
    """The map methods, shared by the wrapper and its bound (method) form.

    Each map takes one input per parameter of the function, as the builtin `map` does:
    `f.map(xs)` calls `f(x)`, `f.map(xs, ys)` calls `f(x, y)` and stops at the shortest
    input. The overloads type the items of up to three inputs from the function's parameters
    (more are accepted, typed `Any`), and `map(..., stats=True)` as a [ResultList][].
    """

    if TYPE_CHECKING:
        # A property, not an annotation: any annotation in the class body (even one never
        # run) gives the class an `__annotations__`, which would shadow the function's
        # that the proxy passes through.
        @property
        def __wrapped__(self) -> Callable[..., R]: ...

        @property
        def _map_result(self) -> R:
            """What each item gives in a map (the awaited value, for an `async def` function)."""
            ...

    def _settings(self) -> tuple[PoolConfig, MapOptions, str]:
        raise NotImplementedError

    def _owner(self) -> ParallelFunction[Any, R]:
        raise NotImplementedError

    def last_stats(self) -> Union[RunStats, None]:
        """The [`RunStats`][parmap.RunStats] of this function's most recent finished map, if any."""
        return self._owner()._self_last_stats

    @overload
    def map(
        self: _Takes1[T1, R], items: Iterable[T1], /, *, stats: Literal[True], **overrides: Unpack[_CallOverrides]
    ) -> ResultList[R]: ...

    @overload
    def map(self: _Takes1[T1, R], items: Iterable[T1], /, **overrides: Unpack[MapOverrides]) -> list[R]: ...

    @overload
    def map(
        self: _Takes2[T1, T2, R],
        items: Iterable[T1],
        items2: Iterable[T2],
        /,
        *,
        stats: Literal[True],
        **overrides: Unpack[_CallOverrides],
    ) -> ResultList[R]: ...

    @overload
    def map(
        self: _Takes2[T1, T2, R], items: Iterable[T1], items2: Iterable[T2], /, **overrides: Unpack[MapOverrides]
    ) -> list[R]: ...

    @overload
    def map(
        self: _Takes3[T1, T2, T3, R],
        items: Iterable[T1],
        items2: Iterable[T2],
        items3: Iterable[T3],
        /,
        *,
        stats: Literal[True],
        **overrides: Unpack[_CallOverrides],
    ) -> ResultList[R]: ...

    @overload
    def map(
        self: _Takes3[T1, T2, T3, R],
        items: Iterable[T1],
        items2: Iterable[T2],
        items3: Iterable[T3],
        /,
        **overrides: Unpack[MapOverrides],
    ) -> list[R]: ...

    @overload
    def map(
        self: _MapMethods[..., R],
        items: Iterable[Any],
        items2: Iterable[Any],
        items3: Iterable[Any],
        items4: Iterable[Any],
        /,
        *more: Iterable[Any],
        **overrides: Unpack[MapOverrides],
    ) -> list[R]: ...

    def map(self, items: Iterable[Any], /, *more: Iterable[Any], **overrides: Unpack[MapOverrides]) -> list[R]:
        """Run the function on every item in parallel; return the results in input order.

        With several inputs (`f.map(xs, ys)`), the function is called as `f(x, y)` with one
        item of each, stopping at the shortest input, as the builtin `map` does.

        Raises the exception of the first failing item in input order (its own type, with
        the worker's traceback as `__cause__`) unless `return_exceptions=True`; an
        exception of the input iterator is raised once the items read before it have run.

        Where the input is read: a list, tuple or range is sliced (several of them too);
        any other iterable is read in the calling thread, a chunk at a time, as `Pool.map`
        does (an SQLite cursor works). `map_async` reads it in a background thread, in a
        copy of the caller's `contextvars` context taken at the call.

        Raises:
            TypeError: an input is not iterable.
        """
        if more:
            return self._collect(self._zipped(items, more), overrides, star=True)
        return self._collect(items, overrides, star=False)

    def starmap(self, items: Iterable[Iterable[Any]], /, **overrides: Unpack[MapOverrides]) -> list[R]:
        """Like `map()`, calling `fn(*item)` for functions of several arguments."""
        return self._collect(items, overrides, star=True)

    @overload
    def imap(self: _Takes1[T1, R], items: Iterable[T1], /, **overrides: Unpack[MapOverrides]) -> Iterator[R]: ...

    @overload
    def imap(
        self: _Takes2[T1, T2, R], items: Iterable[T1], items2: Iterable[T2], /, **overrides: Unpack[MapOverrides]
    ) -> Iterator[R]: ...

    @overload
    def imap(
        self: _Takes3[T1, T2, T3, R],
        items: Iterable[T1],
        items2: Iterable[T2],
        items3: Iterable[T3],
        /,
        **overrides: Unpack[MapOverrides],
    ) -> Iterator[R]: ...

    @overload
    def imap(
        self: _MapMethods[..., R],
        items: Iterable[Any],
        items2: Iterable[Any],
        items3: Iterable[Any],
        items4: Iterable[Any],
        /,
        *more: Iterable[Any],
        **overrides: Unpack[MapOverrides],
    ) -> Iterator[R]: ...

    def imap(self, items: Iterable[Any], /, *more: Iterable[Any], **overrides: Unpack[MapOverrides]) -> Iterator[R]:
        """A lazy iterator of results in input order; reads the input a bounded window ahead.

        Several inputs are zipped as by [map][parmap.ParallelFunction.map], lazily: a
        generator is read only as far as the window needs.

        Every result before the first failing item is yielded before its exception is
        raised (as `Pool.imap`); an exception of the input iterator is raised after every
        result of the items read before it. Leaving the loop early (`break`) withdraws
        the outstanding work; a Ctrl-C in the loop's body also stops the running items.

        Where the input is read: a list, tuple or range is sliced; any other iterable is
        read in a background thread, in a copy of the caller's `contextvars` context
        taken when `imap` is called (decimal contexts, context variables), so results
        keep flowing while the input blocks; when the input stalls, the items read so far
        are sent at once. An input tied to the calling thread (an SQLite cursor) needs
        `map`, or a list.

        Raises:
            TypeError: an input is not iterable.
        """
        if more:
            return self._stream(self._zipped(items, more), overrides, ordered=True, star=True)
        return self._stream(items, overrides, ordered=True, star=False)

    @overload
    def imap_unordered(
        self: _Takes1[T1, R], items: Iterable[T1], /, **overrides: Unpack[MapOverrides]
    ) -> Iterator[R]: ...

    @overload
    def imap_unordered(
        self: _Takes2[T1, T2, R], items: Iterable[T1], items2: Iterable[T2], /, **overrides: Unpack[MapOverrides]
    ) -> Iterator[R]: ...

    @overload
    def imap_unordered(
        self: _Takes3[T1, T2, T3, R],
        items: Iterable[T1],
        items2: Iterable[T2],
        items3: Iterable[T3],
        /,
        **overrides: Unpack[MapOverrides],
    ) -> Iterator[R]: ...

    @overload
    def imap_unordered(
        self: _MapMethods[..., R],
        items: Iterable[Any],
        items2: Iterable[Any],
        items3: Iterable[Any],
        items4: Iterable[Any],
        /,
        *more: Iterable[Any],
        **overrides: Unpack[MapOverrides],
    ) -> Iterator[R]: ...

    def imap_unordered(
        self, items: Iterable[Any], /, *more: Iterable[Any], **overrides: Unpack[MapOverrides]
    ) -> Iterator[R]:
        """Like `imap()`, yielding results in the order they complete."""
        if more:
            return self._stream(self._zipped(items, more), overrides, ordered=False, star=True)
        return self._stream(items, overrides, ordered=False, star=False)

    @overload
    def map_async(  # pyright: ignore[reportOverlappingOverload]  # a ResultList is a list[R]
        self: _Takes1[T1, R],
        items: Iterable[T1],
        /,
        *,
        callback: Callable[[list[R]], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        stats: Literal[True],
        **overrides: Unpack[_CallOverrides],
    ) -> AsyncResult[ResultList[R]]: ...

    @overload
    def map_async(
        self: _Takes1[T1, R],
        items: Iterable[T1],
        /,
        *,
        callback: Callable[[list[R]], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        **overrides: Unpack[MapOverrides],
    ) -> AsyncResult[list[R]]: ...

    @overload
    def map_async(  # pyright: ignore[reportOverlappingOverload]  # a ResultList is a list[R]
        self: _Takes2[T1, T2, R],
        items: Iterable[T1],
        items2: Iterable[T2],
        /,
        *,
        callback: Callable[[list[R]], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        stats: Literal[True],
        **overrides: Unpack[_CallOverrides],
    ) -> AsyncResult[ResultList[R]]: ...

    @overload
    def map_async(
        self: _Takes2[T1, T2, R],
        items: Iterable[T1],
        items2: Iterable[T2],
        /,
        *,
        callback: Callable[[list[R]], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        **overrides: Unpack[MapOverrides],
    ) -> AsyncResult[list[R]]: ...

    @overload
    def map_async(  # pyright: ignore[reportOverlappingOverload]  # a ResultList is a list[R]
        self: _Takes3[T1, T2, T3, R],
        items: Iterable[T1],
        items2: Iterable[T2],
        items3: Iterable[T3],
        /,
        *,
        callback: Callable[[list[R]], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        stats: Literal[True],
        **overrides: Unpack[_CallOverrides],
    ) -> AsyncResult[ResultList[R]]: ...

    @overload
    def map_async(
        self: _Takes3[T1, T2, T3, R],
        items: Iterable[T1],
        items2: Iterable[T2],
        items3: Iterable[T3],
        /,
        *,
        callback: Callable[[list[R]], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        **overrides: Unpack[MapOverrides],
    ) -> AsyncResult[list[R]]: ...

    @overload
    def map_async(
        self: _MapMethods[..., R],
        items: Iterable[Any],
        items2: Iterable[Any],
        items3: Iterable[Any],
        items4: Iterable[Any],
        /,
        *more: Iterable[Any],
        callback: Callable[[list[R]], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        **overrides: Unpack[MapOverrides],
    ) -> AsyncResult[list[R]]: ...

    def map_async(
        self,
        items: Iterable[Any],
        /,
        *more: Iterable[Any],
        callback: Union[Callable[[list[R]], object], None] = None,
        error_callback: Union[Callable[[BaseException], object], None] = None,
        **overrides: Unpack[MapOverrides],
    ) -> AsyncResult[Any]:
        """Start `map()` in the background; return an [`AsyncResult`][parmap.AsyncResult] at once.

        The callbacks are keyword-only, since every positional argument is an input.

        Raises:
            TypeError: an input is not iterable.
        """
        star = bool(more)
        if star:
            items = self._zipped(items, more)
        job = self._prepare(items, overrides, ordered=True, star=star, read_here=False)
        return AsyncResult(lambda: self._run_to_list(*job), callback, error_callback, cancel=job[0].cancel)

    def starmap_async(
        self,
        items: Iterable[Iterable[Any]],
        /,
        callback: Union[Callable[[list[R]], object], None] = None,
        error_callback: Union[Callable[[BaseException], object], None] = None,
        **overrides: Unpack[MapOverrides],
    ) -> AsyncResult[list[R]]:
        """Start `starmap()` in the background; return an [`AsyncResult`][parmap.AsyncResult] at once."""
        job = self._prepare(items, overrides, ordered=True, star=True, read_here=False)
        return AsyncResult(lambda: self._run_to_list(*job), callback, error_callback, cancel=job[0].cancel)

    @overload
    def aimap(self: _Takes1[T1, R], items: _Input[T1], /, **overrides: Unpack[MapOverrides]) -> AsyncMapIterator[R]: ...

    @overload
    def aimap(
        self: _Takes2[T1, T2, R], items: _Input[T1], items2: _Input[T2], /, **overrides: Unpack[MapOverrides]
    ) -> AsyncMapIterator[R]: ...

    @overload
    def aimap(
        self: _Takes3[T1, T2, T3, R],
        items: _Input[T1],
        items2: _Input[T2],
        items3: _Input[T3],
        /,
        **overrides: Unpack[MapOverrides],
    ) -> AsyncMapIterator[R]: ...

    @overload
    def aimap(
        self: _MapMethods[..., R],
        items: _Input[Any],
        items2: _Input[Any],
        items3: _Input[Any],
        items4: _Input[Any],
        /,
        *more: _Input[Any],
        **overrides: Unpack[MapOverrides],
    ) -> AsyncMapIterator[R]: ...

    def aimap(
        self,
        items: Union[Iterable[Any], AsyncIterable[Any]],
        /,
        *more: Union[Iterable[Any], AsyncIterable[Any]],
        **overrides: Unpack[MapOverrides],
    ) -> AsyncMapIterator[R]:
        """An async iterator of results in input order: `async for r in f.aimap(items)`.

        The options and guarantees of [imap][parmap.ParallelFunction.imap], for asyncio
        code: the event loop never blocks on the job. `items` may be a plain iterable or an
        async iterable (an async generator); an async input is read on the caller's loop,
        never more than the job's window ahead. Leaving the loop early (`break`,
        `aclose()`, the task cancelled) cancels the job: its queued chunks are dropped and
        the workers running its items are killed and replaced, as by
        [AsyncResult.cancel][parmap.AsyncResult.cancel].

        Several inputs are zipped as by [map][parmap.ParallelFunction.map]; async and plain
        inputs may be mixed. Then every input is read on the caller's loop, one item of
        each per step, so a plain input mixed with async ones should not block (a list or a
        range, not a socket).

        Raises:
            TypeError: an input is neither iterable nor async iterable.
        """
        return self._stream_async(items, more, overrides, ordered=True)

    @overload
    def aimap_unordered(
        self: _Takes1[T1, R], items: _Input[T1], /, **overrides: Unpack[MapOverrides]
    ) -> AsyncMapIterator[R]: ...

    @overload
    def aimap_unordered(
        self: _Takes2[T1, T2, R], items: _Input[T1], items2: _Input[T2], /, **overrides: Unpack[MapOverrides]
    ) -> AsyncMapIterator[R]: ...

    @overload
    def aimap_unordered(
        self: _Takes3[T1, T2, T3, R],
        items: _Input[T1],
        items2: _Input[T2],
        items3: _Input[T3],
        /,
        **overrides: Unpack[MapOverrides],
    ) -> AsyncMapIterator[R]: ...

    @overload
    def aimap_unordered(
        self: _MapMethods[..., R],
        items: _Input[Any],
        items2: _Input[Any],
        items3: _Input[Any],
        items4: _Input[Any],
        /,
        *more: _Input[Any],
        **overrides: Unpack[MapOverrides],
    ) -> AsyncMapIterator[R]: ...

    def aimap_unordered(
        self,
        items: Union[Iterable[Any], AsyncIterable[Any]],
        /,
        *more: Union[Iterable[Any], AsyncIterable[Any]],
        **overrides: Unpack[MapOverrides],
    ) -> AsyncMapIterator[R]:
        """Like [aimap][parmap.ParallelFunction.aimap], yielding results in the order they complete."""
        return self._stream_async(items, more, overrides, ordered=False)

    # ------------------------------------------------------------------ plumbing

    def _prepare(
        self, items: Iterable[Any], overrides: Mapping[str, Any], *, ordered: bool, star: bool, read_here: bool
    ) -> tuple[Job, MapOptions, int | None]:
        config, defaults, bars_off = self._owner()._self_resolver.resolve()  # parmap.config(), PARMAP_*
        name = self._settings()[2]
        options = defaults.replace(overrides, label=name, function=self.__wrapped__)
        if bars_off and options.progress is not False:
            options = options.replace({"progress": False})
        running = _registry.prepare(config)  # before this map starts any thread (see Backend.prepare)
        is_async = self._owner()._self_is_async
        _check_concurrency(options, is_async, name)
        if not isinstance(items, AsyncSource):
            try:
                iter(items)
            except TypeError:
                raise TypeError(f"{name}() needs an iterable of items, got {type(items).__name__}") from None
        total = len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]
        function: Callable[[Any], Any] = StarCall(self.__wrapped__) if star else self.__wrapped__
        if is_async:
            function = AsyncCall(function)
        store = None
        if options.checkpoint is not None:
            from ._checkpoint import CheckpointStore

            store = CheckpointStore.open(
                options.checkpoint, function=function, length=total, mode=options.checkpoint_mode
            )
        owner = self._owner()

        def remember(stats: RunStats) -> None:
            owner._self_last_stats = stats
            if store is not None:
                store.close()

        job = Job(
            lambda: running if running is not None and running.usable else _registry.get_pool(config),
            function,
            items,
            options,
            ordered=ordered,
            store=store,
            profile=options.stats,
            on_finish=remember,
            cost=owner._self_costs.setdefault(star, CostEstimate()),
            read_here=read_here,
        )
        return job, options, total

    def _run_to_list(self, job: Job, options: MapOptions, total: int | None) -> list[R]:
        progress = make_progress(options.progress, total, self._settings()[2])
        job.progress = progress
        results: list[R] = []
        try:
            for batch in job.batches():
                results.extend(batch)  # a copy of the batch's pointers: ~4x faster than chaining items
        except StopIterationEscape as escaped:  # an item raised StopIteration: raise it as it is
            raise escaped.error from escaped.error.__cause__
        except KeyboardInterrupt:
            job.close(stop_running=True)  # Ctrl-C may land outside the job's own frame
            raise
        finally:
            progress.close()
        if options.stats:
            with_stats = ResultList(results)
            with_stats.stats = self.last_stats()  # type: ignore[assignment]
            return with_stats
        return results

    def _collect(self, items: Iterable[Any], overrides: Mapping[str, Any], *, star: bool) -> list[R]:
        """`map` and `starmap`: what fails is raised here, with parmap's frames left out."""
        try:
            return self._run_to_list(*self._prepare(items, overrides, ordered=True, star=star, read_here=True))
        except BaseException as error:
            failure = surfaced(error)
        # Raised outside the except block (no __context__ of its own); the local is dropped,
        # or a frame <-> traceback cycle would keep the items alive.
        try:
            raise failure
        finally:
            del failure

    def _stream(self, items: Iterable[Any], overrides: Mapping[str, Any], *, ordered: bool, star: bool) -> Iterator[R]:
        job, options, total = self._prepare(items, overrides, ordered=ordered, star=star, read_here=False)
        return _iterate(job, make_progress(options.progress, total, self._settings()[2]))

    def _stream_async(
        self, items: Any, more: tuple[Any, ...], overrides: Mapping[str, Any], *, ordered: bool
    ) -> AsyncMapIterator[R]:
        star = bool(more)
        if star:
            items = zip_inputs(self._settings()[2], (items, *more), allow_async=True)
        source = AsyncSource(items) if hasattr(items, "__aiter__") else None
        if source is None and not hasattr(items, "__iter__"):
            name = self._settings()[2]
            raise TypeError(f"{name}() needs an iterable or async iterable of items, got {type(items).__name__}")
        job, options, total = self._prepare(
            items if source is None else source, overrides, ordered=ordered, star=star, read_here=False
        )
        progress = make_progress(options.progress, total, self._settings()[2])
        job.progress = progress
        return AsyncMapIterator(job, progress, source)

    def _zipped(self, items: Iterable[Any], more: tuple[Iterable[Any], ...]) -> Any:
        """Several inputs as one input of argument tuples (see `parmap._zipping`)."""
        return zip_inputs(self._settings()[2], (items, *more))


def _iterate(job: Job, progress: Any) -> Iterator[Any]:
    """Results of `job` one by one; the bar closes however the loop ends.

    Each result is popped from its batch as it is yielded, so that nothing here keeps a
    reference to a result the caller has been given. When the loop is left, the job's own
    generator is closed at once (withdrawing its queued and prefetched chunks), and after a
    Ctrl-C since the loop began its running items are stopped too. In a child forked by the
    caller nothing is closed: the job and its bar are the parent's.
    """
    job.progress = progress
    batches = job.batches()
    # A Ctrl-C in the body of the caller's loop raises there, not in the job: the job only
    # sees its generator closed, as after a `break`. Counting interrupts tells them apart.
    with counting_interrupts() as interrupted:
        try:
            for batch in batches:
                batch.reverse()
                while batch:
                    yield batch.pop()
        except StopIterationEscape as escaped:  # an iterator cannot raise StopIteration: see its docs
            raise escaped.task_error() from escaped.error
        except GeneratorExit:
            raise
        except BaseException as error:
            if isinstance(error, KeyboardInterrupt):
                job.close(stop_running=True)
            failure = surfaced(error)
        else:
            return
        finally:
            if job.owned_here():
                if interrupted():
                    job.close(stop_running=True)
                batches.close()
                progress.close()
    # Raised outside the except block (no __context__ of its own), the local then dropped.
    try:
        raise failure
    finally:
        del failure


class _FunctionAnnotations(dict):  # type: ignore[type-arg]
    """`__annotations__` of the decorated object: the function's, and none of the class's.

    wrapt's proxy passes `__annotations__` through to the function with a property of its
    base class. But reading `__annotations__` on a subclass that defines none (`typing`,
    IPython and documentation tools do) makes Python 3.10+ store an empty dict in that
    class, which then shadows the property: `task.__annotations__` became `{}`. This
    descriptor sits in each of parmap's wrapper classes instead. Read on an instance it
    gives the function's annotations; read on the class it is itself, an empty dict, so
    `typing.get_type_hints(ParallelFunction)` still reads "no annotations".
    """

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        return self if instance is None else instance.__wrapped__.__annotations__

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__wrapped__.__annotations__ = value


class _BoundParallelFunction(_MapMethods[P, R], _BoundFunctionWrapper):
    """`obj.method` of a decorated method: maps run the method bound to `obj`."""

    __annotations__ = _FunctionAnnotations()

    if TYPE_CHECKING:

        def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    def _settings(self) -> tuple[PoolConfig, MapOptions, str]:
        return self._owner()._settings()

    def _owner(self) -> ParallelFunction[P, R]:
        parent: ParallelFunction[P, R] = self._self_parent
        return parent

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return (getattr, (self._self_instance, self.__name__))


class ParallelFunction(_MapMethods[P, R], _FunctionWrapper):
    """A function decorated with [`parallel()`][parmap.parallel]: callable as before, plus the map methods.

    Generic in the function's parameters and result, as type checkers see it:
    `ParallelFunction[[int], float]` for `def halve(value: int) -> float`, whose calls are
    checked against `(value: int)` and whose `map` gives a `list[float]`.
    """

    __bound_function_wrapper__ = _BoundParallelFunction
    __annotations__ = _FunctionAnnotations()

    def __init__(self, function: Callable[..., R], settings: Mapping[str, Any]) -> None:
        _refuse_generators(function)
        config, options = _split_settings(settings)
        is_async = _is_async(function)
        super().__init__(function, _call_through)
        self._self_is_async = is_async
        self._self_config = config
        self._self_options = options
        self._self_settings = dict(settings)
        self._self_resolver = Resolver(self._self_settings, config, options)
        self._self_last_stats: Union[RunStats, None] = None
        self._self_costs: dict[bool, CostEstimate] = {}  # per calling convention (map / starmap)
        target = getattr(function, "__func__", function)  # staticmethod / classmethod
        self._self_label = str(getattr(target, "__qualname__", None) or getattr(target, "__name__", "task"))
        _check_concurrency(options, is_async, self._self_label)

    def _settings(self) -> tuple[PoolConfig, MapOptions, str]:
        return self._self_config, self._self_options, self._self_label

    def _owner(self) -> ParallelFunction[P, R]:
        return self

    if TYPE_CHECKING:

        def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

        # How a type checker binds it: a classmethod (its first parameter takes the class)
        # to the class, a method to the instance, and anything else (the class's own
        # attribute, a staticmethod) not at all.
        @overload
        def __get__(
            self: _ClassCall[S, P2, R], instance: Union[S, None], owner: type[S]
        ) -> _BoundParallelFunction[P2, R]: ...

        @overload
        def __get__(self, instance: None, owner: Union[type[Any], None] = None) -> ParallelFunction[P, R]: ...

        @overload
        def __get__(
            self: _MethodCall[S, P2, R], instance: S, owner: Union[type[Any], None] = None
        ) -> _BoundParallelFunction[P2, R]: ...

        @overload
        def __get__(self, instance: object, owner: Union[type[Any], None] = None) -> ParallelFunction[P, R]: ...

        def __get__(self, instance: object, owner: Union[type[Any], None] = None) -> Any:
            """A method's binding: `obj.method` is the method bound to `obj` (wrapt's at run time)."""

    else:

        def __call__(self, *args, **kwargs):
            return self.__wrapped__(*args, **kwargs)  # the function itself, without wrapt's dispatch

    def __copy__(self) -> ParallelFunction[P, R]:
        return self  # as `copy.copy` does for a function

    def __deepcopy__(self, memo: dict[int, Any]) -> ParallelFunction[P, R]:
        return self

    @property
    def __dict__(self) -> dict[str, Any]:  # type: ignore[override]
        """The function's attributes, as for the function itself.

        Pickling libraries that take the decorated object for a plain function (cloudpickle
        used directly, outside parmap) read it; wrapt 1's proxy would refuse them.
        """
        attributes: dict[str, Any] = self.__wrapped__.__dict__
        return attributes

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        """Pickle by reference when importable (a module-level function), else by value."""
        function = self.__wrapped__
        module = getattr(function, "__module__", None)
        qualname = getattr(function, "__qualname__", "")
        if module and qualname and "<" not in qualname:
            try:
                if _import_by_name(module, qualname) is self:
                    return (_import_by_name, (module, qualname))
            except (ImportError, AttributeError):
                pass
        return (_rebuild, (function, self._self_settings))

    def __repr__(self) -> str:
        return f"<parallel {self._self_label}>"


_transport.PICKLED_BY_OWN_REDUCE.update((ParallelFunction, _BoundParallelFunction))

if TYPE_CHECKING:

    class AsyncParallelFunction(ParallelFunction[P, R]):
        """What a type checker sees of a decorated `async def` function (at run time it is a
        [ParallelFunction][parmap.ParallelFunction]): a plain call gives the coroutine, as
        before, and the maps give the awaited values (`map` is a `list[R]`)."""

        def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]: ...  # type: ignore[override]

        @overload
        def __get__(
            self: _ClassCall[S, P2, R], instance: Union[S, None], owner: type[S]
        ) -> _BoundAsyncParallelFunction[P2, R]: ...

        @overload
        def __get__(self, instance: None, owner: Union[type[Any], None] = None) -> AsyncParallelFunction[P, R]: ...

        @overload
        def __get__(
            self: _MethodCall[S, P2, R], instance: S, owner: Union[type[Any], None] = None
        ) -> _BoundAsyncParallelFunction[P2, R]: ...

        @overload
        def __get__(self, instance: object, owner: Union[type[Any], None] = None) -> AsyncParallelFunction[P, R]: ...

        def __get__(  # pyright: ignore[reportIncompatibleMethodOverride]  # the same bindings, async
            self, instance: object, owner: Union[type[Any], None] = None
        ) -> Any: ...

    class _BoundAsyncParallelFunction(_BoundParallelFunction[P, R]):
        """`obj.method` of a decorated `async def` method: a call gives the coroutine."""

        def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]: ...  # type: ignore[override]


def _import_by_name(module: str, qualname: str) -> Any:
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def _rebuild(function: Callable[..., Any], settings: Mapping[str, Any]) -> ParallelFunction[Any, Any]:
    return ParallelFunction(function, settings)


class _Decorator:
    """What `parallel(...)` returns when called with options only."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        _split_settings(settings)  # fail at decoration time, not at the first call
        self._settings = settings

    @overload
    def __call__(self, function: Callable[[Any], Never], /) -> ParallelFunction[[Any], Any]: ...  # type: ignore[overload-overlap]  # pyright: ignore[reportOverlappingOverload]

    @overload
    def __call__(self, function: Callable[P, Coroutine[Any, Any, R]], /) -> AsyncParallelFunction[P, R]: ...

    @overload
    def __call__(self, function: Callable[P, R], /) -> ParallelFunction[P, R]: ...

    def __call__(self, function: Callable[..., Any], /) -> ParallelFunction[Any, Any]:
        decorated: ParallelFunction[Any, Any] = parallel(function, **self._settings)
        return decorated


# The overloads, in the order a type checker tries them: a lambda (whose result a checker
# cannot know: `Never` is what an unannotated `lambda x: ...` returns to it, and its item
# is then `Any`, not unknown), `async def` functions, any other callable, and the
# options-only form. Type checkers see `@staticmethod` and `@classmethod` below `@parallel`
# as the plain function (they special-case both), so `__get__` tells them apart.
@overload
def parallel(  # type: ignore[overload-overlap]
    function: Callable[[Any], Never], /, **settings: Unpack[ParallelOptions]
) -> ParallelFunction[[Any], Any]: ...  # pyright: ignore[reportOverlappingOverload]


@overload
def parallel(
    function: Callable[P, Coroutine[Any, Any, R]], /, **settings: Unpack[ParallelOptions]
) -> AsyncParallelFunction[P, R]: ...


@overload
def parallel(function: Callable[P, R], /, **settings: Unpack[ParallelOptions]) -> ParallelFunction[P, R]: ...


@overload
def parallel(function: None = None, /, **settings: Unpack[ParallelOptions]) -> _Decorator: ...


def parallel(
    function: Union[Callable[..., Any], None] = None, /, **settings: Unpack[ParallelOptions]
) -> Union[ParallelFunction[Any, Any], _Decorator]:
    """Make `function` runnable in parallel: `@parallel`, `@parallel(...)` or `parallel(fn, ...)`.

    The decorated function is still called as before, in this process, and gains the map
    methods of a [`ParallelFunction`][parmap.ParallelFunction] (`map`, `imap`,
    `imap_unordered`, `starmap`, `map_async`, `starmap_async`, `aimap`, `aimap_unordered`).
    Every function with the same pool options shares one pool, created on first use.

    The options are keyword-only, each described in the [option tables](#pool-options): the
    pool options, which pick the shared pool (`workers`, `backend`, `start_method`,
    `initializer`, `initargs`, `max_worker_memory`, `inner_threads`, `address`, `client`,
    `ship_modules`), and the defaults of the per-call options, which every map method also
    takes (`chunksize`, `progress`, `timeout`, `retries`, `retry_on`, `return_exceptions`,
    `max_tasks_per_worker`, `max_in_flight`, `seed`, `checkpoint`, `checkpoint_mode`,
    `stats`, `concurrency`, `shared`).

    Args:
        function: the function, method, `functools.partial` or callable object to run in
            parallel (plain or `async def`); left out in the `@parallel(...)` form, which
            returns the decorator.

    Returns:
        ParallelFunction: the decorated function; without `function`, a decorator that
            makes one.

    Raises:
        TypeError: an option has the wrong type, `function` is not callable, or it is a
            generator or async generator function.
        ValueError: an option has an unusable value (`concurrency` > 1 for a plain function).
    """
    if function is None:
        return _Decorator(settings)
    if not (callable(function) or isinstance(function, (staticmethod, classmethod))):
        raise TypeError(f"parallel() needs a callable, got {type(function).__name__}")
    return ParallelFunction(function, settings)
