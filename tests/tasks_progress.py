"""Module-level tasks and a recording bar for tests/test_progress_display.py.

Importable by spawned workers: a task that runs a map with a bar of its own returns what
that inner bar was set to, read from the bars made in the worker's own process.
"""

from __future__ import annotations

import io
from typing import Any, ClassVar

import tqdm.std

import parmap
from parmap import parallel


class RecordedBar(tqdm.std.tqdm):  # type: ignore[misc]
    """A tqdm bar that writes to a buffer and remembers, per process, every bar made and each update."""

    made: ClassVar[list[RecordedBar]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("file", io.StringIO())
        super().__init__(*args, **kwargs)
        self.received: list[float] = []
        RecordedBar.made.append(self)

    def update(self, n: float = 1) -> bool | None:
        self.received.append(n)
        return super().update(n)  # type: ignore[no-any-return]


class FlavouredBar(RecordedBar):
    """A bar class with a keyword argument of its own, which only it accepts."""

    def __init__(self, *args: Any, flavour: str = "plain", **kwargs: Any) -> None:
        self.flavour = flavour
        super().__init__(*args, **kwargs)


def square(x: int) -> int:
    return x * x


def report_a_quarter(x: int) -> int:
    parmap.report_progress(0.25)
    return x


#: An inner map on threads: in a thread-backend task it runs on a thread pool one level down.
inner_on_threads = parallel(square, backend="thread", workers=2)

#: An inner map on processes: in a worker process it runs serially in that process.
inner_on_processes = parallel(square, workers=2)


def bar_of_an_inner_map(n: int, on_threads: bool = False) -> tuple[bool, int, float]:
    """Map `square` over `range(n)` with a bar; return that bar's `leave`, line and final count."""
    inner = inner_on_threads if on_threads else inner_on_processes
    assert inner.map(range(n), progress={"tqdm_class": RecordedBar}) == [x * x for x in range(n)]
    bar = next(bar for bar in reversed(RecordedBar.made) if bar.total == n)
    return bool(bar.leave), abs(bar.pos), bar.n


def inner_bar_on_threads(n: int) -> tuple[bool, int, float]:
    return bar_of_an_inner_map(n, on_threads=True)
