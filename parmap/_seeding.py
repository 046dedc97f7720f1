"""Per-item random seeds: the same `(seed, index)` gives the same stream everywhere.

The derivation depends only on the user's seed and the item's input index, never on the
worker, the chunk or the order items finish in, so results are reproducible across worker
counts, chunk sizes, backends and start methods.

Who seeds what (the decision for the global generators):

* In a worker process, a seeded item seeds the global `random` and NumPy generators before
  it runs: the process is parmap's, and a task written against `random.random()` must be
  reproducible there.
* The serial backend runs items in the caller's own thread, so it seeds the global
  generators the same way, but it saves their state when the chunk starts and restores it
  when the chunk ends, on every exit path: after a map the caller's `random` is where it
  was, as if nothing had drawn from it.
* The thread backend never touches the global generators: threads share them, so seeding
  them per item could not be reproducible and would disturb the caller's stream; tasks
  there use [item_rng][] (the item's own generator, which every backend provides).

The item's `(seed, index)` lives in a context variable that [item_context][] installs
for one chunk and restores when the chunk ends, however it ends (Ctrl-C included). A
context variable rather than a thread-local: the items of an `async def` task that run
at once on one event loop (`concurrency=N`) are asyncio tasks of one thread, each in its
own context, so each sees its own item. With `concurrency` > 1 the global generators are
not seeded (items interleave on one thread, so their draws could not be reproducible);
[item_rng][] is.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import importlib.util
import os
import random
import sys
from collections.abc import Iterator
from typing import Any

from ._transport import digest

#: `(seed, index)` of the item running in this context, or None outside a seeded item.
_current: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("parmap_item_seed", default=None)


def derive_seed(seed: int, index: int) -> int:
    """A 64-bit seed for item `index` of a job seeded with `seed`."""
    return int.from_bytes(digest(f"parmap:{seed}:{index}".encode(), 8), "little")


class ItemSeeder:
    """Seeds each item of one chunk: the thread's item context, and optionally the globals."""

    def __init__(self, seed: int, seed_globals: bool) -> None:
        self._seed = seed
        self._seed_globals = seed_globals

    def seed(self, index: int) -> None:
        """Before item `index` runs (in the item's own context, for an `async def` item)."""
        _current.set((self._seed, index))
        if not self._seed_globals:
            return
        item_seed = derive_seed(self._seed, index)
        random.seed(item_seed)
        numpy = _numpy()
        if numpy is not None:
            numpy.random.seed(item_seed % (1 << 32))


@contextlib.contextmanager
def item_context(seed: int | None, *, seed_globals: bool, restore_globals: bool = False) -> Iterator[ItemSeeder | None]:
    """For one chunk: an [ItemSeeder][] when `seed` is set (else `None`).

    On exit, however the chunk ends, the thread's item context is what it was before (a
    nested chunk inside a task restores its outer item), and with `restore_globals` the
    global generators get back the state they had (the serial backend, in the caller's
    thread).
    """
    if seed is None:
        yield None
        return
    outer = _current.get()
    saved = _save_globals() if seed_globals and restore_globals else None
    try:
        yield ItemSeeder(seed, seed_globals)
    finally:
        _current.set(outer)
        if saved is not None:
            _restore_globals(saved)


def _save_globals() -> tuple[Any, Any]:
    numpy = sys.modules.get("numpy")
    return random.getstate(), None if numpy is None else numpy.random.get_state()


def _restore_globals(saved: tuple[Any, Any]) -> None:
    random.setstate(saved[0])
    numpy = sys.modules.get("numpy")
    if saved[1] is not None and numpy is not None:
        numpy.random.set_state(saved[1])


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
    """The seed of the item running in this thread; raises `RuntimeError` outside a seeded task."""
    current = _current.get()
    if current is None:
        raise RuntimeError("item_rng() needs a task running under @parallel(seed=...)")
    return derive_seed(*current)


def item_rng() -> random.Random:
    """A `random.Random` for the running item, derived from `(seed, item index)`.

    Raises:
        RuntimeError: called outside a task of a job with `seed=` set.
    """
    return random.Random(current_item_seed())


def item_numpy_rng() -> Any:
    """A `numpy.random.Generator` for the running item, derived from `(seed, item index)`.

    Raises:
        RuntimeError: called outside a task of a job with `seed=` set.
        ImportError: NumPy is not installed.
    """
    import numpy

    return numpy.random.default_rng(current_item_seed())
