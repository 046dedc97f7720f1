"""``@parallel``: a wrapt ``FunctionWrapper`` that keeps the function and adds map methods.

The decorated object *is* the function for every purpose (calls, name, docstring,
``inspect.signature``, ``__wrapped__``, binding as a method) and gains ``map``, ``imap``,
``imap_unordered``, ``starmap``, ``map_async``, ``starmap_async``, ``aimap`` and
``aimap_unordered``. It knows its :class:`PoolConfig` and default :class:`MapOptions`; the
work itself is done by the engine on the pool the registry hands out.

An ``async def`` function is decorated the same way: its items are awaited on each worker's
own event loop, ``concurrency`` at once (see `parmap.backends._async_tasks`). A generator
function is refused: its items would come back as generator objects, which cannot travel.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, Literal, TypedDict, TypeVar, Union, overload

from . import _registry, _transport
from ._async_maps import AsyncMapIterator, AsyncSource
from ._chunking import CostEstimate
from ._config import MapOptions, PoolConfig, validate_map_options
from ._engine import Job, StopIterationEscape, surfaced
from ._interrupts import counting_interrupts
from ._progress import make_progress
from ._result import AsyncResult
from ._stats import RunStats
from .backends._protocol import AsyncCall
from .backends._worker import StarCall

if TYPE_CHECKING:
    from typing_extensions import Unpack

    class _FunctionWrapper:
        """What the type checker sees of wrapt's proxies, the same under wrapt 1 and 2.

        wrapt 1 ships no type information; this keeps ``mypy --strict`` (ours and our
        users') exact whichever wrapt is installed.
        """

        __wrapped__: Any
        __name__: str
        _self_parent: Any
        _self_instance: Any

        def __init__(self, wrapped: Any, wrapper: Callable[..., Any]) -> None: ...

    _BoundFunctionWrapper = _FunctionWrapper
else:
    from wrapt import BoundFunctionWrapper as _BoundFunctionWrapper
    from wrapt import FunctionWrapper as _FunctionWrapper

T = TypeVar("T")
R = TypeVar("R")


class MapOverrides(TypedDict, total=False):
    """Per-call options accepted by every map method (they override the decorator's)."""

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
    stats: bool
    concurrency: int
    shared: Any


class ResultList(list[R]):
    """The list ``map(..., stats=True)`` returns: the results, plus the run's :class:`RunStats`."""

    stats: RunStats


class ParallelOptions(MapOverrides, total=False):
    """Options of ``@parallel(...)``: the pool's, plus defaults for every call."""

    workers: Union[int, None]
    backend: Literal["process", "thread", "serial", "dask"]
    start_method: Union[Literal["fork", "spawn", "forkserver"], None]
    initializer: Union[Callable[..., object], None]
    initargs: tuple[Any, ...]
    max_worker_memory: Union[int, str, None]
    address: Union[str, None]
    client: Any


_POOL_KEYS = ("workers", "backend", "start_method", "initializer", "initargs", "max_worker_memory")
_BACKEND_KEYS = ("address", "client")


def _split_settings(settings: Mapping[str, Any]) -> tuple[PoolConfig, MapOptions]:
    """Validate decorator settings into the pool config and the default job options."""
    unknown = set(settings) - set(_POOL_KEYS) - set(_BACKEND_KEYS) - set(MapOverrides.__annotations__)
    if unknown:
        raise TypeError(f"parallel() got unexpected option(s): {', '.join(sorted(unknown))}")
    backend_options = {key: settings[key] for key in _BACKEND_KEYS if settings.get(key) is not None}
    config = PoolConfig.build(
        backend=settings.get("backend", "process"),
        workers=settings.get("workers"),
        start_method=settings.get("start_method"),
        initializer=settings.get("initializer"),
        initargs=settings.get("initargs", ()),
        backend_options=backend_options,
        max_worker_memory=settings.get("max_worker_memory"),
    )
    if backend_options and config.backend != "dask":
        raise ValueError(f"{', '.join(backend_options)} only apply to backend='dask'")
    job_settings = {key: value for key, value in settings.items() if key in MapOverrides.__annotations__}
    return config, MapOptions(**validate_map_options(job_settings))


def _is_async(function: object) -> bool:
    """An ``async def`` function, method, ``partial`` of one, or object with an async ``__call__``."""
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


class _MapMethods(Generic[T, R]):
    """The map methods, shared by the wrapper and its bound (method) form."""

    __wrapped__: Callable[..., R]

    def _settings(self) -> tuple[PoolConfig, MapOptions, str]:
        raise NotImplementedError

    def _owner(self) -> ParallelFunction[T, R]:
        raise NotImplementedError

    def last_stats(self) -> RunStats | None:
        """The :class:`RunStats` of this function's most recent finished map, if any."""
        return self._owner()._self_last_stats

    def map(self, items: Iterable[T], **overrides: Unpack[MapOverrides]) -> list[R]:
        """Run the function on every item in parallel; return the results in input order.

        Raises the exception of the first failing item in input order (its own type, with
        the worker's traceback as ``__cause__``) unless ``return_exceptions=True``; an
        exception of the input iterator is raised once the items read before it have run.

        Where the input is read: a list, tuple or range is sliced; any other iterable is
        read in the calling thread, a chunk at a time, as ``Pool.map`` does (an SQLite
        cursor works). ``map_async`` reads it in a background thread, in a copy of the
        caller's ``contextvars`` context taken at the call.
        """
        return self._collect(items, overrides, star=False)

    def starmap(self, items: Iterable[Iterable[Any]], **overrides: Unpack[MapOverrides]) -> list[R]:
        """Like :meth:`map`, calling ``fn(*item)`` for functions of several arguments."""
        return self._collect(items, overrides, star=True)

    def imap(self, items: Iterable[T], **overrides: Unpack[MapOverrides]) -> Iterator[R]:
        """A lazy iterator of results in input order; reads the input a bounded window ahead.

        Every result before the first failing item is yielded before its exception is
        raised (as ``Pool.imap``); an exception of the input iterator is raised after every
        result of the items read before it. Leaving the loop early (``break``) withdraws
        the outstanding work; a Ctrl-C in the loop's body also stops the running items.

        Where the input is read: a list, tuple or range is sliced; any other iterable is
        read in a background thread, in a copy of the caller's ``contextvars`` context
        taken when ``imap`` is called (decimal contexts, context variables), so results
        keep flowing while the input blocks; when the input stalls, the items read so far
        are sent at once. An input tied to the calling thread (an SQLite cursor) needs
        ``map``, or a list.
        """
        return self._stream(items, overrides, ordered=True, star=False)

    def imap_unordered(self, items: Iterable[T], **overrides: Unpack[MapOverrides]) -> Iterator[R]:
        """Like :meth:`imap`, yielding results in the order they complete."""
        return self._stream(items, overrides, ordered=False, star=False)

    def map_async(
        self,
        items: Iterable[T],
        callback: Callable[[list[R]], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        **overrides: Unpack[MapOverrides],
    ) -> AsyncResult[list[R]]:
        """Start :meth:`map` in the background; return an :class:`AsyncResult` at once."""
        job = self._prepare(items, overrides, ordered=True, star=False, read_here=False)
        return AsyncResult(lambda: self._run_to_list(*job), callback, error_callback, cancel=job[0].cancel)

    def starmap_async(
        self,
        items: Iterable[Iterable[Any]],
        callback: Callable[[list[R]], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        **overrides: Unpack[MapOverrides],
    ) -> AsyncResult[list[R]]:
        """Start :meth:`starmap` in the background; return an :class:`AsyncResult` at once."""
        job = self._prepare(items, overrides, ordered=True, star=True, read_here=False)
        return AsyncResult(lambda: self._run_to_list(*job), callback, error_callback, cancel=job[0].cancel)

    def aimap(self, items: Iterable[T] | AsyncIterable[T], **overrides: Unpack[MapOverrides]) -> AsyncMapIterator[R]:
        """An async iterator of results in input order: `async for r in f.aimap(items)`.

        The options and guarantees of [imap][parmap.ParallelFunction.imap], for asyncio
        code: the event loop never blocks on the job. `items` may be a plain iterable or an
        async iterable (an async generator); an async input is read on the caller's loop,
        never more than the job's window ahead. Leaving the loop early (`break`,
        `aclose()`, the task cancelled) cancels the job: its queued chunks are dropped and
        the workers running its items are killed and replaced, as by
        [AsyncResult.cancel][parmap.AsyncResult.cancel].

        Raises:
            TypeError: `items` is neither iterable nor async iterable.
        """
        return self._stream_async(items, overrides, ordered=True)

    def aimap_unordered(
        self, items: Iterable[T] | AsyncIterable[T], **overrides: Unpack[MapOverrides]
    ) -> AsyncMapIterator[R]:
        """Like [aimap][parmap.ParallelFunction.aimap], yielding results in the order they complete."""
        return self._stream_async(items, overrides, ordered=False)

    # ------------------------------------------------------------------ plumbing

    def _prepare(
        self, items: Iterable[Any], overrides: Mapping[str, Any], *, ordered: bool, star: bool, read_here: bool
    ) -> tuple[Job, MapOptions, int | None]:
        config, defaults, name = self._settings()
        options = defaults.replace(overrides)
        _registry.prepare(config)  # before this map starts any thread (see Backend.prepare)
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
            lambda: _registry.get_pool(config),
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

    def _stream_async(self, items: Any, overrides: Mapping[str, Any], *, ordered: bool) -> AsyncMapIterator[R]:
        source = AsyncSource(items) if hasattr(items, "__aiter__") else None
        if source is None and not hasattr(items, "__iter__"):
            name = self._settings()[2]
            raise TypeError(f"{name}() needs an iterable or async iterable of items, got {type(items).__name__}")
        job, options, total = self._prepare(
            items if source is None else source, overrides, ordered=ordered, star=False, read_here=False
        )
        progress = make_progress(options.progress, total, self._settings()[2])
        job.progress = progress
        return AsyncMapIterator(job, progress, source)


def _iterate(job: Job, progress: Any) -> Iterator[Any]:
    """Results of ``job`` one by one; the bar closes however the loop ends.

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


class _BoundParallelFunction(_MapMethods[T, R], _BoundFunctionWrapper):
    """``obj.method`` of a decorated method: maps run the method bound to ``obj``."""

    def _settings(self) -> tuple[PoolConfig, MapOptions, str]:
        return self._owner()._settings()

    def _owner(self) -> ParallelFunction[T, R]:
        parent: ParallelFunction[T, R] = self._self_parent
        return parent

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return (getattr, (self._self_instance, self.__name__))


class ParallelFunction(_MapMethods[T, R], _FunctionWrapper):
    """A function decorated with :func:`parallel`: callable as before, plus the map methods."""

    __bound_function_wrapper__ = _BoundParallelFunction

    def __init__(self, function: Callable[..., R], settings: Mapping[str, Any]) -> None:
        _refuse_generators(function)
        config, options = _split_settings(settings)
        is_async = _is_async(function)
        super().__init__(function, _call_through)
        self._self_is_async = is_async
        self._self_config = config
        self._self_options = options
        self._self_settings = dict(settings)
        self._self_last_stats: RunStats | None = None
        self._self_costs: dict[bool, CostEstimate] = {}  # per calling convention (map / starmap)
        target = getattr(function, "__func__", function)  # staticmethod / classmethod
        self._self_label = str(getattr(target, "__qualname__", None) or getattr(target, "__name__", "task"))
        _check_concurrency(options, is_async, self._self_label)

    def _settings(self) -> tuple[PoolConfig, MapOptions, str]:
        return self._self_config, self._self_options, self._self_label

    def _owner(self) -> ParallelFunction[T, R]:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        return self.__wrapped__(*args, **kwargs)

    def __copy__(self) -> ParallelFunction[T, R]:
        return self  # as ``copy.copy`` does for a function

    def __deepcopy__(self, memo: dict[int, Any]) -> ParallelFunction[T, R]:
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

    class AsyncParallelFunction(ParallelFunction[T, R]):
        """What a type checker sees of a decorated `async def` function (at run time it is a
        [ParallelFunction][parmap.ParallelFunction]): a plain call gives the coroutine, as
        before, and the maps give the awaited values (`map` is a `list[R]`)."""

        def __call__(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, R]: ...  # type: ignore[override]


def _import_by_name(module: str, qualname: str) -> Any:
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def _rebuild(function: Callable[..., Any], settings: Mapping[str, Any]) -> ParallelFunction[Any, Any]:
    return ParallelFunction(function, settings)


class _Decorator:
    """What ``parallel(...)`` returns when called with options only."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        _split_settings(settings)  # fail at decoration time, not at the first call
        self._settings = settings

    @overload
    def __call__(self, function: Callable[[T], Coroutine[Any, Any, R]], /) -> AsyncParallelFunction[T, R]: ...

    @overload
    def __call__(self, function: Callable[..., Coroutine[Any, Any, R]], /) -> AsyncParallelFunction[Any, R]: ...

    @overload
    def __call__(self, function: Callable[[T], R], /) -> ParallelFunction[T, R]: ...

    @overload
    def __call__(self, function: Callable[..., R], /) -> ParallelFunction[Any, R]: ...

    def __call__(self, function: Callable[..., Any], /) -> ParallelFunction[Any, Any]:
        decorated: ParallelFunction[Any, Any] = parallel(function, **self._settings)
        return decorated


@overload
def parallel(
    function: Callable[[T], Coroutine[Any, Any, R]], /, **settings: Unpack[ParallelOptions]
) -> AsyncParallelFunction[T, R]: ...


@overload
def parallel(
    function: Callable[..., Coroutine[Any, Any, R]], /, **settings: Unpack[ParallelOptions]
) -> AsyncParallelFunction[Any, R]: ...


@overload
def parallel(function: Callable[[T], R], /, **settings: Unpack[ParallelOptions]) -> ParallelFunction[T, R]: ...


@overload
def parallel(function: Callable[..., R], /, **settings: Unpack[ParallelOptions]) -> ParallelFunction[Any, R]: ...


@overload
def parallel(function: None = None, /, **settings: Unpack[ParallelOptions]) -> _Decorator: ...


def parallel(
    function: Callable[..., Any] | None = None, /, **settings: Unpack[ParallelOptions]
) -> ParallelFunction[Any, Any] | _Decorator:
    """Make ``function`` runnable in parallel: ``@parallel``, ``@parallel(...)`` or ``parallel(fn, ...)``.

    Options (all keyword-only; every map method also takes the per-call ones):

    * ``workers``: int >= 1, default the usable CPU count.
    * ``backend``: ``"process"`` (default), ``"thread"``, ``"serial"`` or ``"dask"``.
    * ``start_method``: ``None`` (multiprocessing's default), ``"fork"``, ``"spawn"``, ``"forkserver"``.
    * ``initializer``, ``initargs``: run once in each worker.
    * ``max_worker_memory``: resident memory a worker process may use, an int of bytes or a
      string (``"2GB"``, ``"512MiB"``); a worker above it after a chunk is replaced, one far
      above it mid-item is killed (``WorkerLostError``). Process and Dask backends only.
    * ``address``, ``client``: the Dask cluster (``backend="dask"`` only).
    * per call: ``chunksize`` (``"auto"`` or int >= 1), ``progress`` (bool or tqdm kwargs),
      ``timeout``, ``retries``, ``retry_on``, ``return_exceptions``, ``max_tasks_per_worker``,
      ``max_in_flight``, ``seed``, ``checkpoint``, ``checkpoint_mode``, ``stats``,
      ``concurrency`` (``async def`` tasks: items awaited at once per worker, default 1),
      ``shared`` (one object the tasks read with ``parmap.shared()``, sent to each worker once).

    Raises:
        TypeError: an option has the wrong type, ``function`` is not callable, or it is a
            generator or async generator function.
        ValueError: an option has an unusable value (``concurrency`` > 1 for a plain function).
    """
    if function is None:
        return _Decorator(settings)
    if not (callable(function) or isinstance(function, (staticmethod, classmethod))):
        raise TypeError(f"parallel() needs a callable, got {type(function).__name__}")
    return ParallelFunction(function, settings)
