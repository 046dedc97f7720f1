"""Is a scaling curve limited by parmap or by the machine? ``python -m benchmarks.ceiling``.

Runs the cpu workload's item (``tasks.burn``, ~1 ms) three ways on the same machine, in
the same run, rounds interleaved:

* *independent*: ``workers`` processes, each running ``items / workers`` items in a plain
  loop, started together; the wall time of the slowest. No scheduling at all, so its
  efficiency is what the machine allows when every core is busy (shared hosts, frequency
  scaling and virtual cores show here, not in a one-process serial run);
* *parmap*: ``parallel(burn, workers=workers).map(range(items))`` on a warm pool;
* *mp-pool*: ``multiprocessing.Pool(workers).map`` with its default chunksize, warm.

Efficiency = (serial time / workers) / wall time, where the serial time is measured in the
same round. It prints one line per round and the medians.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import statistics
import time

import parmap

from .tasks import burn, calibrate_burn
from .workloads import CPU_ITEM_SECONDS

DEFAULT_WORKERS = 16
DEFAULT_ITEMS = 4_000
DEFAULT_ROUNDS = 3


def _run_items(count: int, loops: int) -> float:
    """Seconds to run ``count`` items in a plain loop."""
    started = time.perf_counter()
    for index in range(count):
        burn(index, loops)
    return time.perf_counter() - started


def measure_round(workers: int, items: int, loops: int) -> dict[str, float]:
    """One round: serial, independent processes, parmap and the stdlib Pool; efficiencies."""
    serial = _run_items(items // 4, loops) * 4
    share = functools.partial(_run_items, loops=loops)
    task = functools.partial(burn, loops=loops)
    context = multiprocessing.get_context("fork")
    with context.Pool(workers) as pool:
        pool.map(share, [1] * workers, chunksize=1)
        started = time.perf_counter()
        pool.map(share, [items // workers] * workers, chunksize=1)
        independent = time.perf_counter() - started
    wrapped = parmap.parallel(task, workers=workers)
    wrapped.map(range(workers))
    started = time.perf_counter()
    wrapped.map(range(items))
    with_parmap = time.perf_counter() - started
    parmap.shutdown()
    with context.Pool(workers) as pool:
        pool.map(task, range(workers))
        started = time.perf_counter()
        pool.map(task, range(items))
        with_pool = time.perf_counter() - started
    ideal = serial / workers
    return {"independent": ideal / independent, "parmap": ideal / with_parmap, "mp-pool": ideal / with_pool}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ceiling", description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--items", type=int, default=DEFAULT_ITEMS)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    args = parser.parse_args(argv)
    loops = calibrate_burn(CPU_ITEM_SECONDS)
    print(f"{os.cpu_count()} CPUs, {args.workers} workers, {args.items} items of ~1 ms ({loops} loop steps)")
    rounds = []
    for number in range(1, args.rounds + 1):
        result = measure_round(args.workers, args.items, loops)
        rounds.append(result)
        print(f"round {number}: " + "  ".join(f"{name} {value:.2f}" for name, value in result.items()))
    print("median efficiency: " + "  ".join(
        f"{name} {statistics.median(r[name] for r in rounds):.2f}" for name in rounds[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
