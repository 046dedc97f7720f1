"""parmap: run any single-argument function in parallel with one decorator.

>>> from parmap import parallel
>>> @parallel(workers=2)
... def square(x):
...     return x * x
>>> square.map(range(5))
[0, 1, 4, 9, 16]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import errors
from ._async_maps import AsyncMapIterator
from ._config import default_workers
from ._decorator import ParallelFunction, parallel
from ._install_check import warn_if_clashing
from ._registry import shutdown
from ._reporting import report_progress
from ._result import AsyncResult
from ._scope import config
from ._seeding import item_numpy_rng, item_rng
from ._state import shared, worker_state
from ._stats import RunStats, WorkerStats
from .errors import (
    CheckpointLockedError,
    CheckpointMismatchError,
    InitializerError,
    ParmapError,
    ParmapInstallWarning,
    PoolClosedError,
    PoolStartError,
    RemoteTraceback,
    ResultTimeoutError,
    SerializationError,
    TaskStopIteration,
    TaskTimeoutError,
    WorkerLostError,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncMapIterator",
    "AsyncResult",
    "CancelledError",
    "CheckpointLockedError",
    "CheckpointMismatchError",
    "InitializerError",
    "ParallelFunction",
    "ParmapError",
    "ParmapInstallWarning",
    "PoolClosedError",
    "PoolStartError",
    "RemoteTraceback",
    "ResultTimeoutError",
    "RunStats",
    "SerializationError",
    "TaskStopIteration",
    "TaskTimeoutError",
    "WorkerLostError",
    "WorkerStats",
    "config",
    "default_workers",
    "item_numpy_rng",
    "item_rng",
    "parallel",
    "report_progress",
    "shared",
    "shutdown",
    "worker_state",
]

if TYPE_CHECKING:
    from .errors import CancelledError


def __getattr__(name: str) -> Any:
    """`CancelledError`, made on first use (see [parmap.errors][])."""
    if name == "CancelledError":
        return errors.CancelledError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


for _name in __all__:
    _object = globals().get(_name)
    if getattr(_object, "__module__", "").startswith("parmap."):
        try:
            _object.__module__ = "parmap"
        except (AttributeError, TypeError):
            pass
del _name, _object

warn_if_clashing()
