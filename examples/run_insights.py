"""Run insights: what ``chunksize="auto"`` chose and where a map's time went.

Two workloads, one of tiny items and one of uneven items, each mapped with ``stats=True``;
the returned list carries a ``RunStats`` record, printed as a table: chunk sizes, per-worker
busy time and utilisation, pickling and queue time, and the slowest items.

Run it with ``python examples/run_insights.py``.
"""

from __future__ import annotations

import time

from parmap import parallel


@parallel(workers=2)
def tiny(x: int) -> int:
    """Microseconds per item: "auto" sends thousands at a time."""
    return x * x + 1


@parallel(workers=2)
def uneven(x: int) -> int:
    """Between 0 and 9 ms per item: "auto" keeps chunks short and shrinks them at the end."""
    time.sleep(0.001 * (x * 7 % 10))
    return x


def main() -> None:
    for label, task, items in (("tiny items", tiny, range(200_000)), ("uneven items", uneven, range(300))):
        results = task.map(items, stats=True)
        print(f"--- {label}")
        print(results.stats)
        sizes = results.stats.chunk_sizes
        print(f"chunk sizes: first {sizes[:4]}, largest {max(sizes)}, last {sizes[-4:]}\n")
    assert uneven.last_stats() is not None


if __name__ == "__main__":
    main()
