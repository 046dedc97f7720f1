"""Module-level tasks for the tests of issue 6 (importable by spawned workers).

Synchronisation goes through files in a directory the test owns: a task writes
``started-<x>`` and waits for ``go`` (or for enough ``started-*`` files), so no test
depends on one sleep racing another.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

# Imported here, not inside the tasks: parmap seeds NumPy's global generator only once NumPy
# is imported in the worker, and a spawned worker imports this module before its first item.
import numpy

import parmap

#: Upper bound on any wait inside a task: a broken test fails instead of hanging a worker.
WAIT_LIMIT_SECONDS = 30.0


def wait_for(condition: Any) -> None:
    deadline = time.monotonic() + WAIT_LIMIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the test never released this task")
        time.sleep(0.005)


# ---------------------------------------------------------------- seeds


def seeded_draws(x: int) -> tuple[int, float, float, float, float]:
    """Draws from the global generators (seeded per item) and from the per-item generators."""
    return (
        x,
        random.random(),
        float(numpy.random.random()),
        parmap.item_rng().random(),
        float(parmap.item_numpy_rng().random()),
    )


def item_rng_draws(x: int) -> tuple[int, float, float]:
    """Only the per-item generators: safe on the thread backend, whose threads share ``random``."""
    return x, parmap.item_rng().random(), float(parmap.item_numpy_rng().random())


def record_first_draws(directory: str) -> None:
    """A pool initializer: each worker writes its first draws to ``<dir>/draws-<pid>``."""
    Path(directory, f"draws-{os.getpid()}.tmp").write_text(f"{numpy.random.random()!r} {random.random()!r}")
    os.replace(Path(directory, f"draws-{os.getpid()}.tmp"), Path(directory, f"draws-{os.getpid()}"))


def call_item_rng(_: object) -> float:
    return parmap.item_rng().random()


# ---------------------------------------------------------------- checkpoints


def logged_square(args: tuple[str, int, int, int]) -> int:
    """``x * x``; logs ``run x`` to ``<dir>/log``; item ``fail_at`` raises the first time only.

    ``run`` tells the runs of a test apart, so an item still finishing from a cancelled run
    cannot be mistaken for one of the next run.
    """
    directory, x, fail_at, run = args
    with open(os.path.join(directory, "log"), "a") as log:
        log.write(f"{run} {x}\n")
    marker = Path(directory, "failed-once")
    if x == fail_at and not marker.exists():
        marker.write_text("")
        raise ValueError(f"first attempt at item {x} fails")
    return x * x


def logged_add(directory: str, x: int, fail_at: int, run: int) -> int:
    """The starmap form of :func:`logged_square`."""
    return logged_square((directory, x, fail_at, run))


def run_log(directory: str, run: int | None = None) -> list[int]:
    """The items logged by :func:`logged_square` (in run ``run`` only, if given)."""
    path = Path(directory, "log")
    if not path.exists():
        return []
    entries = [line.split() for line in path.read_text().splitlines()]
    return [int(x) for tag, x in entries if run is None or int(tag) == run]


def checkpoint_value(x: int) -> tuple[int, str]:
    """A result whose size varies, so rows span pages of varied size: about a millisecond of work."""
    end = time.perf_counter() + 0.001
    while time.perf_counter() < end:
        pass
    return x, "v" * (x % 700)


def cube(x: int) -> int:
    return x * x * x


# ---------------------------------------------------------------- progress reports


def report_half_then_wait(args: tuple[str, int]) -> int:
    directory, x = args
    Path(directory, f"started-{x}").write_text("")
    parmap.report_progress(0.5)
    wait_for(lambda: Path(directory, "go").exists())
    return x


def report_many(x: int) -> int:
    for done in (1, 2, 3):
        parmap.report_progress(done, total=7)
    parmap.report_progress(0.3)
    parmap.report_progress(1.0)
    return x


def report_out_of_range(x: int) -> int:
    if x == 2:
        parmap.report_progress(1.5)
    return x


# ---------------------------------------------------------------- run insights


def exit_once_on_seven(args: tuple[str, int]) -> int:
    """The worker running item 7 exits the first time (a lost worker), then it succeeds."""
    directory, x = args
    marker = Path(directory, "exited-once")
    if x == 7 and not marker.exists():
        marker.write_text("")
        os._exit(1)
    return x


def slow_on_thirteen(x: int) -> int:
    if x == 13:
        time.sleep(0.3)
    return x
