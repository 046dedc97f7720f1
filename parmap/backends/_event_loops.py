"""One event loop per thread that runs `async def` chunks, kept across chunks.

Kept apart from [parmap.backends._async_tasks][] so that the serial and thread backends
can own an [EventLoops][] without importing asyncio (tens of milliseconds) until a chunk of
an `async def` task runs.
"""

from __future__ import annotations

import contextvars
import threading
import weakref
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio


class _ThreadLoop:
    """A thread's event loop; closed when the thread ends (its thread-local goes) or at `close`."""

    def __init__(self) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()
        self.task: asyncio.Task[None] | None = None  # the chunk running on it, if any
        #: Two threads may close it at once: the owner's `EventLoops.close`, and the loop's
        #: thread ending, whose `__del__` runs while the weak registry still hands it out
        #: (CPython clears weak references after the finalizer). asyncio's `close` is not
        #: safe against itself (found under load: a closed self-pipe closed again).
        self._closing = threading.Lock()

    def close(self) -> None:
        with self._closing:
            if not self.loop.is_closed() and not self.loop.is_running():
                self.loop.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to close with
            pass


class EventLoops:
    """One event loop per thread that runs async chunks, kept across chunks.

    A thread's loop is closed when the thread ends (it is held in a thread-local) or when
    the owner (a backend, at its shutdown) calls [close][EventLoops.close], so no loop and
    none of its file descriptors outlive their use.

    A thread that already runs a loop of its own (a plain `map` of the serial backend
    called inside a coroutine) cannot run another: its chunk runs on a private loop in a
    short-lived thread, which the caller waits for, blocked as it is by any `map` call.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._by_thread: weakref.WeakValueDictionary[int, _ThreadLoop] = weakref.WeakValueDictionary()

    def run(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run `coroutine` to completion on this thread's loop."""
        if _running_loop() is not None:
            self._run_in_a_thread(coroutine)
            return
        held: _ThreadLoop | None = getattr(self._local, "loop", None)
        if held is None or held.loop.is_closed():
            held = self._local.loop = _ThreadLoop()
            with self._lock:
                self._by_thread[threading.get_ident()] = held
        _run_to_completion(held, coroutine)

    def cancel(self, thread: int) -> None:
        """Cancel the async chunk running on thread `thread`'s loop, from any thread.

        Its items get `asyncio.CancelledError` at their next `await`; the chunk then
        returns at once (see `run_async_chunk`). A plain task, or no chunk, is left alone.
        """
        with self._lock:
            held = self._by_thread.get(thread)
        task = None if held is None else held.task
        if held is not None and task is not None:
            try:
                held.loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # closed meanwhile: nothing runs there
                pass

    @staticmethod
    def _run_in_a_thread(coroutine: Coroutine[Any, Any, None]) -> None:
        failure: list[BaseException] = []

        def run() -> None:
            held = _ThreadLoop()
            try:
                _run_to_completion(held, coroutine)
            except BaseException as error:
                failure.append(error)
            finally:
                held.close()

        # In the caller's context: the chunk's worker state and shared object are set there.
        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(run,), name="parmap-async-chunk")
        thread.start()
        thread.join()
        if failure:
            raise failure[0]

    def close(self) -> None:
        """Close every loop that is not running."""
        with self._lock:
            held = list(self._by_thread.values())
        for each in held:
            each.close()


#: The loops of a worker process's thread and of Dask's worker threads.
PROCESS_LOOPS = EventLoops()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    import asyncio

    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _run_to_completion(held: _ThreadLoop, coroutine: Coroutine[Any, Any, None]) -> None:
    """`loop.run_until_complete(coroutine)`; on any exit the loop is left with no task of ours.

    A `KeyboardInterrupt` (the serial backend, in the caller's thread) can leave the main
    task and the runners pending: they are cancelled and run to their end, so the loop is
    clean for the next chunk.
    """
    loop = held.loop
    task = held.task = loop.create_task(coroutine)
    try:
        loop.run_until_complete(task)
    finally:
        held.task = None
        if not task.done():
            task.cancel()
            try:
                loop.run_until_complete(task)
            except BaseException:  # the error that got here is the one raised
                pass
