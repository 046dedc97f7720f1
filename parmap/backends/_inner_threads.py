"""Native thread pools in a worker process, limited so that workers do not oversubscribe CPUs.

NumPy's BLAS (OpenBLAS, MKL, BLIS, Accelerate), OpenMP runtimes, numexpr and numba each start
as many threads as the machine has CPUs. Four workers each running a matrix product on a
4-CPU machine would then run 16 threads on 4 CPUs, and lose time to switching and to
cache thrashing. A pool's `inner_threads` (by default `cpus // workers`, see
[parmap._cpus.default_inner_threads][]) caps them in each worker process, as loky and
joblib do, in two ways:

* **the environment** (`OMP_NUM_THREADS`, `OPENBLAS_NUM_THREADS`, ... in [THREAD_VARIABLES][]),
  set first thing in the worker, before it unpickles its initializer or any task: a library
  a task imports reads it when it starts its pool;
* **the pools already started**: a forked worker inherits the libraries the parent had
  loaded (NumPy imported by the main program), and a spawned or forkserver worker has
  loaded those the main module imports before parmap's code runs. Their pools read the
  environment long ago, so `threadpoolctl` limits them, imported only then (only when a
  native library is loaded: [native_pools_loaded][]) and only in the worker.

A variable the user set in the environment is kept by default, as joblib keeps it
(`os.environ.get(var, default)` in its `_prepare_worker_env`): whoever wrote
`OMP_NUM_THREADS=4` meant it. An explicit `inner_threads=N` overrides every variable. The
already-loaded pools follow the same rule by kind: BLAS pools keep their count when one of
the [BLAS_VARIABLES][] was set by the user, OpenMP pools when `OMP_NUM_THREADS` was.

Policy apart from mechanism: [environment_for][], [pool_limits_for][] and
[native_pools_loaded][] are pure; [limit_inner_threads][] applies them in the worker.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from typing import NamedTuple

#: The variables native libraries read for their thread count at start: joblib's list
#: (`MAX_NUM_THREADS_VARS` in `joblib/_parallel_backends.py`, 1.6).
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMBA_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

#: The variables of BLAS libraries only: one set by the user keeps threadpoolctl off the
#: loaded BLAS pools under the default limit (OpenBLAS reads `OPENBLAS_NUM_THREADS` before
#: `OMP_NUM_THREADS`, so the environment we set would win over a user's `OMP_NUM_THREADS`
#: for BLAS too: the loaded pools get the same count a fresh import would).
BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")

#: The variable of OpenMP runtimes (libgomp, libomp, libiomp).
OPENMP_VARIABLES = ("OMP_NUM_THREADS",)

#: Intel TBB's switch that makes its schedulers in several processes share the CPUs; set to
#: `1` unless the user set it, as joblib does.
TBB_IPC_VARIABLE = "ENABLE_IPC"

#: Parts of the file names of the native libraries whose thread pools threadpoolctl limits
#: (its `_ALL_PREFIXES`, 3.5): one of them in the process's memory map means a pool may
#: already exist.
NATIVE_LIBRARY_MARKERS = ("openblas", "libmkl_rt", "libblis", "flexiblas", "libgomp", "libiomp", "libomp")

#: Where no memory map can be read: modules whose import loads such a library.
NATIVE_MODULES = ("numpy", "scipy", "sklearn", "torch", "numexpr", "mkl")


class InnerThreads(NamedTuple):
    """The limit a worker applies at start (a `Process` argument, pickled under spawn)."""

    #: Threads per native pool, >= 1.
    limit: int
    #: `True`: given as `inner_threads=`, overriding the user's variables; `False`: the
    #: default, which keeps them.
    explicit: bool


def inner_threads_of(limit: int | None, *, explicit: bool) -> InnerThreads | None:
    """What a pool's `inner_threads` (`None`: leave alone) asks of its workers."""
    return None if limit is None else InnerThreads(limit, explicit)


def environment_for(threads: InnerThreads, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables to set in a worker's environment (those to keep are left out)."""
    value = str(threads.limit)
    updates = {name: value for name in THREAD_VARIABLES if threads.explicit or name not in environ}
    if TBB_IPC_VARIABLE not in environ:
        updates[TBB_IPC_VARIABLE] = "1"
    return updates


def pool_limits_for(threads: InnerThreads, environ: Mapping[str, str]) -> dict[str, int]:
    """threadpoolctl's `limits` (by `user_api`) for the pools already loaded in a worker."""
    limits = {}
    for user_api, names in (("blas", BLAS_VARIABLES), ("openmp", OPENMP_VARIABLES)):
        if threads.explicit or not any(name in environ for name in names):
            limits[user_api] = threads.limit
    return limits


def native_pools_loaded(memory_map: str | None, modules: Iterable[str]) -> bool:
    """Whether a native library with a thread pool is loaded: named in `memory_map` (the
    text of `/proc/self/maps`), or, where that cannot be read, a known module imported."""
    if memory_map is not None:
        return any(marker in memory_map for marker in NATIVE_LIBRARY_MARKERS)
    loaded = set(modules)
    return any(name in loaded for name in NATIVE_MODULES)


def _memory_map() -> str | None:
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as file:
            return file.read()
    except OSError:
        return None


def limit_inner_threads(threads: InnerThreads | None) -> None:
    """Apply `threads` in this worker process: the environment, then the loaded pools.

    `None` (`inner_threads=None`) leaves both alone. A failure to limit the loaded pools
    (threadpoolctl missing or refusing a library) leaves them as they are: a worker runs
    slower then, but runs.
    """
    if threads is None:
        return
    limits = pool_limits_for(threads, os.environ)  # from the user's variables, before ours
    os.environ.update(environment_for(threads, os.environ))
    if not limits or not native_pools_loaded(_memory_map(), sys.modules):
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a dependency; only a broken install lacks it
        return
    try:
        threadpool_limits(limits=limits)  # not a `with`: the limit lasts as long as the worker
    except Exception:  # pragma: no cover - a library threadpoolctl cannot drive
        pass
