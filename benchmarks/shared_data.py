"""parmap's `shared=` against the other ways of giving a large table to every worker.

The workload of issue 12: a NumPy table of 200 MB (`numpy.arange(25_000_000,
dtype=numpy.float64)`) and 10,000 tiny lookups `float(table[i])` at indices spread over
it (seeded), on 2 worker processes. The figure is items (lookups) per second. The
contenders:

* `parmap shared=`: `lookup_in_shared.map(indices, shared=table)`, the task reading
  `parmap.shared()[i]`. The table goes once to each worker, through shared memory; a
  later map recognises it by a digest of its bytes, computed in the caller on every map.
* `parmap shared= (frozen table)`: the same with an array over a `bytes` object, which
  cannot change: passed again, parmap knows it by identity and computes no digest.
* `parmap initializer`: the `Pool` idiom in parmap, `initializer=install_table`; its pool
  starts inside the timing, as `Pool`'s does.
* `parmap closure`: a nested function that captures the table, `parallel(f).map(indices)`:
  the function (and the table in it) is pickled with the map and travels once per worker.
* `parmap as an argument`: the naive `starmap(lookup, [(table, i), ...])`, the table in
  every item: pickled once per chunk (the pickle memo sees the same object), into shared
  memory as any large array item.
* `Pool initializer (fork)` and `(spawn)`: `multiprocessing.Pool(2, initializer=...,
  initargs=(table,))` and `pool.map(lookup_global, indices)`. Under fork (Linux's default
  up to Python 3.13, and the start method parmap's pool used here) the workers inherit the
  table; under spawn (the default on macOS and Windows; 3.14's forkserver likewise) it is
  pickled to each.
* `joblib`: `Parallel(n_jobs=2, batch_size="auto")(delayed(lookup)(table, i) for i in
  indices)`: joblib dumps arrays over 1 MB to a file that the workers memory-map (its
  answer to this problem), reused by later calls in the same `with Parallel(...)` block.
* `in-process loop`: the lookups in the calling process, for scale.

Two figures per contender, timed in one subprocess: `cold`, the first map given the table
(the table's transfer is inside the timing for every contender), and `warm`, the median of
the `WARM_CALLS` maps after it with the same table. parmap's and joblib's workers are
started before the timing by an untimed warm-up map of a few trivial items; `Pool` (and
`parmap initializer`) cannot be, as the initializer is what carries the table, so their
`cold` figure also starts their 2 processes.

Every round runs each contender in a fresh subprocess (the order rotates from round to
round), which builds the table before it times anything. The report gives the median of
the rounds with their min and max, and the ratios of medians of parmap's items per second
to each other's. It writes `benchmarks-shared.md` and `benchmarks-shared.json` into
`docs/` (or `--output-dir`).

Run: `python -m benchmarks.shared_data` (`--rounds N`, `--quick`, `--output-dir DIR`, `--no-write`).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import multiprocessing
import os
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy

import parmap

from ._reporting_common import RunOptions, environment, environment_line, rotated, run_in_subprocess, spread, timed

#: Worker processes of every contender (the issue's 2).
WORKERS = 2

#: The issue's table: 25,000,000 float64 values are 200 MB.
TABLE_ELEMENTS = 25_000_000
#: Lookups per map. Every contender does all of them: `parmap as an argument`, which
#: copies the table once per chunk, took 3.2 s a map (not minutes), so it needs no fewer.
LOOKUPS = 10_000
#: The seed of the indices, so every contender and round looks up the same ones.
INDEX_SEED = 12

#: Trivial items of the untimed warm-up map that starts parmap's and joblib's workers.
WARMUP_ITEMS = 4 * WORKERS

#: A full run took 2.5 min at 5 rounds on 2 shared cores (load 3); 7 keep it under 4 min and
#: give a median that two disturbed rounds cannot move.
DEFAULT_ROUNDS = 7
#: `--quick`: fewer rounds and a tenth of the table and of the lookups, for a look in seconds.
QUICK_ROUNDS = 3
QUICK_SCALE = 0.1

#: A subprocess that takes longer than this has hung (a full-size one takes a few seconds).
CHILD_TIMEOUT_SECONDS = 300
#: Distributions whose versions the report gives.
DISTRIBUTIONS = ("parmap-decorator", "numpy", "joblib")

REPORT_NAME = "benchmarks-shared"
RUN_OPTIONS = RunOptions("benchmarks.shared_data", DEFAULT_ROUNDS, QUICK_ROUNDS, QUICK_SCALE)

#: The first map given the table, and the maps after it with the same table.
COLD = "cold"
WARM = "warm"
PHASES = (COLD, WARM)
#: Warm maps per subprocess; the phase's figure is their median (`Pool`'s warm map takes
#: about 10 ms, short enough for one scheduler hiccup on 2 cores to dominate a single one).
WARM_CALLS = 3


# ------------------------------------------------------------------ the tasks


def lookup(table: Any, index: int) -> float:
    """One item: the table's value at `index` (the table comes with the item)."""
    return float(table[index])


def lookup_in_shared(index: int) -> float:
    """One item of `parmap shared=`: the map's shared table's value at `index`."""
    return float(parmap.shared()[index])


#: The table installed by `install_table` in each `Pool` worker.
_TABLE: Any = None


def install_table(table: Any) -> None:
    """The `Pool` initializer: keep the table for `lookup_in_global`."""
    global _TABLE
    _TABLE = table


def lookup_in_global(index: int) -> float:
    """One item of `Pool initializer`: the installed table's value at `index`."""
    return float(_TABLE[index])


def ready(x: int) -> int:
    """The warm-up item: nothing to do, so the warm-up only starts the workers."""
    return x


def closure_over(table: Any) -> Callable[[int], float]:
    """A nested function capturing `table`: pickled by value, the table inside it."""

    def lookup_captured(index: int) -> float:
        return float(table[index])

    return lookup_captured


# The functional form keeps the plain functions importable under their own names.
parallel_lookup_in_shared = parmap.parallel(lookup_in_shared, workers=WORKERS)
parallel_lookup = parmap.parallel(lookup, workers=WORKERS)
parallel_ready = parmap.parallel(ready, workers=WORKERS)


# ------------------------------------------------------------------ the contenders (run in a subprocess)


def _expected(indices: Sequence[int]) -> list[float]:
    return [float(index) for index in indices]  # the table is `arange`: value == index


def _warm(call: Callable[[], list[float]], expected: list[float]) -> float:
    """The median seconds of `WARM_CALLS` calls in a row (the table already with the workers)."""
    return statistics.median(timed(call, expected) for _ in range(WARM_CALLS))


def _cold_and_warm(call: Callable[[], list[float]], expected: list[float]) -> dict[str, float]:
    """`{COLD: the first call's seconds, WARM: the median of the next WARM_CALLS}`."""
    cold = timed(call, expected)
    return {COLD: cold, WARM: _warm(call, expected)}


def _parmap_shared(table: Any, indices: list[int]) -> dict[str, float]:
    expected = _expected(indices)
    parallel_ready.map(range(WARMUP_ITEMS))  # starts the pool, untimed
    seconds = _cold_and_warm(lambda: parallel_lookup_in_shared.map(indices, shared=table), expected)
    parmap.shutdown()
    return seconds


def _parmap_shared_frozen(table: Any, indices: list[int]) -> dict[str, float]:
    # An array over a `bytes` object cannot change: passed again, parmap knows it by identity
    # and skips the digest. The copy is made before anything is timed.
    return _parmap_shared(numpy.frombuffer(table.tobytes(), dtype=table.dtype), indices)


def _parmap_initializer(table: Any, indices: list[int]) -> dict[str, float]:
    expected = _expected(indices)
    task = parmap.parallel(lookup_in_global, workers=WORKERS, initializer=install_table, initargs=(table,))
    seconds = _cold_and_warm(lambda: task.map(indices), expected)  # its pool starts in the first
    parmap.shutdown()
    return seconds


def _parmap_closure(table: Any, indices: list[int]) -> dict[str, float]:
    expected = _expected(indices)
    task = parmap.parallel(closure_over(table), workers=WORKERS)
    parallel_ready.map(range(WARMUP_ITEMS))
    seconds = _cold_and_warm(lambda: task.map(indices), expected)
    parmap.shutdown()
    return seconds


def _parmap_argument(table: Any, indices: list[int]) -> dict[str, float]:
    expected = _expected(indices)
    parallel_ready.map(range(WARMUP_ITEMS))
    seconds = _cold_and_warm(lambda: parallel_lookup.starmap([(table, index) for index in indices]), expected)
    parmap.shutdown()
    return seconds


def _pool_initializer(method: str) -> Callable[[Any, list[int]], dict[str, float]]:
    def measure(table: Any, indices: list[int]) -> dict[str, float]:
        expected = _expected(indices)
        context = multiprocessing.get_context(method)
        pool = None

        def start_and_map() -> list[float]:
            nonlocal pool
            pool = context.Pool(WORKERS, initializer=install_table, initargs=(table,))
            return pool.map(lookup_in_global, indices)

        try:
            cold = timed(start_and_map, expected)
            assert pool is not None
            warm = _warm(lambda: pool.map(lookup_in_global, indices), expected)
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
        return {COLD: cold, WARM: warm}

    return measure


def _joblib(table: Any, indices: list[int]) -> dict[str, float]:
    # Imported here and typed Any: the benchmark runs without joblib ("not installed").
    joblib: Any = importlib.import_module("joblib")
    expected = _expected(indices)
    # One `with` block for both calls, joblib's way to reuse its setup: the second call then
    # reuses the table's dump, where a fresh `Parallel` per call dumps it again (counted: one
    # `numpy_pickle.dump` per fresh call, none for the second call in the block).
    with joblib.Parallel(n_jobs=WORKERS, batch_size="auto") as run:
        run(joblib.delayed(ready)(x) for x in range(WARMUP_ITEMS))  # starts the workers, untimed
        return _cold_and_warm(lambda: run(joblib.delayed(lookup)(table, index) for index in indices), expected)


def _in_process(table: Any, indices: list[int]) -> dict[str, float]:
    expected = _expected(indices)
    return _cold_and_warm(lambda: [lookup(table, index) for index in indices], expected)


@dataclasses.dataclass(frozen=True)
class Contender:
    """One line of the report: what it runs, and the function that times it in a subprocess."""

    name: str
    description: str
    #: `(table, indices) -> {phase: seconds}`.
    measure: Callable[[Any, list[int]], dict[str, float]]
    #: The import a contender needs beyond parmap, NumPy and the standard library.
    requires: str | None = None


SUBJECT = "parmap shared="

CONTENDERS = [
    Contender(
        SUBJECT,
        f"`parallel(lookup_in_shared, workers={WORKERS}).map(indices, shared=table)`; the task "
        "reads `parmap.shared()[i]`",
        _parmap_shared,
    ),
    Contender(
        "parmap shared= (frozen table)",
        "the same with `numpy.frombuffer(table.tobytes())`, an array over a `bytes` object, which "
        "cannot change: passed again, it is known by identity, without a digest",
        _parmap_shared_frozen,
    ),
    Contender(
        "parmap initializer",
        f"`parallel(lookup_in_global, workers={WORKERS}, initializer=install_table, initargs=(table,))"
        ".map(indices)`, the `Pool` idiom in parmap; its pool starts inside the timing",
        _parmap_initializer,
    ),
    Contender(
        "parmap closure",
        "`parallel(f).map(indices)`, `f` a nested function capturing the table (pickled by value with it)",
        _parmap_closure,
    ),
    Contender(
        "parmap as an argument",
        "`parallel(lookup).starmap([(table, i) for i in indices])`: the table in every item, sent once per chunk",
        _parmap_argument,
    ),
    Contender(
        "Pool initializer (fork)",
        f"`Pool({WORKERS}, initializer=install_table, initargs=(table,))` "
        "started inside the timing, then `pool.map(lookup_in_global, indices)`; the workers inherit "
        "the table",
        _pool_initializer("fork"),
    ),
    Contender(
        "Pool initializer (spawn)",
        'the same under `get_context("spawn")`: the table pickled to '
        "each worker (macOS and Windows, and forkserver likewise)",
        _pool_initializer("spawn"),
    ),
    Contender(
        "joblib",
        f'`Parallel(n_jobs={WORKERS}, batch_size="auto")(delayed(lookup)(table, i) for i in '
        "indices)`, both calls in one `with Parallel(...)` block; the table dumped to a file the "
        "workers memory-map, the dump reused by the later calls",
        _joblib,
        requires="joblib",
    ),
    Contender(
        "in-process loop",
        "`[lookup(table, i) for i in indices]` in the calling process: no workers (for scale)",
        _in_process,
    ),
]


def _contender(name: str) -> Contender:
    return next(c for c in CONTENDERS if c.name == name)


def run_child(name: str, elements: int, lookups: int, result_path: Path) -> None:
    """The subprocess's side: build the table, time one contender, write `{"seconds": {...}}`."""
    table = numpy.arange(elements, dtype=numpy.float64)
    indices: list[int] = numpy.random.default_rng(INDEX_SEED).integers(0, elements, lookups).tolist()
    result_path.write_text(json.dumps({"seconds": _contender(name).measure(table, indices)}))


# ------------------------------------------------------------------ the driver


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much work one run does."""

    table_elements: int
    lookups: int

    @classmethod
    def scaled(cls, scale: float) -> Sizes:
        """The issue's sizes times `scale`, at least one of each."""
        return cls(max(1, round(TABLE_ELEMENTS * scale)), max(1, round(LOOKUPS * scale)))

    def table_megabytes(self) -> float:
        """The table's size in MB (10**6 bytes)."""
        return self.table_elements * numpy.dtype(numpy.float64).itemsize / 1e6


def _measure_in_subprocess(contender: Contender, sizes: Sizes) -> tuple[dict[str, float] | None, str]:
    """`({phase: seconds}, "")`, or `(None, reason)` when the subprocess failed."""
    result, reason = run_in_subprocess(
        "benchmarks.shared_data",
        [
            "--child",
            contender.name,
            "--child-elements",
            str(sizes.table_elements),
            "--child-lookups",
            str(sizes.lookups),
        ],
        CHILD_TIMEOUT_SECONDS,
    )
    return (None if result is None else result["seconds"]), reason


def measure(rounds: int, sizes: Sizes, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Run every contender `rounds` times, each time in a fresh subprocess; one row per contender.

    A row's `phases` give, per phase, the items per second of each round (`samples`) and
    their median, min and max.
    """
    rows: dict[str, dict[str, Any]] = {}
    for contender in CONTENDERS:
        rows[contender.name] = {
            "name": contender.name,
            "description": contender.description,
            "status": "ok",
            "reason": "",
            "phases": {phase: {"samples": []} for phase in PHASES},
        }
        if contender.requires and importlib.util.find_spec(contender.requires) is None:
            rows[contender.name].update(status="not installed", reason=f"{contender.requires} is not installed")
    for round_number in range(rounds):
        for contender in rotated(CONTENDERS, round_number):
            row = rows[contender.name]
            if row["status"] != "ok":
                continue
            seconds, reason = _measure_in_subprocess(contender, sizes)
            if seconds is None:
                row.update(status="failed", reason=reason)
                log(f"round {round_number + 1}: {contender.name} FAILED: {reason}")
                continue
            for phase in PHASES:
                row["phases"][phase]["samples"].append(sizes.lookups / seconds[phase])
            log(
                f"round {round_number + 1}: {contender.name}: "
                + ", ".join(f"{phase} {row['phases'][phase]['samples'][-1]:,.0f} items/s" for phase in PHASES)
            )
    for row in rows.values():
        if row["status"] == "ok":
            for phase in row["phases"].values():
                phase.update(spread(phase["samples"]))
    return list(rows.values())


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per phase, parmap shared='s median items/s over each other contender's (`None` without both)."""
    medians = {(row["name"], phase): row["phases"][phase].get("median") for row in rows for phase in PHASES}
    result = []
    for phase in PHASES:
        for row in rows:
            if row["name"] == SUBJECT:
                continue
            top, bottom = medians[SUBJECT, phase], medians[row["name"], phase]
            value = top / bottom if top is not None and bottom else None
            result.append({"phase": phase, "numerator": SUBJECT, "denominator": row["name"], "ratio": value})
    return result


def _rate(value: float | None) -> str:
    """Items per second: whole numbers with separators, three significant digits below 100."""
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _ratio(value: float | None) -> str:
    """A ratio to three significant digits (they span 0.001 to 100 here)."""
    return "-" if value is None else f"{value:.3g}"


def write_report(
    output_dir: Path, meta: dict[str, Any], rows: list[dict[str, Any]], ratio_rows: list[dict[str, Any]]
) -> None:
    """Write `benchmarks-shared.md` and `benchmarks-shared.json` into `output_dir`."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / f"{REPORT_NAME}.json").write_text(
        json.dumps({"meta": meta, "results": rows, "ratios": ratio_rows}, indent=2) + "\n"
    )
    sizes = meta["sizes"]
    lines = [
        "# Benchmark: one large table shared by every worker",
        "",
        f"Generated by `{meta['command']}`; raw numbers in `{REPORT_NAME}.json`.",
        "",
        f"A NumPy table of {meta['table_megabytes']:,.0f} MB (`numpy.arange({sizes['table_elements']:_}, "
        f"dtype=numpy.float64)`) and {sizes['lookups']:,} tiny lookups `float(table[i])` at seeded random "
        f"indices, on {WORKERS} worker processes; every result is checked. The figures are items (lookups) "
        "per second: higher is faster.",
        "",
        f"Machine note: {meta['usable_cpus']} noisy cores: medians and ratios. Every contender runs in a fresh "
        f"subprocess in each of {meta['rounds']} rounds (the order rotates), which builds the table before "
        "it times anything. **cold** is the first map given the table, its transfer to the workers "
        f"included; **warm** is the median of the {WARM_CALLS} maps after it with the same table (parmap "
        "recognises the table by a digest of its bytes, computed in the caller on every map, unless it cannot "
        "change: the frozen table). parmap's and "
        f"joblib's workers are started before the timing by an untimed map of {WARMUP_ITEMS} trivial items; "
        "an initializer is what carries the table for `Pool` and `parmap initializer`, so their cold figure "
        "includes starting their processes. "
        "Each phase gives the median of the rounds, then their min and max.",
        "",
        "| contender | what it times | cold (items/s) | cold min-max | warm (items/s) | warm min-max |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"| {row['name']} | {row['description']} | {row['status']}: {row['reason']} | | | |")
            continue
        cells = []
        for phase in PHASES:
            figures = row["phases"][phase]
            cells += [_rate(figures["median"]), f"{_rate(figures['min'])} to {_rate(figures['max'])}"]
        lines.append(f"| {row['name']} | {row['description']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Ratios of medians",
        "",
        f"{SUBJECT}'s items per second over the other's, in the same phase: above 1, parmap is faster.",
        "",
        "| phase | ratio | value |",
        "|---|---|---:|",
    ]
    for entry in ratio_rows:
        lines.append(f"| {entry['phase']} | {entry['numerator']} / {entry['denominator']} | {_ratio(entry['ratio'])} |")
    lines += ["", environment_line(meta), ""]
    (output_dir / f"{REPORT_NAME}.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = RUN_OPTIONS.parser(__doc__.split("\n\n")[0] if __doc__ else None)
    # The subprocess's side of one measurement.
    parser.add_argument("--child", metavar="CONTENDER", help=argparse.SUPPRESS)
    parser.add_argument("--child-elements", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-lookups", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        run_child(args.child, args.child_elements, args.child_lookups, args.child_result)
        return 0

    rounds = RUN_OPTIONS.rounds(args)
    sizes = Sizes.scaled(RUN_OPTIONS.scale(args))
    command = RUN_OPTIONS.command(argv)
    load_before = os.getloadavg()[0]
    rows = measure(rounds, sizes, log=print)
    ratio_rows = ratios(rows)
    meta = {
        **environment(command, load_before, DISTRIBUTIONS),
        "rounds": rounds,
        "sizes": dataclasses.asdict(sizes),
        "table_megabytes": sizes.table_megabytes(),
    }
    print()
    for entry in ratio_rows:
        print(f"{entry['phase']:>4}: {entry['numerator']} / {entry['denominator']} = {_ratio(entry['ratio'])}")
    if not args.no_write:
        write_report(args.output_dir, meta, rows, ratio_rows)
    return 0 if all(row["status"] != "failed" for row in rows) else 1


if __name__ == "__main__":
    # Run the importable copy, so the workers find the tasks as `benchmarks.shared_data.<name>`,
    # not as attributes of `__main__` (Pool and joblib pickle by reference).
    from benchmarks.shared_data import main as importable_main

    sys.exit(importable_main())
