"""Per-item random seeds: the same ``(seed, index)`` gives the same stream everywhere.

The derivation depends only on the user's seed and the item's input index, never on the
worker, the chunk or the order items finish in, so results are reproducible across worker
counts, chunk sizes, backends and start methods.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import random
import sys
import threading
from typing import Any

from ._transport import digest

_current = threading.local()


def derive_seed(seed: int, index: int) -> int:
    """A 64-bit seed for item ``index`` of a job seeded with ``seed``."""
    return int.from_bytes(digest(f"parmap:{seed}:{index}".encode(), 8), "little")


def seed_item(seed: int | None, index: int) -> None:
    """Before item ``index`` runs: seed ``random`` and NumPy's global generator (if imported)."""
    _current.seed = seed
    _current.index = index
    if seed is None:
        return
    item_seed = derive_seed(seed, index)
    random.seed(item_seed)
    numpy = _numpy()
    if numpy is not None:
        numpy.random.seed(item_seed % (1 << 32))


def current_context() -> tuple[int | None, int]:
    """This thread's ``(seed, index)`` of the running item, to restore after a nested chunk."""
    return getattr(_current, "seed", None), getattr(_current, "index", 0)


def restore_context(context: tuple[int | None, int]) -> None:
    _current.seed, _current.index = context


@functools.lru_cache(maxsize=1)
def _numpy() -> Any:
    """NumPy if installed, imported on the first seeded item: a task that imports NumPy
    itself must find its global generator already seeded."""
    if importlib.util.find_spec("numpy") is None:
        return None
    return importlib.import_module("numpy")


def reseed_worker() -> None:
    """Give a new worker fresh random state, so forked workers never share their parent's."""
    fresh = int.from_bytes(os.urandom(8), "little")
    random.seed(fresh)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(fresh % (1 << 32))


def current_item_seed() -> int:
    """The seed of the item running in this thread; raises ``RuntimeError`` outside a seeded task."""
    seed = getattr(_current, "seed", None)
    if seed is None:
        raise RuntimeError("item_rng() needs a task running under @parallel(seed=...)")
    return derive_seed(seed, _current.index)


def item_rng() -> random.Random:
    """A ``random.Random`` for the running item, derived from ``(seed, item index)``.

    Raises:
        RuntimeError: called outside a task of a job with ``seed=`` set.
    """
    return random.Random(current_item_seed())


def item_numpy_rng() -> Any:
    """A ``numpy.random.Generator`` for the running item, derived from ``(seed, item index)``.

    Raises:
        RuntimeError: called outside a task of a job with ``seed=`` set.
        ImportError: NumPy is not installed.
    """
    import numpy

    return numpy.random.default_rng(current_item_seed())
