"""Peak memory of the caller during one `map` of many small items, parmap against the stdlib.

The workload of issue 14: `tasks.tiny` (`x * x + 1`) over `list(range(N))`, N = 10,000,000,
on 2 worker processes. The figure is how much the calling process's resident memory grew
at its peak during the call, above what it held just before (the input list built, the
pool started and used once). Every contender must return the whole result list, which
is alive when the peak is read, so no contender can grow by less than that list (its
size, [list_bytes][], is reported with each). What a parallel map holds beyond it (its
chunks in flight, its pickles, a copy of the input) is the cost of going parallel; parmap
aims to hold no more than the result list and a bounded window of chunks. The contenders,
each the adapter of the main suite ([benchmarks.contenders][]):

* `list comprehension`: `[tiny(x) for x in items]` in the caller, the issue's reference
  (every ratio is to it; it grows by more than its result list, see [list_bytes][]);
* `parmap map`: `parallel(tiny, workers=2).map(items)` with its defaults;
* `Pool.map`: `multiprocessing.Pool(2).map(tiny, items)`, its default chunksize (it
  turns the input into chunks of `N / 8` items at once);
* `Pool.imap, chunksize=1000`: `list(pool.imap(tiny, items, chunksize=1000))`.

Each contender runs in a fresh subprocess per round (the order rotates), which builds the
input before it reads the baseline, so the input is never counted. The peak is the
kernel's high-water mark (`VmHWM`, reset through `/proc/self/clear_refs`; see
[benchmarks.memory.PeakMemory][]), exact and free while measuring; only the caller is
measured, not the workers. The report gives the median and the largest growth of the
rounds, the growth still held after the call, each median's ratio to the list
comprehension's, and the time of the call (for scale: timing is the main suite's job).
It writes `benchmarks-memory.md` and `.json` into `docs/` (or `--output-dir`).

Run: `python -m benchmarks.memory_map` (`--size N`, `--rounds N`, `--quick`, `--output-dir DIR`, `--no-write`).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import statistics
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import tasks
from ._reporting_common import RunOptions, environment, environment_line, rotated, run_in_subprocess
from .contenders import Contender, Parmap, Serial, StdlibPool
from .memory import PeakMemory

#: Worker processes of the parallel contenders (the issue's 2).
WORKERS = 2
#: The issue's size: 10,000,000 small ints, whose result list alone is about 400 MB
#: (8 bytes of pointer and a 32-byte int object per item).
DEFAULT_SIZE = 10_000_000
#: The chunksize of the `Pool.imap` contender: the main suite's stream reference.
IMAP_CHUNKSIZE = 1000

#: Peaks are deterministic to a few MB from round to round (the allocator's arenas), so
#: three rounds show a median and any outlier; each round of the four contenders at full
#: size takes about half a minute.
DEFAULT_ROUNDS = 3
QUICK_ROUNDS = 1
QUICK_SCALE = 0.1

#: A subprocess that takes longer than this has hung (a full-size one takes under 30 s).
CHILD_TIMEOUT_SECONDS = 600
DISTRIBUTIONS = ("parmap-decorator", "cloudpickle")
MEGABYTE = 1e6

REPORT_NAME = "benchmarks-memory"
RUN_OPTIONS = RunOptions("benchmarks.memory_map", DEFAULT_ROUNDS, QUICK_ROUNDS, QUICK_SCALE)

#: The name of the floor, the denominator of every ratio.
FLOOR = "list comprehension"


def _collect(contender: Contender, items: list[int]) -> list[Any]:
    return contender.map(tasks.tiny, items)


def _collect_imap(contender: Contender, items: list[int]) -> list[Any]:
    return list(contender.imap(tasks.tiny, items, IMAP_CHUNKSIZE))


@dataclasses.dataclass(frozen=True)
class MemoryContender:
    """One line of the report: the adapter it uses, and how it turns the input into a result list."""

    name: str
    description: str
    adapter: type[Contender]
    collect: Callable[[Contender, list[int]], list[Any]] = _collect


CONTENDERS = [
    MemoryContender(FLOOR, "`[tiny(x) for x in items]` in the caller, no pool: the issue's reference", Serial),
    MemoryContender("parmap map", f"`parallel(tiny, workers={WORKERS}).map(items)`, parmap's defaults", Parmap),
    MemoryContender(
        "Pool.map",
        f"`multiprocessing.Pool({WORKERS}).map(tiny, items)`, its default chunksize (N / {4 * WORKERS})",
        StdlibPool,
    ),
    MemoryContender(
        f"Pool.imap, chunksize={IMAP_CHUNKSIZE}",
        f"`list(multiprocessing.Pool({WORKERS}).imap(tiny, items, chunksize={IMAP_CHUNKSIZE}))`",
        StdlibPool,
        _collect_imap,
    ),
]


def _contender(name: str) -> MemoryContender:
    return next(c for c in CONTENDERS if c.name == name)


def sum_of_tiny(n: int) -> int:
    """`sum(x * x + 1 for x in range(n))` in closed form: every result list is checked against it."""
    return (n - 1) * n * (2 * n - 1) // 6 + n


# ------------------------------------------------------------------ one measurement (in a subprocess)


def measure_one(name: str, size: int) -> dict[str, Any]:
    """Build the input, start and warm the contender, then read its peak growth during one map.

    Returns:
        `{"peak_mb", "after_mb", "seconds", "method"}`: the peak growth above the baseline,
        the growth still held once the call returned (the result list, alive), the call's
        seconds, and how the peak was read.

    Raises:
        AssertionError: the contender returned wrong results.
    """
    memory_contender = _contender(name)
    items = list(range(size))
    contender = memory_contender.adapter()
    contender.start(WORKERS)
    try:
        contender.map(tasks.tiny, items[:WORKERS])  # the pool has been used once: its threads are up
        gc.collect()
        memory = PeakMemory()
        memory.reset()
        started = time.perf_counter()
        results = memory_contender.collect(contender, items)
        seconds = time.perf_counter() - started
        peak = memory.growth_bytes()
        after = memory.held_bytes()
        if len(results) != size or sum(results) != sum_of_tiny(size):
            raise AssertionError(f"{name} returned wrong results")
        result_bytes = list_bytes(results)
        del results
    finally:
        contender.close()
    return {
        "peak_mb": peak / MEGABYTE,
        "after_mb": after / MEGABYTE,
        "result_mb": result_bytes / MEGABYTE,
        "seconds": seconds,
        "method": memory.method,
    }


def list_bytes(values: list[Any]) -> int:
    """What a list of ints needs: its object, one pointer per item, and each int object it owns.

    The true floor of any map that returns the list. The list's spare capacity is left
    out: a list grown by appends has up to an eighth more slots than items, never written,
    so never resident. The list comprehension grows by more (measured at 10,000,000
    items: 561 MB against 400 MB here): computed in the caller, each item's temporary
    `x * x` is freed at once and leaves holes among the kept ints that the allocator does
    not refill (`[x * x for x in items]` grew by 401 MB).
    """
    pointers = sys.getsizeof([]) + _POINTER_BYTES * len(values)
    return pointers + sum(sys.getsizeof(value) for value in values if not _is_cached(value))


#: The size of one slot of a list's pointer array.
_POINTER_BYTES = struct.calcsize("P")


#: The ints CPython allocates once at start-up and shares (`-5 <= i <= 256`): no result owns them.
_SMALL_INTS = range(-5, 257)


def _is_cached(value: Any) -> bool:
    return type(value) is int and value in _SMALL_INTS


# ------------------------------------------------------------------ the driver


def measure(rounds: int, size: int, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Run every contender `rounds` times, each in a fresh subprocess; one row per contender.

    A row gives each round's peak growth in MB (`samples`), their median and largest
    (`median_mb`, `max_mb`), the median growth held after the call and the median seconds.
    """
    rows: dict[str, dict[str, Any]] = {
        c.name: {
            "name": c.name,
            "description": c.description,
            "status": "ok",
            "reason": "",
            "samples": [],
            "after": [],
            "result": [],
            "seconds": [],
            "method": "",
        }
        for c in CONTENDERS
    }
    for round_number in range(rounds):
        for contender in rotated(CONTENDERS, round_number):
            row = rows[contender.name]
            if row["status"] != "ok":
                continue
            result, reason = run_in_subprocess(
                RUN_OPTIONS.module, ["--child", contender.name, "--size", str(size)], CHILD_TIMEOUT_SECONDS
            )
            if result is None:
                row.update(status="failed", reason=reason)
                log(f"round {round_number + 1}: {contender.name} FAILED: {reason}")
                continue
            row["samples"].append(result["peak_mb"])
            row["after"].append(result["after_mb"])
            row["result"].append(result["result_mb"])
            row["seconds"].append(result["seconds"])
            row["method"] = result["method"]
            log(
                f"round {round_number + 1}: {contender.name}: peak +{result['peak_mb']:,.1f} MB, "
                f"held after +{result['after_mb']:,.1f} MB, {result['seconds']:.2f} s"
            )
    for row in rows.values():
        if row["status"] == "ok":
            row.update(
                median_mb=statistics.median(row["samples"]),
                max_mb=max(row["samples"]),
                after_median_mb=statistics.median(row["after"]),
                result_mb=statistics.median(row["result"]),
                seconds_median=statistics.median(row["seconds"]),
            )
    floor = rows[FLOOR].get("median_mb")
    for row in rows.values():
        median = row.get("median_mb")
        row["to_floor"] = median / floor if median is not None and floor else None
        row["over_result_mb"] = median - row["result_mb"] if median is not None else None
    return list(rows.values())


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} MB"


def _over(value: float | None) -> str:
    return "-" if value is None else f"{value:+,.0f} MB"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def verdict_lines(rows: list[dict[str, Any]], size: int) -> list[str]:
    """Plain-language lines for the top of the report: what each map held beyond its result list."""
    by_name = {row["name"]: row for row in rows}
    floor = by_name[FLOOR]
    if floor.get("median_mb") is None:
        return [f"The {FLOOR} was not measured: {floor['status']}: {floor['reason']}."]
    lines = [
        f"The result list of {size:,} small ints takes {_mb(floor['result_mb'])} (its pointer array and int "
        f"objects); the {FLOOR} grew by {_mb(floor['median_mb'])} at its peak. At their peaks:",
        "",
    ]
    for row in rows:
        if row["name"] == FLOOR:
            continue
        if row.get("median_mb") is None:
            lines.append(f"- **{row['name']}**: {row['status']}: {row['reason']}")
            continue
        per_item = row["over_result_mb"] * MEGABYTE / size
        lines.append(
            f"- **{row['name']}**: {_mb(row['median_mb'])}, {_ratio(row['to_floor'])} the {FLOOR}'s; "
            f"{_over(row['over_result_mb'])} beyond its result list ({per_item:,.1f} bytes per item)."
        )
    return lines


def write_report(output_dir: Path, meta: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Write `benchmarks-memory.md` and `.json` into `output_dir`."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / f"{REPORT_NAME}.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    method = next((row["method"] for row in rows if row["method"]), "not measured")
    lines = [
        "# Benchmark: memory of the caller during one large map",
        "",
        f"Generated by `{meta['command']}`; raw numbers in `{REPORT_NAME}.json`.",
        "",
        f"`tiny(x) = x * x + 1` over `list(range({meta['size']:,}))` on {WORKERS} worker processes. The figure is "
        "how much the **calling process's** resident memory grew at its peak during the call, above what it held "
        "just before (the input list built, the pool started and used once; the workers are not counted). Every "
        "contender returns the whole result list, alive at the peak, so none can grow by less than that list: "
        "what a parallel map holds beyond it (chunks in flight, pickles, copies of the input) is what going "
        f"parallel costs in memory. The {FLOOR} is the reference the issue names; it grows by more than its "
        "result list: computed in the caller, each item's temporary `x * x` is freed at once and leaves holes "
        "among the kept ints that the allocator does not refill (`[x * x for x in items]` grows by no more than "
        "its result list).",
        "",
        *verdict_lines(rows, meta["size"]),
        "",
        f"Each contender ran in a fresh subprocess in each of {meta['rounds']} round(s) (the order rotates). Peak: "
        f"{method}. **Peak growth** is the median over the rounds, **largest** the largest round; **held after** "
        "is the growth still held once the call returned; **result list** is the size of the returned list and "
        f"its ints; **x {FLOOR}** is the median's ratio to the {FLOOR}'s. The seconds are the call's (median), "
        "for scale only (the main benchmarks time these maps).",
        "",
        f"| contender | what it runs | peak growth | largest | held after | result list | beyond the result list "
        f"| x {FLOOR} | seconds |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"| {row['name']} | {row['description']} | {row['status']}: {row['reason']} | | | | | | |")
            continue
        lines.append(
            f"| {row['name']} | {row['description']} | {_mb(row['median_mb'])} | {_mb(row['max_mb'])} | "
            f"{_mb(row['after_median_mb'])} | {_mb(row['result_mb'])} | {_over(row['over_result_mb'])} | "
            f"{_ratio(row['to_floor'])} | {row['seconds_median']:.2f} |"
        )
    lines += ["", environment_line(meta), ""]
    (output_dir / f"{REPORT_NAME}.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = RUN_OPTIONS.parser(__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size", type=int, default=None, help=f"items of the map (default {DEFAULT_SIZE:,})")
    parser.add_argument("--child", metavar="CONTENDER", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    size = args.size if args.size is not None else max(1, round(DEFAULT_SIZE * RUN_OPTIONS.scale(args)))
    if size < 1:
        parser.error("--size must be at least 1")

    if args.child:
        args.child_result.write_text(json.dumps(measure_one(args.child, size)))
        return 0

    rounds = RUN_OPTIONS.rounds(args)
    load_before = os.getloadavg()[0]
    rows = measure(rounds, size, log=print)
    meta = {
        **environment(RUN_OPTIONS.command(argv), load_before, DISTRIBUTIONS),
        "rounds": rounds,
        "size": size,
        "workers": WORKERS,
    }
    print()
    for line in verdict_lines(rows, size):
        print(line)
    if not args.no_write:
        write_report(args.output_dir, meta, rows)
    return 0 if all(row["status"] == "ok" for row in rows) else 1


if __name__ == "__main__":
    # Run the importable copy, so that everything the workers unpickle is `benchmarks.<module>.<name>`.
    from benchmarks.memory_map import main as importable_main

    sys.exit(importable_main())
