"""One adapter per contender: the same four verbs (start, map, imap, close) over each library.

Each adapter uses its library the way its documentation recommends, with its defaults,
except where the default is one item per task: ``ProcessPoolExecutor``, loky and pebble
then get the stdlib Pool's chunksize formula (``ceil(n / (4 * workers))``), since the
one-item case is already measured by ``mp-pool-cs1``. Libraries are imported in
:meth:`Contender.start`, never at module level, so that the cold-start workload times the
import and so that a missing package only disables its own contender.
"""

from __future__ import annotations

import abc
import importlib.util
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

Task = Callable[[Any], Any]


def pool_chunksize(n_items: int, workers: int) -> int:
    """``multiprocessing.Pool.map``'s default chunksize: about four chunks per worker."""
    chunksize, extra = divmod(n_items, workers * 4)
    return max(1, chunksize + (1 if extra else 0))


class Contender(abc.ABC):
    """A parallel-map library under test, used from one subprocess for one measurement."""

    #: Short name used on the command line and in reports.
    name: ClassVar[str]
    #: What the report calls it.
    label: ClassVar[str]
    #: What it runs, for the report's table of contenders: the call and its settings.
    description: ClassVar[str]
    #: Module that must be importable for the contender to run (``None``: always there).
    module: ClassVar[str | None] = None
    #: Workloads this contender does not run, with the reason printed in the report.
    skips: ClassVar[Mapping[str, str]] = {}
    #: Whether the contender is a peer of parmap (serial and parmap itself are not).
    is_peer: ClassVar[bool] = True

    def __init__(self) -> None:
        self.workers = 0

    @classmethod
    def installed(cls) -> bool:
        """True when the contender's package can be imported here (nothing is imported)."""
        return cls.module is None or importlib.util.find_spec(cls.module) is not None

    def start(self, workers: int) -> None:
        """Import the library and create its pool of ``workers`` workers."""
        self.workers = workers

    @abc.abstractmethod
    def map(self, fn: Task, items: Sequence[Any]) -> list[Any]:
        """``[fn(item) for item in items]``, in parallel, in input order."""

    @abc.abstractmethod
    def imap(self, fn: Task, items: Iterable[Any], chunksize: int) -> Iterator[Any]:
        """Results of ``fn`` over a stream, in input order, as lazily as the library allows.

        ``chunksize`` is used by libraries that need one to stream efficiently; those that
        size chunks themselves ignore it.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the workers (not timed)."""


class Serial(Contender):
    """No parallelism: the baseline for the ideal time (serial / workers)."""

    name = "serial"
    label = "serial (no pool)"
    description = ("`[fn(x) for x in items]` in the calling process: no pool, no pickling. Not a peer: the "
                  "baseline of the ideal time (serial time / workers).")
    is_peer = False
    skips: ClassVar[Mapping[str, str]] = {"seed": "the ideal is exact: total sleep / workers",
                                          "fresh": "the ideal is exact: total sleep / workers"}

    def map(self, fn: Task, items: Sequence[Any]) -> list[Any]:
        return [fn(item) for item in items]

    def imap(self, fn: Task, items: Iterable[Any], chunksize: int) -> Iterator[Any]:
        return map(fn, items)

    def close(self) -> None:
        pass  # no workers


class StdlibPool(Contender):
    """``multiprocessing.Pool`` with its default chunksize (``imap``: the given chunksize)."""

    name = "mp-pool"
    label = "multiprocessing.Pool"
    description = ("`multiprocessing.Pool(workers).map(fn, items)`, its default chunksize (about four chunks "
                  "per worker); on the stream workload `imap(fn, items, chunksize=1000)`.")
    module = "multiprocessing"
    #: ``None``: Pool's own default for ``map``.
    chunksize: ClassVar[int | None] = None

    def start(self, workers: int) -> None:
        super().start(workers)
        import multiprocessing

        self._pool = multiprocessing.Pool(workers)

    def map(self, fn: Task, items: Sequence[Any]) -> list[Any]:
        return self._pool.map(fn, items, chunksize=self.chunksize)

    def imap(self, fn: Task, items: Iterable[Any], chunksize: int) -> Iterator[Any]:
        return self._pool.imap(fn, items, chunksize=self.chunksize or chunksize)

    def close(self) -> None:
        self._pool.close()
        self._pool.join()


class StdlibPoolOne(StdlibPool):
    """``multiprocessing.Pool`` with ``chunksize=1``, as written to get a tqdm bar per item."""

    name = "mp-pool-cs1"
    label = "multiprocessing.Pool, chunksize=1"
    description = ("`multiprocessing.Pool(workers).map(fn, items, chunksize=1)`: one item per task, as "
                  "written to get a progress bar that moves per item.")
    chunksize = 1
    skips: ClassVar[Mapping[str, str]] = {
        "stream": "millions of one-item tasks take minutes; mp-pool streams with chunksize 1000",
    }


class Executor(Contender):
    """``concurrent.futures.ProcessPoolExecutor.map`` (it submits the whole input at once)."""

    name = "ppe"
    label = "ProcessPoolExecutor"
    description = ("`concurrent.futures.ProcessPoolExecutor(max_workers=workers).map(fn, items, chunksize=c)`, "
                  "c from Pool's formula (its own default is one item per task).")
    module = "concurrent.futures"

    def start(self, workers: int) -> None:
        super().start(workers)
        from concurrent.futures import ProcessPoolExecutor

        self._executor = ProcessPoolExecutor(max_workers=workers)

    def map(self, fn: Task, items: Sequence[Any]) -> list[Any]:
        return list(self._executor.map(fn, items, chunksize=pool_chunksize(len(items), self.workers)))

    def imap(self, fn: Task, items: Iterable[Any], chunksize: int) -> Iterator[Any]:
        return self._executor.map(fn, items, chunksize=chunksize)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class Joblib(Contender):
    """``joblib.Parallel`` (loky backend, automatic batching, memmapping of large arrays)."""

    name = "joblib"
    label = "joblib.Parallel"
    description = ("`joblib.Parallel(n_jobs=workers)(delayed(fn)(x) for x in items)`: the loky backend, "
                  "automatic batching, large NumPy arrays memory-mapped; `return_as=\"generator\"` on the "
                  "stream workload. With `n_jobs=1` it runs the items in the calling process.")
    module = "joblib"

    def start(self, workers: int) -> None:
        super().start(workers)
        import joblib

        self._delayed = joblib.delayed
        self._parallel = joblib.Parallel(n_jobs=workers)
        self._streaming = joblib.Parallel(n_jobs=workers, return_as="generator")

    def map(self, fn: Task, items: Sequence[Any]) -> list[Any]:
        call = self._delayed(fn)
        return list(self._parallel(call(item) for item in items))

    def imap(self, fn: Task, items: Iterable[Any], chunksize: int) -> Iterator[Any]:
        call = self._delayed(fn)
        results: Iterator[Any] = self._streaming(call(item) for item in items)
        return results

    def close(self) -> None:
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True)


class Loky(Contender):
    """loky's reusable executor (``concurrent.futures`` API, robust to worker crashes)."""

    name = "loky"
    label = "loky"
    description = ("`loky.get_reusable_executor(max_workers=workers).map(fn, items, chunksize=c)`, c from "
                  "Pool's formula.")
    module = "loky"

    def start(self, workers: int) -> None:
        super().start(workers)
        import loky

        self._executor = loky.get_reusable_executor(max_workers=workers)

    def map(self, fn: Task, items: Sequence[Any]) -> list[Any]:
        return list(self._executor.map(fn, items, chunksize=pool_chunksize(len(items), self.workers)))

    def imap(self, fn: Task, items: Iterable[Any], chunksize: int) -> Iterator[Any]:
        results: Iterator[Any] = self._executor.map(fn, items, chunksize=chunksize)
        return results

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class Mpire(Contender):
    """mpire's ``WorkerPool`` kept alive between maps (its default chunking)."""

    name = "mpire"
    label = "mpire.WorkerPool"
    description = ("`mpire.WorkerPool(n_jobs=workers, keep_alive=True).map(fn, items)`, its default chunking.")
    module = "mpire"

    def start(self, workers: int) -> None:
        super().start(workers)
        from mpire.pool import WorkerPool  # where it is defined: mpire's __init__ does not re-export it

        self._pool = WorkerPool(n_jobs=workers, keep_alive=True)

    def map(self, fn: Task, items: Sequence[Any]) -> list[Any]:
        return list(self._pool.map(fn, items, concatenate_numpy_output=False))

    def imap(self, fn: Task, items: Iterable[Any], chunksize: int) -> Iterator[Any]:
        results: Iterator[Any] = self._pool.imap(fn, items, chunk_size=chunksize)
        return results

    def close(self) -> None:
        self._pool.stop_and_join()


class Pebble(Contender):
    """pebble's ``ProcessPool.map`` (a future of an iterator)."""

    name = "pebble"
    label = "pebble.ProcessPool"
    description = ("`pebble.ProcessPool(max_workers=workers).map(fn, items, chunksize=c)`, c from Pool's formula.")
    module = "pebble"

    def start(self, workers: int) -> None:
        super().start(workers)
        import pebble

        self._pool = pebble.ProcessPool(max_workers=workers)

    def map(self, fn: Task, items: Sequence[Any]) -> list[Any]:
        future = self._pool.map(fn, items, chunksize=pool_chunksize(len(items), self.workers))
        return list(future.result())

    def imap(self, fn: Task, items: Iterable[Any], chunksize: int) -> Iterator[Any]:
        results: Iterator[Any] = self._pool.map(fn, items, chunksize=chunksize).result()
        return results

    def close(self) -> None:
        self._pool.close()
        self._pool.join()


class Parmap(Contender):
    """parmap with its defaults: ``@parallel(workers=...)``, ``chunksize="auto"``."""

    name = "parmap"
    label = "parmap"
    description = ("`parallel(fn, workers=workers).map(items)` with parmap's defaults (process backend, "
                  "`chunksize=\"auto\"`); `imap(items)` on the stream workload.")
    module = "parmap"
    is_peer = False

    def start(self, workers: int) -> None:
        super().start(workers)
        import parmap

        self._parmap = parmap
        self._wrapped: dict[Task, Any] = {}

    def _parallel(self, fn: Task) -> Any:
        wrapped = self._wrapped.get(fn)
        if wrapped is None:
            wrapped = self._wrapped[fn] = self._parmap.parallel(fn, workers=self.workers)
        return wrapped

    def map(self, fn: Task, items: Sequence[Any]) -> list[Any]:
        results: list[Any] = self._parallel(fn).map(items)
        return results

    def imap(self, fn: Task, items: Iterable[Any], chunksize: int) -> Iterator[Any]:
        results: Iterator[Any] = self._parallel(fn).imap(items)
        return results

    def close(self) -> None:
        self._parmap.shutdown()


#: Every contender, in report order.
CONTENDERS: dict[str, type[Contender]] = {
    cls.name: cls for cls in (Serial, StdlibPool, StdlibPoolOne, Executor, Joblib, Loky, Mpire, Pebble, Parmap)
}


def get_contender(name: str) -> type[Contender]:
    """The contender class called ``name``.

    Raises:
        KeyError: no contender has that name (the message lists the known ones).
    """
    try:
        return CONTENDERS[name]
    except KeyError:
        raise KeyError(f"unknown contender {name!r}; known: {', '.join(CONTENDERS)}") from None
