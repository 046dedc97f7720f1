"""The tutorial's second `Pool.map()` example, in parmap: a task returning nothing.

`map()` is called only for its effect: it blocks until all ten calls have finished.

Run it with `python examples/seed_map_no_results.py`. Set the environment variable
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
def task(identifier: int) -> None:
    """Generate a random value, report it, and block for that long."""
    value = random.random()
    print(f"Task {identifier} executing with {value}", flush=True)
    sleep(value * SLEEP_SCALE)


if __name__ == "__main__":
    task.map(range(10))  # blocks until every task has completed
    print("All tasks done", flush=True)
