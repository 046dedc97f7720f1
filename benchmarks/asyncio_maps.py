"""parmap's asyncio API against aiomultiprocess, `asyncio.gather` and `run_in_executor`.

Two workloads, each contender side by side in the same run:

* `async-tasks`: 1,000 `async def` items that each `await asyncio.sleep(0.01)` and return
  `x * 2`, on 2 worker processes running 50 items at once each (parmap's `concurrency=50`,
  aiomultiprocess's `childconcurrency=50`), against `asyncio.gather` in one process, both
  unbounded and limited by a semaphore to the same 100 items at once. The ideal for
  2 x 50 is `1000 * 0.01 / 100` = 0.1 s.
* `await-overhead`: the cost of one awaited map of 8 trivial items on a warm pool of 2,
  in milliseconds per call (200 calls back to back), against `loop.run_in_executor` on a
  `ProcessPoolExecutor(2)`.

Every round runs each contender in a fresh subprocess (the order rotates from round to
round); the subprocess starts its pool and makes one untimed warm-up call of the full size
before it times anything, so no cold pool is mixed into the timings. The report gives the
median of the rounds with their min and max, and ratios of medians. It writes
`benchmarks-asyncio.md` and `benchmarks-asyncio.json` into `docs/` (or `--output-dir`).

Run: `python -m benchmarks.asyncio_maps` (`--rounds N`, `--quick`, `--output-dir DIR`, `--no-write`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import importlib.util
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import parmap

from ._reporting_common import RunOptions, environment, load_note, rotated, run_in_subprocess, spread, timed

#: Worker processes, and `async def` items each worker awaits at once (the issue's 2 x 50).
WORKERS = 2
CONCURRENCY = 50
#: The in-process reference runs as many items at once as the two workers together.
GATHER_LIMIT = WORKERS * CONCURRENCY

#: Items of the `async-tasks` workload and the sleep each one awaits.
TASK_ITEMS = 1_000
TASK_SLEEP_SECONDS = 0.01
#: Timed maps per subprocess in `async-tasks`; the round's sample is their median (one map
#: is ~0.1 s, short enough for a scheduler hiccup on 2 cores to dominate a single one).
TASK_CALLS_PER_ROUND = 3

#: Items per awaited map in `await-overhead`, and the awaited maps timed back to back.
OVERHEAD_ITEMS = 8
OVERHEAD_CALLS = 200
#: Untimed calls first, so every worker of the pool has started and run the function.
OVERHEAD_WARMUP_CALLS = 20

DEFAULT_ROUNDS = 5
#: `--quick`: fewer rounds and a fifth of the work, for a look in a few seconds.
QUICK_ROUNDS = 3
QUICK_SCALE = 0.2

#: A subprocess that takes longer than this has hung (a full-size one takes a few seconds).
CHILD_TIMEOUT_SECONDS = 300
#: Distributions whose versions the report gives.
DISTRIBUTIONS = ("parmap-decorator", "aiomultiprocess")

REPORT_NAME = "benchmarks-asyncio"
RUN_OPTIONS = RunOptions("benchmarks.asyncio_maps", DEFAULT_ROUNDS, QUICK_ROUNDS, QUICK_SCALE)


# ------------------------------------------------------------------ the tasks


async def sleepy_double(x: int) -> int:
    """The `async-tasks` item: wait 10 ms without using the CPU, return `x * 2`."""
    await asyncio.sleep(TASK_SLEEP_SECONDS)
    return x * 2


def increment(x: int) -> int:
    """The `await-overhead` item: nothing to compute, so only the round trip is timed."""
    return x + 1


def increment_chunk(items: Sequence[int]) -> list[int]:
    """All of a call's items in one executor job (one round trip, one worker)."""
    return [increment(x) for x in items]


# The functional form keeps the plain functions importable under their own names, which
# aiomultiprocess and ProcessPoolExecutor pickle by reference.
parallel_sleepy_double = parmap.parallel(sleepy_double, workers=WORKERS, concurrency=CONCURRENCY)
parallel_increment = parmap.parallel(increment, workers=WORKERS)


# ------------------------------------------------------------------ the contenders (run in a subprocess)


async def _timed_async(call: Callable[[], Awaitable[Sequence[int]]], expected: list[int]) -> float:
    started = time.perf_counter()
    result = await call()
    elapsed = time.perf_counter() - started
    if list(result) != expected:
        raise AssertionError("a contender returned wrong results")
    return elapsed


async def _time_calls_async(call: Callable[[], Awaitable[Sequence[int]]], expected: list[int], calls: int,
                            warmup_calls: int) -> list[float]:
    for _ in range(warmup_calls):
        await _timed_async(call, expected)
    return [await _timed_async(call, expected) for _ in range(calls)]


def _tasks_parmap_map(items: list[int]) -> list[float]:
    expected = [x * 2 for x in items]
    timed(lambda: parallel_sleepy_double.map(items), expected)  # warm-up: starts the pool
    samples = [timed(lambda: parallel_sleepy_double.map(items), expected) for _ in range(TASK_CALLS_PER_ROUND)]
    parmap.shutdown()
    return samples


def _tasks_parmap_map_async(items: list[int]) -> list[float]:
    expected = [x * 2 for x in items]
    samples = asyncio.run(_time_calls_async(lambda: parallel_sleepy_double.map_async(items), expected,
                                            TASK_CALLS_PER_ROUND, warmup_calls=1))
    parmap.shutdown()
    return samples


def _tasks_aiomultiprocess(items: list[int]) -> list[float]:
    # Imported here and typed Any: the package ships no type information.
    aiomultiprocess: Any = importlib.import_module("aiomultiprocess")
    expected = [x * 2 for x in items]

    async def run() -> list[float]:
        async with aiomultiprocess.Pool(processes=WORKERS, childconcurrency=CONCURRENCY) as pool:
            return await _time_calls_async(lambda: pool.map(sleepy_double, items), expected,
                                           TASK_CALLS_PER_ROUND, warmup_calls=1)

    return asyncio.run(run())


def _tasks_gather(items: list[int]) -> list[float]:
    expected = [x * 2 for x in items]

    async def gather() -> list[int]:
        return await asyncio.gather(*(sleepy_double(x) for x in items))

    return asyncio.run(_time_calls_async(gather, expected, TASK_CALLS_PER_ROUND, warmup_calls=1))


def _tasks_gather_limited(items: list[int]) -> list[float]:
    expected = [x * 2 for x in items]

    async def gather() -> list[int]:
        semaphore = asyncio.Semaphore(GATHER_LIMIT)

        async def limited(x: int) -> int:
            async with semaphore:
                return await sleepy_double(x)

        return await asyncio.gather(*(limited(x) for x in items))

    return asyncio.run(_time_calls_async(gather, expected, TASK_CALLS_PER_ROUND, warmup_calls=1))


def _per_call_ms(call: Callable[[], Awaitable[Sequence[int]]], items: list[int], calls: int) -> list[float]:
    """One sample: the mean milliseconds of `calls` awaited calls in a row, after the warm-up."""
    expected = [increment(x) for x in items]

    async def run() -> float:
        for _ in range(OVERHEAD_WARMUP_CALLS):
            await _timed_async(call, expected)
        total = sum([await _timed_async(call, expected) for _ in range(calls)])
        return total / calls * 1000

    return [asyncio.run(run())]


def _overhead_parmap_await(items: list[int], calls: int) -> list[float]:
    samples = _per_call_ms(lambda: parallel_increment.map_async(items), items, calls)
    parmap.shutdown()
    return samples


def _overhead_parmap_blocking(items: list[int], calls: int) -> list[float]:
    async def blocking() -> list[int]:  # blocks the loop for the whole map: the sync API, for comparison
        return parallel_increment.map(items)

    samples = _per_call_ms(blocking, items, calls)
    parmap.shutdown()
    return samples


def _overhead_executor_gather(items: list[int], calls: int) -> list[float]:
    with ProcessPoolExecutor(WORKERS) as executor:

        async def gather() -> list[int]:
            loop = asyncio.get_running_loop()
            return await asyncio.gather(*(loop.run_in_executor(executor, increment, x) for x in items))

        return _per_call_ms(gather, items, calls)


def _overhead_executor_chunk(items: list[int], calls: int) -> list[float]:
    with ProcessPoolExecutor(WORKERS) as executor:

        async def chunk() -> list[int]:
            return await asyncio.get_running_loop().run_in_executor(executor, increment_chunk, items)

        return _per_call_ms(chunk, items, calls)


@dataclasses.dataclass(frozen=True)
class Contender:
    """One line of the report: what it runs, and the function that times it in a subprocess."""

    name: str
    workload: str
    description: str
    #: `(items, calls) -> samples`; the round's sample is their median.
    measure: Callable[[list[int], int], list[float]]
    #: The import a contender needs beyond parmap and the standard library.
    requires: str | None = None


TASKS = "async-tasks"
OVERHEAD = "await-overhead"

CONTENDERS = [
    Contender("parmap map", TASKS,
              f"`parallel(sleepy_double, workers={WORKERS}, concurrency={CONCURRENCY}).map(items)`, a blocking call",
              lambda items, calls: _tasks_parmap_map(items)),
    Contender("parmap await map_async", TASKS,
              "the same function, `await f.map_async(items)` inside `asyncio.run`",
              lambda items, calls: _tasks_parmap_map_async(items)),
    Contender("aiomultiprocess", TASKS,
              f"`await pool.map(sleepy_double, items)` on `aiomultiprocess.Pool(processes={WORKERS}, "
              f"childconcurrency={CONCURRENCY})`",
              lambda items, calls: _tasks_aiomultiprocess(items), requires="aiomultiprocess"),
    Contender("gather (unbounded)", TASKS,
              "`asyncio.gather` of every item's coroutine in one process: all at once, the floor for pure waiting",
              lambda items, calls: _tasks_gather(items)),
    Contender(f"gather (Semaphore {GATHER_LIMIT})", TASKS,
              f"the same, each coroutine inside `asyncio.Semaphore({GATHER_LIMIT})`: as many at once as "
              f"{WORKERS} x {CONCURRENCY}, the fair in-process reference",
              lambda items, calls: _tasks_gather_limited(items)),
    Contender("parmap await map_async", OVERHEAD,
              f"`await parallel(increment, workers={WORKERS}).map_async(items)`",
              _overhead_parmap_await),
    Contender("parmap map (blocking)", OVERHEAD,
              "the same function's blocking `.map(items)` called from the coroutine (stalls the loop; for scale)",
              _overhead_parmap_blocking),
    Contender("run_in_executor, per item", OVERHEAD,
              f"`asyncio.gather` of one `loop.run_in_executor(ProcessPoolExecutor({WORKERS}), increment, x)` "
              "per item: the same job (every item sent to the pool, results in order), the reference",
              _overhead_executor_gather),
    Contender("run_in_executor, one chunk", OVERHEAD,
              "one `loop.run_in_executor(executor, increment_chunk, items)`: all items in one job on one "
              "worker, a single round trip (the floor)",
              _overhead_executor_chunk),
]

#: The ratios the report gives: `(workload, numerator, denominator)`; "ideal" is the computed floor.
RATIOS = [
    (TASKS, "parmap map", "aiomultiprocess"),
    (TASKS, "parmap map", f"gather (Semaphore {GATHER_LIMIT})"),
    (TASKS, "parmap map", "ideal"),
    (TASKS, "parmap await map_async", "aiomultiprocess"),
    (TASKS, "parmap await map_async", f"gather (Semaphore {GATHER_LIMIT})"),
    (TASKS, "parmap await map_async", "ideal"),
    (OVERHEAD, "parmap await map_async", "run_in_executor, per item"),
    (OVERHEAD, "parmap await map_async", "run_in_executor, one chunk"),
    (OVERHEAD, "parmap await map_async", "parmap map (blocking)"),
]


def _contender(workload: str, name: str) -> Contender:
    return next(c for c in CONTENDERS if (c.workload, c.name) == (workload, name))


def run_child(workload: str, name: str, items: int, calls: int, result_path: Path) -> None:
    """The subprocess's side: time one contender, write `{"samples": [...]}` to `result_path`."""
    samples = _contender(workload, name).measure(list(range(items)), calls)
    result_path.write_text(json.dumps({"samples": samples}))


# ------------------------------------------------------------------ the driver


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much work one run does."""

    task_items: int
    overhead_items: int
    overhead_calls: int

    @classmethod
    def scaled(cls, scale: float) -> Sizes:
        """The issue's sizes times `scale`, at least one of each."""
        return cls(max(1, round(TASK_ITEMS * scale)), OVERHEAD_ITEMS, max(1, round(OVERHEAD_CALLS * scale)))

    def items(self, workload: str) -> int:
        """Items per call of `workload`."""
        return self.task_items if workload == TASKS else self.overhead_items

    def ideal_seconds(self) -> float:
        """The `async-tasks` floor: every worker awaiting `CONCURRENCY` sleeps at once, no overhead."""
        return self.task_items * TASK_SLEEP_SECONDS / GATHER_LIMIT


def _measure_in_subprocess(contender: Contender, sizes: Sizes) -> tuple[list[float] | None, str]:
    """`(samples, "")`, or `(None, reason)` when the subprocess failed."""
    result, reason = run_in_subprocess("benchmarks.asyncio_maps", [
        "--child", contender.workload, contender.name, "--child-items", str(sizes.items(contender.workload)),
        "--child-calls", str(sizes.overhead_calls)], CHILD_TIMEOUT_SECONDS)
    return (None if result is None else result["samples"]), reason


def measure(rounds: int, sizes: Sizes, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Run every contender `rounds` times, each time in a fresh subprocess; one row per contender."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for contender in CONTENDERS:
        row: dict[str, Any] = {"workload": contender.workload, "name": contender.name,
                               "description": contender.description, "status": "ok", "reason": "",
                               "samples": [], "calls": []}
        if contender.requires and importlib.util.find_spec(contender.requires) is None:
            row.update(status="not installed", reason=f"{contender.requires} is not installed")
        rows[contender.workload, contender.name] = row
    for round_number in range(rounds):
        for contender in rotated(CONTENDERS, round_number):
            row = rows[contender.workload, contender.name]
            if row["status"] != "ok":
                continue
            samples, reason = _measure_in_subprocess(contender, sizes)
            if samples is None:
                row.update(status="failed", reason=reason)
                log(f"round {round_number + 1}: {contender.workload} / {contender.name} FAILED: {reason}")
                continue
            row["calls"].append(samples)
            row["samples"].append(statistics.median(samples))
            log(f"round {round_number + 1}: {contender.workload} / {contender.name}: "
                f"{row['samples'][-1]:.4g} {_unit(contender.workload)}")
    for row in rows.values():
        if row["status"] == "ok":
            row.update(spread(row["samples"]))
    return list(rows.values())


def _unit(workload: str) -> str:
    return "s" if workload == TASKS else "ms per call"


def ratios(rows: list[dict[str, Any]], sizes: Sizes) -> list[dict[str, Any]]:
    """The ratios of medians listed in `RATIOS` (`None` where a side has no median)."""
    medians = {(row["workload"], row["name"]): row.get("median") for row in rows}
    medians[TASKS, "ideal"] = sizes.ideal_seconds()
    result = []
    for workload, numerator, denominator in RATIOS:
        top, bottom = medians.get((workload, numerator)), medians.get((workload, denominator))
        value = top / bottom if top is not None and bottom else None
        result.append({"workload": workload, "numerator": numerator, "denominator": denominator, "ratio": value})
    return result


def _cell(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def write_report(output_dir: Path, meta: dict[str, Any], rows: list[dict[str, Any]],
                 ratio_rows: list[dict[str, Any]]) -> None:
    """Write `benchmarks-asyncio.md` and `benchmarks-asyncio.json` into `output_dir`."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / f"{REPORT_NAME}.json").write_text(
        json.dumps({"meta": meta, "results": rows, "ratios": ratio_rows}, indent=2) + "\n")
    sizes = meta["sizes"]
    ideal = meta["ideal_seconds"]
    busy = load_note(meta)
    lines = [
        "# Benchmark: parmap's asyncio API",
        "",
        f"Generated by `{meta['command']}`; raw numbers in `{REPORT_NAME}.json`.",
        "",
        f"Machine note: {meta['usable_cpus']} noisy cores: medians and ratios. Every contender runs in a fresh "
        f"subprocess in each of {meta['rounds']} rounds (the order rotates); the subprocess starts its pool "
        "and makes one untimed warm-up call of the full size first, so the times are of a warm pool. Each "
        "table gives the median of the rounds and their min and max.",
        "",
        f"## async-tasks: {sizes['task_items']:,} `async def` items of `await asyncio.sleep({TASK_SLEEP_SECONDS})`",
        "",
        f"Each item returns `x * 2` (checked). {WORKERS} worker processes, {CONCURRENCY} items at once each. "
        f"A round's time is the median of {TASK_CALLS_PER_ROUND} maps in its subprocess. The ideal for "
        f"{WORKERS} x {CONCURRENCY} is {sizes['task_items']:,} x {TASK_SLEEP_SECONDS} s / {GATHER_LIMIT} = "
        f"{ideal:.3f} s.",
        "",
    ]
    lines += _table(rows, TASKS, "s", ideal)
    lines += [
        "",
        f"## await-overhead: one awaited map of {sizes['overhead_items']} trivial items on a warm pool of {WORKERS}",
        "",
        f"`increment(x) = x + 1`, results checked. A round's figure is the mean of {sizes['overhead_calls']} "
        f"calls in a row (after {OVERHEAD_WARMUP_CALLS} untimed ones), in milliseconds per call. The "
        "reference is `asyncio.gather` of one `run_in_executor` per item: like `map_async` it sends every "
        "item to the pool and returns them in order, with the loop free while they run; the single chunk "
        "is the floor (one job, one round trip, no spreading over the workers).",
        "",
    ]
    lines += _table(rows, OVERHEAD, "ms per call", None)
    lines += ["", "## Ratios of medians", "", "| workload | ratio | value |", "|---|---|---:|"]
    for entry in ratio_rows:
        lines.append(f"| {entry['workload']} | {entry['numerator']} / {entry['denominator']} | "
                     f"{_cell(entry['ratio'], 2)} |")
    lines += [
        "",
        f"Environment: {meta['python']}, {meta['platform']}, parmap-decorator "
        f"{meta['versions']['parmap-decorator']}, aiomultiprocess {meta['versions']['aiomultiprocess']}; "
        f"1-minute load average {meta['load_average_start']:.1f} at the start and "
        f"{meta['load_average_end']:.1f} at the end{busy}; {meta['date']}.",
        "",
    ]
    (output_dir / f"{REPORT_NAME}.md").write_text("\n".join(lines))


def _table(rows: list[dict[str, Any]], workload: str, unit: str, ideal: float | None) -> list[str]:
    header = f"| contender | what it times | median ({unit}) | min | max |"
    rule = "|---|---|---:|---:|---:|"
    if ideal is not None:
        header, rule = header + " median / ideal |", rule + "---:|"
    lines = [header, rule]
    for row in rows:
        if row["workload"] != workload:
            continue
        if row["status"] != "ok":
            lines.append(f"| {row['name']} | {row['description']} | {row['status']}: {row['reason']} | | |"
                         + (" |" if ideal is not None else ""))
            continue
        line = (f"| {row['name']} | {row['description']} | {row['median']:.3f} | {row['min']:.3f} | "
                f"{row['max']:.3f} |")
        if ideal is not None:
            line += f" {row['median'] / ideal:.2f} |"
        lines.append(line)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = RUN_OPTIONS.parser(__doc__.split("\n\n")[0] if __doc__ else None)
    # The subprocess's side of one measurement.
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "CONTENDER"), help=argparse.SUPPRESS)
    parser.add_argument("--child-items", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-calls", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        run_child(args.child[0], args.child[1], args.child_items, args.child_calls, args.child_result)
        return 0

    rounds = RUN_OPTIONS.rounds(args)
    sizes = Sizes.scaled(RUN_OPTIONS.scale(args))
    command = RUN_OPTIONS.command(argv)
    load_before = os.getloadavg()[0]
    rows = measure(rounds, sizes, log=print)
    ratio_rows = ratios(rows, sizes)
    meta = {**environment(command, load_before, DISTRIBUTIONS), "rounds": rounds, "sizes": dataclasses.asdict(sizes),
            "ideal_seconds": sizes.ideal_seconds()}
    print()
    for entry in ratio_rows:
        print(f"{entry['workload']:>14}: {entry['numerator']} / {entry['denominator']} = {_cell(entry['ratio'], 2)}")
    if not args.no_write:
        write_report(args.output_dir, meta, rows, ratio_rows)
    return 0 if all(row["status"] != "failed" for row in rows) else 1


if __name__ == "__main__":
    # Run the importable copy, so the workers find the tasks as `benchmarks.asyncio_maps.<name>`,
    # not as attributes of `__main__` (aiomultiprocess and ProcessPoolExecutor pickle by reference).
    from benchmarks.asyncio_maps import main as importable_main

    sys.exit(importable_main())
