"""Serial backend: every chunk runs inline, in the calling thread, with the same semantics.

Made for debugging (breakpoints and tracebacks work as usual, nothing is pickled) and used
for nested maps inside a worker. A real Ctrl-C stops it at once instead of becoming an
item's error.
"""

from __future__ import annotations

import threading
from typing import Any

from .. import _state
from .._config import PoolConfig
from ..errors import InitializerError
from . import Backend, ChunkDone, ChunkProgress, ChunkTask
from ._event_loops import EventLoops
from ._protocol import run_chunk


class SerialBackend(Backend):
    def __init__(self, config: PoolConfig) -> None:
        super().__init__(config)
        self._state: dict[str, Any] = {}  # what `parmap.worker_state()` returns: one per pool
        if config.initializer is not None:
            try:
                with _state.installed_state(self._state):
                    config.initializer(*config.initargs)
            except Exception as error:
                raise InitializerError("the pool's initializer raised") from error
        self._loops = EventLoops()  # `async def` tasks: one loop per calling thread

    @property
    def workers(self) -> int:
        return 1

    @property
    def usable(self) -> bool:
        return True

    def submit(self, task: ChunkTask) -> None:
        if task.job.cancelled:  # a send decided before the cancel: it never starts
            return
        task.dispatched_at = task.submitted_at
        # Items run in the caller's thread: a seeded job seeds the global generators per item
        # and gives the caller back their state when the chunk ends (see parmap._seeding).
        with _state.installed_state(self._state):
            done = run_in_this_thread(task, propagate=(KeyboardInterrupt,), loops=self._loops, restore_globals=True)
        task.job.deliver(done)

    def cancel(self, job_id: int, *, stop_running: bool) -> None:
        """Nothing is queued: chunks run as they are submitted."""

    def shutdown(self) -> None:
        """Close the event loops of `async def` tasks; nothing else to stop."""
        self._loops.close()


def run_in_this_thread(
    task: ChunkTask,
    propagate: tuple[type[BaseException], ...] = (),
    *,
    loops: EventLoops | None = None,
    seed_globals: bool = True,
    restore_globals: bool = False,
) -> ChunkDone:
    """Run `task` in the calling thread (serial and thread backends): no pickling at all.

    An `async def` task runs on this thread's loop from `loops` (the backend's; by default
    the process's). The job's shared object is what `parmap.shared()` returns meanwhile.
    """
    job = task.job

    def reporter(position: int, fraction: float) -> None:
        job.deliver(ChunkProgress(task, position, fraction))

    item_seconds: list[float] | None = [] if job.profile else None
    with _state.installed_shared(job.shared_value):
        values, errors, completed, compute = run_chunk(
            job.function,
            task.indices,
            task.items,
            timeout=job.timeout,
            seed=job.seed,
            propagate=propagate,
            reporter=reporter,
            item_seconds=item_seconds,
            seed_globals=seed_globals,
            restore_globals=restore_globals,
            loops=loops,
            concurrency=job.concurrency,
        )
    return ChunkDone(
        task,
        values,
        {position: error for position, (error, _) in errors.items()},
        completed,
        compute,
        worker=threading.current_thread().name,
        item_seconds=item_seconds,
    )


backend_class = SerialBackend
