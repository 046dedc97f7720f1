"""The shared pools: one per `PoolConfig`, created on first use, replaced when broken.

Every decorated function with the same configuration runs in the same pool. Pools are
created lazily under a lock (several threads may map at once), replaced when they are
broken or shut down, closed at interpreter exit, and forgotten (never touched) in a child
created by `os.fork`, which must build its own.
"""

from __future__ import annotations

import atexit
import dataclasses
import multiprocessing.process
import multiprocessing.util  # registers its exit hook first, so ours (below) runs before it
import os
import threading

from . import _sharing, _transport
from ._config import PoolConfig
from .backends import Backend, get_backend
from .backends._worker import in_worker_process, nesting_depth

_lock = threading.RLock()
_pools: dict[PoolConfig, Backend] = {}
#: The backends asked to prepare a pool: each is told to release it at shutdown.
_prepared: set[type[Backend]] = set()


def prepare(config: PoolConfig) -> Backend | None:
    """Before a map starts any thread: let the backend of its pool prepare, unless the pool runs.

    Returns the pool when it runs already, for the map's job to use without looking it up
    again. Otherwise the pool is made lazily, by the job ([get_pool][]), perhaps in a
    background thread (`map_async`); see [Backend.prepare][].
    """
    config = _resolve(config)
    backend = get_backend(config.backend)
    with _lock:
        pool = _pools.get(config)
        if pool is not None and pool.usable:
            return pool
        _prepared.add(backend)
    backend.prepare(config)
    return None


def _resolve(config: PoolConfig) -> PoolConfig:
    """The config of the pool a map asking for `config` uses here (nested or not)."""
    depth = nesting_depth()
    # A daemonic process (a parmap or Dask worker, a multiprocessing.Pool worker) may not
    # have children.
    daemonic = in_worker_process() or multiprocessing.current_process().daemon
    if depth:
        config = dataclasses.replace(config, depth=depth)
    return get_backend(config.backend).nested_config(config, daemonic=daemonic)


def get_pool(config: PoolConfig) -> Backend:
    """The live pool for `config`, creating (or replacing a broken) one as needed.

    Inside a task, maps nest: the backend asked for decides what its map becomes there
    ([Backend.nested_config][]; a process-backend map in a daemonic process runs serially,
    since daemonic processes may not have children), and each nesting depth gets pools of
    its own, so a task waiting on an inner map never waits on its own pool.
    """
    config = _resolve(config)
    with _lock:
        pool = _pools.get(config)
        if pool is not None and pool.usable:
            return pool
        if pool is not None:
            pool.shutdown()
        pool = get_backend(config.backend)(config)
        _pools[config] = pool
        return pool


def shutdown() -> None:
    """Shut down every pool: workers are stopped and reaped. Later maps start new pools.

    Jobs still running on a pool fail with [`PoolClosedError`][parmap.PoolClosedError]. The
    shared-memory watcher, if one was started, is told this is a normal close and reaped,
    so no process of parmap's is left; the `shared=` objects parmap remembered (and held,
    where they take no weak reference) are forgotten.
    """
    _shut_down(exiting=False)


def _shut_down(*, exiting: bool) -> None:
    with _lock:
        pools = list(_pools.values())
        _pools.clear()
        prepared = list(_prepared)
    try:
        for pool in pools:
            pool.shutdown()
        for backend in prepared:
            backend.release()
    finally:
        _sharing.forget_all()
        _transport.stop_watcher(exiting=exiting)


def shut_down_backend(name: str) -> None:
    """Shut down the pools of one backend (`config.backend == name`); the others go on."""
    with _lock:
        configs = [config for config in _pools if config.backend == name]
        pools = [_pools.pop(config) for config in configs]
    for pool in pools:
        pool.shutdown()


def _shut_down_at_exit() -> None:
    """Interpreter exit: every pool, then the watcher, which sweeps what no one can read now."""
    _shut_down(exiting=True)


def _forget_in_child() -> None:
    """After `os.fork`: the parent's pools belong to the parent; start afresh, touch nothing.

    The child also forgets the parent's processes in `multiprocessing`'s own list:
    multiprocessing empties it only in the children it starts itself, and a child made by a
    plain `os.fork` (inside an `imap` loop, say) that exits normally would otherwise run
    multiprocessing's exit hook over the parent's daemonic processes, parmap's workers
    among them: SIGTERM each, then fail to join it. None of them is this child's child.
    """
    global _lock, _pools
    _lock = threading.RLock()
    _pools = {}
    multiprocessing.process._children.clear()  # type: ignore[attr-defined]


# atexit runs hooks last-registered first: pools close before multiprocessing's own hook
# terminates daemonic children, so no worker is seen dying and respawned during exit.
atexit.register(_shut_down_at_exit)
os.register_at_fork(after_in_child=_forget_in_child)
