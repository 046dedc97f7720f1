"""Thread backend: the same semantics in threads of this process.

For I/O-bound tasks and for functions that release the GIL. Nothing is pickled. Threads
cannot be killed, so `timeout` reports an overrunning item once it returns, and
`max_tasks_per_worker` has nothing to recycle. An `async def` task's items are awaited
on each thread's own loop: there `timeout` cancels an overrunning item, and cancelling a
job (`AsyncResult.cancel()`) cancels its running items too.
"""

from __future__ import annotations

import collections
import threading
import time

from .. import _state
from .._config import PoolConfig
from ..errors import InitializerError, PoolClosedError, RemoteTraceback
from . import Backend, ChunkFailed, ChunkTask
from ._event_loops import EventLoops
from ._protocol import format_traceback
from ._worker import mark_worker_thread
from .serial import run_in_this_thread


class ThreadBackend(Backend):
    def __init__(self, config: PoolConfig) -> None:
        super().__init__(config)
        self._condition = threading.Condition()
        self._pending: collections.deque[ChunkTask] = collections.deque()
        self._stopping = False
        self._broken: BaseException | None = None
        self._loops = EventLoops()  # `async def` tasks: one loop per worker thread
        self._running: dict[int, ChunkTask] = {}  # thread ident -> its chunk, under _condition
        self._threads = [
            threading.Thread(target=self._serve, name=f"parmap-thread-{number}", daemon=True)
            for number in range(config.workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def usable(self) -> bool:
        return not self._stopping and self._broken is None

    def submit(self, task: ChunkTask) -> None:
        with self._condition:
            if not self.usable:
                raise self._broken or PoolClosedError("the pool was shut down")
            self._pending.append(task)
            self._condition.notify()

    def cancel(self, job_id: int, *, stop_running: bool) -> None:
        """Drop the job's queued chunks; with `stop_running`, cancel its running `async def`
        chunks on their threads' loops (a running plain item cannot be stopped: it finishes)."""
        with self._condition:
            self._pending = collections.deque(t for t in self._pending if t.job.job_id != job_id)
            running = [thread for thread, task in self._running.items() if task.job.job_id == job_id]
        if stop_running:
            for thread in running:
                self._loops.cancel(thread)

    def shutdown(self) -> None:
        with self._condition:
            self._stopping = True
            pending, self._pending = list(self._pending), collections.deque()
            self._condition.notify_all()
        for task in pending:
            task.job.deliver(ChunkFailed(task, PoolClosedError("the pool was shut down")))
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current:
                thread.join(timeout=0.1)  # a busy thread finishes its item on its own
        self._loops.close()  # a busy thread's loop is closed when the thread ends

    def _serve(self) -> None:
        mark_worker_thread(self.config.depth + 1)
        with _state.installed_state({}):  # this thread's own, for its life
            self._serve_chunks()

    def _serve_chunks(self) -> None:
        if self.config.initializer is not None:
            try:
                self.config.initializer(*self.config.initargs)
            except BaseException as error:
                failure = InitializerError("the pool's initializer raised in a worker thread")
                failure.__cause__ = RemoteTraceback(format_traceback(error))
                with self._condition:
                    self._broken = failure
                    pending, self._pending = list(self._pending), collections.deque()
                for task in pending:
                    task.job.deliver(ChunkFailed(task, failure))
                return
        while True:
            with self._condition:
                while not self._pending and not self._stopping:
                    self._condition.wait()
                if self._stopping:
                    return
                task = self._pending.popleft()
                if task.job.cancelled:  # cancelled while queued: it never starts
                    continue
                self._running[threading.get_ident()] = task
            task.dispatched_at = time.monotonic()
            # Threads share the global generators: a seeded task here uses item_rng(), and
            # the caller's `random` is never reseeded (see parmap._seeding).
            try:
                done = run_in_this_thread(task, loops=self._loops, seed_globals=False)
            finally:
                with self._condition:
                    del self._running[threading.get_ident()]
            task.job.deliver(done)


backend_class = ThreadBackend
