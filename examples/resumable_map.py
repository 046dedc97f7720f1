"""A resumable map: killed with SIGKILL in the middle of a run, then resumed from its checkpoint.

The example runs itself in a child process that maps a slow function over 200 items with
``checkpoint=``, kills that child with ``kill -9`` once the checkpoint (a plain SQLite file)
holds a fifth of the results, then runs the same call here: the items the child saved come
from the checkpoint file, the others run now, and the result list is complete.

Run it with ``python examples/resumable_map.py``. Set the environment variable
``PARMAP_EXAMPLE_SLEEP_SCALE`` (default 1) to shorten the simulated work, e.g. ``0.05``.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from parmap import parallel

#: Multiplies every simulated sleep; 1 makes the first run last about five seconds.
SLEEP_SCALE = float(os.environ.get("PARMAP_EXAMPLE_SLEEP_SCALE", "1"))

ITEMS = range(200)


@parallel(workers=2)
def slow_square(x: int) -> int:
    time.sleep(0.05 * SLEEP_SCALE)  # stands in for real work
    return x * x


def run(checkpoint: Path, label: str) -> None:
    """The map both runs make: same function, same input, same checkpoint file."""
    results = slow_square.map(ITEMS, checkpoint=checkpoint, stats=True)
    assert results == [x * x for x in ITEMS]
    print(f"{label} complete: {len(results)} results; {results.stats.resumed_items} came from the checkpoint",
          flush=True)


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = Path(directory, "squares.sqlite")
        child = subprocess.Popen([sys.executable, __file__, "--run", str(checkpoint)])
        saved = wait_for_saved_results(checkpoint, child, at_least=len(ITEMS) // 5)
        if child.poll() is None and saved < len(ITEMS):
            os.kill(child.pid, signal.SIGKILL)  # no cleanup, no chance to save anything more
            print(f"killed the first run with SIGKILL once it had saved {saved} results", flush=True)
        else:
            print("the first run finished before it could be killed", flush=True)
        child.wait()
        run(checkpoint, "second run")  # it skips what the first one saved


def wait_for_saved_results(checkpoint: Path, child: subprocess.Popen[bytes], at_least: int) -> int:
    """Poll the checkpoint (a plain SQLite file) until the child saved ``at_least`` results or ended."""
    deadline = time.monotonic() + 60
    saved = 0
    while saved < at_least and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            with sqlite3.connect(checkpoint, timeout=5) as connection:
                (saved,) = connection.execute("SELECT count(*) FROM parmap_results").fetchone()
            connection.close()
        except sqlite3.OperationalError:
            pass  # the child has not created the file's tables yet
    return saved


if __name__ == "__main__":
    if sys.argv[1:2] == ["--run"]:
        run(Path(sys.argv[2]), "first run")
    else:
        main()
