"""Memory-mapped slices as items: by reference, against plain arrays of the same size.

Run: ``python -m benchmarks.memmap_items``. A float64 file of `FILE_MEGABYTES` is cut into
`SLICES` row blocks; each map sums every block in a warm process pool. Three ways:

* ``memmap slices``: the blocks as `numpy.memmap` views, which parmap sends as (file,
  offset, shape, dtype, mode): a few hundred bytes each, mapped again in the worker;
* ``plain arrays``: in-memory copies of the same blocks, sent through shared memory;
* ``memmap pickled whole``: the views with parmap's memmap reducer switched off (as before
  issue 12), which pickles each block's bytes.

Prints the median seconds of `ROUNDS` maps per way and its ratio to the memmap slices.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import parmap
from parmap import _reducers, parallel

#: Big enough that copying dominates a map (4 MiB per slice), small enough for a laptop's
#: page cache and a shared 2-core machine.
FILE_MEGABYTES = 128
SLICES = 32
ROUNDS = 5
COLUMNS = 512


def _total(block: Any) -> float:
    return float(block.sum())


@contextmanager
def _whole_memmaps() -> Iterator[None]:
    """Pickle memmaps as arrays (the reducer declines every one) for the block."""
    original = _reducers.reduce_memmap
    _reducers.reduce_memmap = lambda obj, numpy: None
    try:
        yield
    finally:
        _reducers.reduce_memmap = original


def _median_seconds(run: Callable[[], object]) -> float:
    run()  # warm: the pool is up, the pages are cached
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def measure(directory: Path) -> dict[str, float]:
    """Median seconds of one map of every block, per way of sending them."""
    import numpy

    rows = FILE_MEGABYTES * (1 << 20) // (8 * COLUMNS)
    path = directory / "data.bin"
    array = numpy.memmap(path, dtype=numpy.float64, mode="w+", shape=(rows, COLUMNS))
    array[:] = 1.0
    array.flush()
    source = numpy.memmap(path, dtype=numpy.float64, mode="r", shape=(rows, COLUMNS))
    step = rows // SLICES
    views = [source[start : start + step] for start in range(0, step * SLICES, step)]
    copies = [numpy.array(view) for view in views]
    task = parallel(_total, workers=2, chunksize=1)
    timings = {
        "memmap slices": _median_seconds(lambda: task.map(views)),
        "plain arrays": _median_seconds(lambda: task.map(copies)),
    }
    with _whole_memmaps():
        timings["memmap pickled whole"] = _median_seconds(lambda: task.map(views))
    return timings


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        timings = measure(Path(directory))
    parmap.shutdown()
    base = timings["memmap slices"]
    print(f"{SLICES} slices of {FILE_MEGABYTES // SLICES} MiB, median of {ROUNDS} maps")
    print("items                  median s   ratio to memmap slices")
    for name, seconds in timings.items():
        print(f"{name:<22} {seconds:9.4f}   {seconds / base:6.1f}x")


if __name__ == "__main__":
    main()
