"""`AsyncResult`: the handle `map_async` returns, with `multiprocessing`'s semantics.

It is also awaitable and cancellable. Awaiting parks no thread: each awaiting coroutine
registers an asyncio future, and the job's thread wakes its loop with
`call_soon_threadsafe` when the job ends. State (`_settled`, `_cancelled`, `_value`,
`_error`, `_waiters`) is written under `_lock`; `_done` is set once, after it.
"""

from __future__ import annotations

import sys
import threading
import traceback
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import errors
from ._engine import surfaced
from .errors import ResultTimeoutError

if TYPE_CHECKING:
    import asyncio

R = TypeVar("R")

#: Callbacks run in the job's thread; an exception there is printed, never lost silently,
#: and never keeps `get()` waiting.
_CALLBACK_FAILED = "parmap: exception in a map_async {} (ignored):\n"


class AsyncResult(Generic[R]):
    """The future result of `map_async`: wait with `get()`, or `await` it.

    `callback` receives the whole ordered result list, `error_callback` the exception;
    both run in the job's background thread before `get()` returns, as with
    `multiprocessing.pool.AsyncResult`. After [cancel][parmap.AsyncResult.cancel],
    `error_callback` receives the [CancelledError][parmap.CancelledError], in the thread
    that cancelled.

    Awaiting it (`await result`) waits without blocking the event loop. Cancelling the
    asyncio task that awaits it cancels the map, as cancelling a task that awaits an
    `asyncio.Future` cancels the future: wrap it in `asyncio.shield(...)` when several
    tasks await one map and one of them may be cancelled alone.
    """

    def __init__(
        self,
        run: Callable[[], R],
        callback: Callable[[R], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        *,
        cancel: Callable[[], None] | None = None,
    ) -> None:
        for name, function in (("callback", callback), ("error_callback", error_callback)):
            if function is not None and not callable(function):
                raise TypeError(f"{name} must be callable or None, got {type(function).__name__}")
        self._run = run
        self._callback = callback
        self._error_callback = error_callback
        self._cancel_job = cancel
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._settled = False  # the job's outcome is in: too late to cancel
        self._cancelled = False
        self._value: R | None = None
        self._error: BaseException | None = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._thread = threading.Thread(target=self._work, name="parmap-map-async", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        value: R | None = None
        error: BaseException | None = None
        try:
            value = self._run()
        except BaseException as raised:
            error = raised
        with self._lock:
            if self._cancelled:
                return  # cancel() settled it already; what the job did after is dropped
            self._settled = True
            self._value, self._error = value, error
        try:
            if error is not None:
                if self._error_callback is not None:
                    self._call(self._error_callback, error, "error_callback")
            elif self._callback is not None:
                self._call(self._callback, value, "callback")
        finally:
            self._finish()

    def _finish(self) -> None:
        """Mark the result ready and wake every awaiting event loop."""
        with self._lock:
            self._done.set()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:  # that loop is closed: nobody awaits there any more
                pass

    @staticmethod
    def _call(function: Callable[[Any], object], argument: object, name: str) -> None:
        try:
            function(argument)
        except BaseException:
            sys.stderr.write(_CALLBACK_FAILED.format(name) + traceback.format_exc())

    def ready(self) -> bool:
        """True once the job has finished, successfully or not, or was cancelled."""
        return self._done.is_set()

    def successful(self) -> bool:
        """True if the job finished without error.

        Raises:
            ValueError: the job has not finished yet.
        """
        if not self.ready():
            raise ValueError("the result is not ready yet")
        return self._error is None

    def cancelled(self) -> bool:
        """True if [cancel][parmap.AsyncResult.cancel] stopped the job before it finished."""
        return self._cancelled

    def cancel(self) -> bool:
        """Stop the job: its queued chunks are dropped and the workers running its items
        are killed (and replaced), within about a second; other jobs are untouched.

        The result is ready at once: `get()` and `await` raise
        [CancelledError][parmap.CancelledError]. The thread backend cancels a running
        `async def` item on its loop; it cannot stop a running plain item (a thread cannot
        be killed), nor can the serial backend stop its running chunk: it finishes, and its
        result is dropped.

        Returns:
            True if the job is cancelled (now or before), False if it had already finished.
        """
        with self._lock:
            if self._cancelled:
                return True
            if self._settled:
                return False
            self._cancelled = True
            self._error = errors.CancelledError("the map was cancelled")
        if self._cancel_job is not None:
            self._cancel_job()
        if self._error_callback is not None:
            self._call(self._error_callback, self._error, "error_callback")
        self._finish()
        return True

    def wait(self, timeout: float | None = None) -> None:
        """Block until the job finishes, or `timeout` seconds pass.

        A Ctrl-C while waiting cancels the job (see [cancel][parmap.AsyncResult.cancel]) and is
        raised.
        """
        try:
            self._done.wait(timeout)
        except KeyboardInterrupt:
            self.cancel()
            raise

    def get(self, timeout: float | None = None) -> R:
        """The ordered result list; re-raises a task's exception.

        A Ctrl-C while waiting cancels the job (see [cancel][parmap.AsyncResult.cancel]) and is
        raised.

        Raises:
            ResultTimeoutError: the job did not finish within `timeout` seconds (it goes
                on). It is also the builtin `TimeoutError` and `multiprocessing.TimeoutError`.
            CancelledError: the job was cancelled.
        """
        try:
            finished = self._done.wait(timeout)
        except KeyboardInterrupt:
            self.cancel()
            raise
        if not finished:
            raise ResultTimeoutError(f"the result was not ready within {timeout} s")
        return self._outcome()

    def _outcome(self) -> R:
        if self._error is not None:
            raise surfaced(self._error)
        return self._value  # type: ignore[return-value]

    def __await__(self) -> Generator[Any, None, R]:
        """`await result`: the ordered result list, without blocking the event loop.

        Raises:
            CancelledError: the map was cancelled (by `cancel()` elsewhere).
            asyncio.CancelledError: the awaiting task itself was cancelled; the map is
                cancelled with it.
        """
        return self._wait_in_loop().__await__()

    async def _wait_in_loop(self) -> R:
        import asyncio

        if not self._done.is_set():
            loop = asyncio.get_running_loop()
            future: asyncio.Future[None] = loop.create_future()
            entry = (loop, future)
            with self._lock:
                waiting = not self._done.is_set()
                if waiting:
                    self._waiters.append(entry)
            if waiting:
                try:
                    await future
                except asyncio.CancelledError:
                    self.cancel()  # the awaiting task was cancelled: so is the map
                    raise
                finally:
                    with self._lock:
                        if entry in self._waiters:
                            self._waiters.remove(entry)
        return self._outcome()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
