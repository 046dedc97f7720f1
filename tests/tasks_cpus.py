"""Tasks of tests/test_cpus_and_inner_threads.py (importable by spawned workers)."""

from __future__ import annotations

import os

from parmap.backends._inner_threads import TBB_IPC_VARIABLE, THREAD_VARIABLES

#: The variables a worker's thread limit sets, as the tasks report them.
NAMES = (*THREAD_VARIABLES, TBB_IPC_VARIABLE)


def thread_environment(_: object) -> dict[str, str | None]:
    """The thread-limit variables in the worker's environment (`None`: unset)."""
    return {name: os.environ.get(name) for name in NAMES}


def blas_threads(_: object) -> list[int]:
    """The thread count of each BLAS pool threadpoolctl finds in the worker, NumPy imported
    first (as a task would: inherited under fork, loaded now under spawn and forkserver)."""
    import numpy  # noqa: F401
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
