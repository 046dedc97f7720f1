"""The tutorial's chunksize comparison, with parmap: 40 items of 1 s on 4 workers.

The tutorial runs `pool.map(task, range(40), chunksize=1)` and then `chunksize=10`
(12.2 s and 10.2 s on its author's machine). Here one decorated function runs the
same job three times, overriding `chunksize` per call: `1`, `10` and `"auto"`
(parmap's default, which measures the task and needs no tuning). The ideal is
40 x 1 s / 4 = 10 s.

Run it with `python examples/seed_chunksize.py` (about 30 s). Set the environment
variable `PARMAP_EXAMPLE_SLEEP_SCALE` (default 1) to shorten the simulated work,
e.g. `0.05` for a run of under two seconds.
"""

from __future__ import annotations

import os
import random
import time
from time import sleep
from typing import Literal, Union

from parmap import parallel

#: Multiplies every simulated sleep; 1 keeps the tutorial's timing.
SLEEP_SCALE = float(os.environ.get("PARMAP_EXAMPLE_SLEEP_SCALE", "1"))

WORKERS = 4
ITEMS = 40
TASK_SECONDS = 1.0 * SLEEP_SCALE


@parallel(workers=WORKERS)
def task(identifier: int) -> float:
    """Generate a random value, report it, block for one second, return the value."""
    value = random.random()
    print(f"Task {identifier} executing with {value}", flush=True)
    sleep(TASK_SECONDS)
    return value


@parallel(workers=WORKERS)
def warm_up(identifier: int) -> int:
    """Decorated alike, so it shares `task`'s pool.

    Starting it here keeps start-up out of the timings.
    """
    return identifier


def time_map(chunksize: Union[int, Literal["auto"]]) -> float:
    """Seconds one `task.map` over the 40 items takes with `chunksize`."""
    started = time.perf_counter()
    results = task.map(range(ITEMS), chunksize=chunksize)
    elapsed = time.perf_counter() - started
    assert len(results) == ITEMS
    return elapsed


if __name__ == "__main__":
    warm_up.map(range(WORKERS), chunksize=1)
    timings = {chunksize: time_map(chunksize) for chunksize in (1, 10, "auto")}
    ideal = ITEMS * TASK_SECONDS / WORKERS
    print(
        f"\n{ITEMS} items of {TASK_SECONDS:g} s on {WORKERS} workers; "
        f"ideal {ideal:.2f} s"
    )
    for chunksize, elapsed in timings.items():
        print(
            f"chunksize={chunksize!r:>6}: {elapsed:6.2f} s  "
            f"({elapsed / ideal:.2f} x ideal)"
        )
