"""`aimap` and `aimap_unordered`: a job's results as an async iterator, and async inputs.

The job runs as for `imap`, driven by one thread per iteration (the job's owner, as the
thread of a `map_async` is); the event loop never blocks on it. The two sides meet in a
strict hand-off, which is the backpressure:

    __anext__ (loop) ──request (a future)──> driver thread: next(job.batches())
         ^                                        │
         └──── call_soon_threadsafe(result) <─────┘

Each request asks for one batch, so the driver only advances the job when the loop wants
more, exactly as a caller's `next()` advances `imap`; meanwhile the workers keep the job's
window of chunks busy. An async iterable input is read in the job's feeder thread, one
`__anext__` at a time run on the caller's loop (`run_coroutine_threadsafe`), only when the
job's core asks for a chunk: never more than the window ahead.

Leaving the loop early (`break` and the iterator dropped, `aclose()`, the task
cancelled while it waits) cancels the job the way `AsyncResult.cancel()` does: queued
chunks are dropped and the workers running its items are killed and replaced.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar, Union

from ._engine import Job, StopIterationEscape, surfaced

if TYPE_CHECKING:
    import asyncio
    import concurrent.futures

    from ._progress import NullProgress, TqdmProgress

R = TypeVar("R")

#: What the driver hands back for one request: a batch, the end, or the error to raise.
_Outcome = Union[tuple[str, list[Any]], tuple[str, None], tuple[str, BaseException]]


class AsyncSource:
    """An async iterable read as a plain iterator by the job's feeder thread.

    Each `__next__` runs one `__anext__` on the caller's loop and waits for it; the loop
    is named when the iteration starts ([bind][AsyncSource.bind]). [stop][AsyncSource.stop]
    cancels a read in progress, so the feeder never outlives the job.
    """

    def __init__(self, iterable: AsyncIterable[Any]) -> None:
        self._iterator = iterable.__aiter__()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._reading: concurrent.futures.Future[Any] | None = None
        self._stopped = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        import asyncio
        import concurrent.futures  # with asyncio: only an async iterable needs either

        assert self._loop is not None, "bind() names the loop before the job reads"
        with self._lock:
            if self._stopped:
                raise StopIteration
            reading = self._reading = asyncio.run_coroutine_threadsafe(self._next(), self._loop)
        try:
            return reading.result()
        except StopAsyncIteration:
            raise StopIteration from None
        except concurrent.futures.CancelledError:
            raise StopIteration from None  # stopped (the job ended) or the loop went away
        finally:
            with self._lock:
                self._reading = None

    async def _next(self) -> Any:
        return await self._iterator.__anext__()

    def stop(self) -> None:
        """Read no more; a read in progress is cancelled."""
        with self._lock:
            self._stopped = True
            reading = self._reading
        if reading is not None:
            reading.cancel()


class AsyncMapIterator(AsyncIterator[R], Generic[R]):
    """What `aimap` and `aimap_unordered` return: `async for result in f.aimap(items)`.

    The job starts on the first `__anext__` (as `imap` starts on the first `next`). Leaving
    early cancels the job: `await it.aclose()`, or `break` (the iterator is then dropped,
    which cancels it at once), or cancelling the task that awaits it.
    """

    def __init__(self, job: Job, progress: NullProgress | TqdmProgress, source: AsyncSource | None) -> None:
        # The driver thread holds only the _Driver, never this object: dropping the iterator
        # (a `break`) must be able to reach `__del__` while the thread still runs.
        self._driver = _Driver(job, progress, source)
        self._batch: list[Any] = []  # reversed: results pop from the end
        self._finished = False  # no more results will be handed out

    def __aiter__(self) -> AsyncMapIterator[R]:
        return self

    async def __anext__(self) -> R:
        import asyncio

        if self._batch:
            result: R = self._batch.pop()
            return result
        if self._finished:
            raise StopAsyncIteration
        request: asyncio.Future[_Outcome] = asyncio.get_running_loop().create_future()
        self._driver.ask(request)
        try:
            kind, payload = await request
        except asyncio.CancelledError:
            self._cancel()
            raise
        if kind == "batch":
            assert isinstance(payload, list)
            payload.reverse()
            self._batch = payload
            return self._batch.pop()  # type: ignore[no-any-return]
        self._finished = True
        if kind == "end":
            raise StopAsyncIteration
        assert isinstance(payload, BaseException)
        raise surfaced(payload)

    async def aclose(self) -> None:
        """Cancel the job, as leaving the loop early does; nothing happens once it ended."""
        self._cancel()

    def __del__(self) -> None:
        self._cancel()

    def _cancel(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._batch = []
        self._driver.cancel()


class _Driver:
    """The job's side of an [AsyncMapIterator][]: a thread that hands out one batch per request.

    `_requests` is written by the loop's thread (and by `cancel`, from any thread) and read
    by the driver thread only; `_left_early` is written once, by `cancel`.
    """

    def __init__(self, job: Job, progress: NullProgress | TqdmProgress, source: AsyncSource | None) -> None:
        self._job = job
        self._progress = progress
        self._source = source
        self._requests: queue.SimpleQueue[asyncio.Future[_Outcome] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._left_early = False

    def ask(self, request: asyncio.Future[_Outcome]) -> None:
        """Ask for the next batch; the first request starts the job, on the request's loop."""
        if self._thread is None:
            loop = request.get_loop()
            if self._source is not None:
                self._source.bind(loop)
            self._thread = threading.Thread(target=self._drive, args=(loop,), name="parmap-aimap", daemon=True)
            self._thread.start()
        self._requests.put(request)

    def cancel(self) -> None:
        """Leave early: the job stops its queued and running chunks (a no-op before it starts)."""
        self._left_early = True
        if self._thread is not None:
            self._job.cancel()  # wakes the driver if it waits for the job
            self._requests.put(None)  # wakes it if it waits for a request

    def _drive(self, loop: asyncio.AbstractEventLoop) -> None:
        """The job's thread: one batch per request, until the end, an error or a cancel.

        The last outcome (the end or an error) is handed over only after the job, the input
        and the bar are closed, as `imap` closes them before its `StopIteration`.
        """
        batches = self._job.batches()
        final: tuple[asyncio.Future[_Outcome], _Outcome] | None = None
        try:
            while True:
                request = self._requests.get()
                if request is None:
                    break
                outcome = _next_outcome(batches)
                if outcome[0] != "batch":
                    final = (request, outcome)
                    break
                if not _hand_over(loop, request, outcome):
                    break  # the loop is closed: nobody is waiting
        finally:
            if self._left_early and self._job.owned_here():
                self._job.close(stop_running=True)  # left early: stop its running items too
            batches.close()
            if self._source is not None:
                self._source.stop()
            self._progress.close()
            if final is not None:
                _hand_over(loop, *final)


def _next_outcome(batches: Iterator[list[Any]]) -> _Outcome:
    try:
        return ("batch", next(batches))
    except StopIteration:
        return ("end", None)
    except StopIterationEscape as escaped:  # a task's StopIteration, as imap raises it
        return ("error", escaped.task_error())
    except BaseException as error:
        return ("error", error)


def _hand_over(loop: asyncio.AbstractEventLoop, request: asyncio.Future[_Outcome], outcome: _Outcome) -> bool:
    """Settle `request` on its loop; False if the loop is closed."""
    try:
        loop.call_soon_threadsafe(_settle, request, outcome)
    except RuntimeError:
        return False
    return True


def _settle(request: asyncio.Future[_Outcome], outcome: _Outcome) -> None:
    if not request.done():  # the awaiting task may have been cancelled meanwhile
        request.set_result(outcome)
