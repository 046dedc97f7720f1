"""`report_progress`: a long task moves the caller's progress bar between item completions.

The backend running a chunk installs a *reporter* for the current thread; the task calls
[`report_progress()`][parmap.report_progress], which is throttled to one message per `REPORT_INTERVAL`
seconds, so calling it in a tight loop costs a clock read and a comparison.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Optional

#: Minimum seconds between two reports of one worker: 10 updates a second is smooth for a
#: person watching and negligible for the pipe.
REPORT_INTERVAL = 0.1

Reporter = Callable[[int, float], None]

_current = threading.local()

#: The position of the running item when items of one thread interleave (`async def`
#: tasks with `concurrency`); None on the plain path, where the result list's length is it.
_position: contextvars.ContextVar[int | None] = contextvars.ContextVar("parmap_item_position", default=None)


def set_position(position: int) -> None:
    """Name the position of the item running in this context (an `async def` item's task)."""
    _position.set(position)


#: What `install` replaced, for `restore` (a nested map's chunk runs inside a task).
Installed = tuple[Optional[Reporter], Optional[list[Any]]]


def install(reporter: Reporter | None, values: list[Any] | None) -> Installed:
    """Set the reporter of the chunk running in this thread; return what was there.

    `values` is the chunk's growing result list: its length is the position of the item
    running, so the hot loop need not record positions for `report_progress`.
    """
    previous: Installed = (getattr(_current, "reporter", None), getattr(_current, "values", None))
    _current.reporter = reporter
    _current.values = values
    _current.last = 0.0
    return previous


def restore(previous: Installed) -> None:
    _current.reporter, _current.values = previous


@contextlib.contextmanager
def installed(reporter: Reporter | None, values: list[Any] | None) -> Iterator[None]:
    """[install][] for the duration of one chunk; what was there is back on every exit path."""
    previous = install(reporter, values)
    try:
        yield
    finally:
        restore(previous)


def report_progress(done: float, total: float | None = None) -> None:
    """Report how far the running item has got: a fraction (`0.4`) or `done` of `total` units.

    The caller's bar advances by that fraction of one item; when the item finishes, the bar
    counts it exactly once, whatever was reported. Outside a parmap task it does nothing.

    Raises:
        ValueError: the fraction is outside `[0, 1]` or `total` is not positive.
    """
    if total is not None:
        if not total > 0:
            raise ValueError(f"total must be > 0, got {total!r}")
        fraction = done / total
    else:
        fraction = float(done)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"progress must be a fraction in [0, 1] (or done <= total), got {fraction!r}")
    reporter: Reporter | None = getattr(_current, "reporter", None)
    if reporter is None:
        return
    now = time.monotonic()
    if now - _current.last < REPORT_INTERVAL:
        return
    _current.last = now
    position = _position.get()
    reporter(len(_current.values) if position is None else position, fraction)
