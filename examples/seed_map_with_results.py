"""The tutorial's first `Pool.map()` example, in parmap: a map that returns results.

Ten calls of `task()`, one per integer 0..9, run in worker processes (one per usable
CPU, like `Pool()`); the results come back in input order. No pool object to create
or close: the decorated function uses parmap's shared pool, closed at exit.

Run it with `python examples/seed_map_with_results.py`. Set the environment variable
`PARMAP_EXAMPLE_SLEEP_SCALE` (default 1) to shorten the simulated work, e.g. `0.01`.
"""

from __future__ import annotations

import os
import random
from time import sleep

from parmap import parallel

#: Multiplies every simulated sleep; 1 keeps the tutorial's timing.
SLEEP_SCALE = float(os.environ.get("PARMAP_EXAMPLE_SLEEP_SCALE", "1"))


@parallel
def task(identifier: int) -> float:
    """Generate a random value, report it, block for that long, return it."""
    value = random.random()  # every worker has random state of its own
    print(f"Task {identifier} executing with {value}", flush=True)
    sleep(value * SLEEP_SCALE)
    return value


if __name__ == "__main__":
    # Blocks until every call is done, then yields the results in input order.
    for result in task.map(range(10)):
        print(f"Got result: {result}", flush=True)
