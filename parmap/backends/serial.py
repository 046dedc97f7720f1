"""Serial backend: every chunk runs inline, in the calling thread, with the same semantics.

Made for debugging (breakpoints and tracebacks work as usual, nothing is pickled) and used
for nested maps inside a worker. A real Ctrl-C stops it at once instead of becoming an
item's error.
"""

from __future__ import annotations

from .._config import PoolConfig
from ..errors import InitializerError
from . import Backend, ChunkDone, ChunkTask
from ._worker import run_chunk


class SerialBackend(Backend):
    runs_inline = True

    def __init__(self, config: PoolConfig) -> None:
        super().__init__(config)
        if config.initializer is not None:
            try:
                config.initializer(*config.initargs)
            except Exception as error:
                raise InitializerError("the pool's initializer raised") from error

    @property
    def workers(self) -> int:
        return 1

    @property
    def usable(self) -> bool:
        return True

    def submit(self, task: ChunkTask) -> None:
        job = task.job
        values, errors, completed, compute = run_chunk(
            job.function, task.indices, task.items, timeout=job.timeout, seed=job.seed,
            propagate=(KeyboardInterrupt,))
        job.deliver(ChunkDone(task, values, {p: e for p, (e, _) in errors.items()}, completed, compute))

    def cancel(self, job_id: int, *, stop_running: bool) -> None:
        """Nothing is queued: chunks run as they are submitted."""

    def shutdown(self) -> None:
        """Nothing to stop."""


backend_class = SerialBackend
