"""Progress from inside long tasks: ``parmap.report_progress`` moves the bar between items.

Each item "trains a model" for a number of epochs and reports after every epoch, so the
caller's progress bar advances while items are still running, not only when they finish.
The bar still counts each item exactly once when it completes.

Run it with ``python examples/progress_from_tasks.py``. Set the environment variable
``PARMAP_EXAMPLE_SLEEP_SCALE`` (default 1) to shorten the simulated work, e.g. ``0.05``.
"""

from __future__ import annotations

import os
import time

import parmap
from parmap import parallel

#: Multiplies every simulated sleep; 1 gives a run of about five seconds.
SLEEP_SCALE = float(os.environ.get("PARMAP_EXAMPLE_SLEEP_SCALE", "1"))


@parallel(workers=2, progress={"desc": "training", "unit": "model"})
def train(epochs: int) -> float:
    """Pretend to train for ``epochs`` epochs; report after each one; return a final loss."""
    loss = 1.0
    for epoch in range(epochs):
        time.sleep(0.1 * SLEEP_SCALE)  # one epoch of work
        loss *= 0.9
        parmap.report_progress(epoch + 1, epochs)  # throttled: cheap even in a tight loop
    return loss


if __name__ == "__main__":
    losses = train.map([10, 20, 15, 25, 10])
    print("final losses:", [round(loss, 3) for loss in losses])
    print("a plain call reports to nobody and works as before:", round(train(3), 3))
