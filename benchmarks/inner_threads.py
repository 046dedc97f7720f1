"""Native thread pools in the workers: parmap's `inner_threads` default against leaving them be.

The workload of issue 13: NumPy matrix products of 512x512 float64 matrices on 2 worker
processes, each item one product `a @ b` (the matrices built once per worker, from a seed;
small integers, so every product is exact whatever the BLAS's summation order, and every
result is checked). The figure is products per second. The contenders:

* `parmap default`: `parallel(product, workers=2).map(range(n))`: `inner_threads="auto"`,
  `cpus // workers` BLAS threads per worker (NumPy is imported by the caller, so the forked
  workers inherit its started OpenBLAS, which threadpoolctl limits in each);
* `parmap inner_threads=None`: the same, the BLAS left with its own count (one thread per
  CPU in every worker: `workers * cpus` threads on `cpus` CPUs);
* `joblib (loky)`: `Parallel(n_jobs=2, backend="loky")(delayed(product)(i) for i in ...)`,
  which limits its workers' threads to `cpus // n_jobs` likewise (through the environment
  of the processes it spawns);
* `in-process loop`: the products one after another in the calling process, with the
  BLAS's own threads (for scale).

Each contender runs in a fresh subprocess per round (the order rotates), starts its
workers with an untimed map, and times `TIMED_CALLS` maps; its figure is their median. It
also reports the BLAS threads threadpoolctl sees in a worker. The report gives the median
of the rounds with their min and max, and the ratios of medians of `parmap default` to the
others. It writes `benchmarks-inner-threads.md` and `.json` into `docs/` (or
`--output-dir`).

Run: `python -m benchmarks.inner_threads` (`--rounds N`, `--quick`, `--output-dir DIR`, `--no-write`).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy

import parmap

from ._reporting_common import RunOptions, environment, environment_line, rotated, run_in_subprocess, spread

#: Worker processes of every contender (the issue's 2).
WORKERS = 2
#: The issue's matrices: 512x512 float64 (2 MB each), one product ~7 ms on one thread here.
SIDE = 512
#: Products per map: about 1.1 s of one-thread work, so a map lasts ~0.5 s on 2 workers,
#: long against the round trips and short enough for 7 rounds of 4 contenders in ~3 min.
PRODUCTS = 160
#: Entries of the matrices are integers in [0, MAX_ENTRY): a product's entries are at most
#: SIDE * (MAX_ENTRY - 1)**2, and the checksum of one below 2**53: exact in float64.
MAX_ENTRY = 4
MATRIX_SEED = 13

#: Maps timed per subprocess; the contender's figure is their median.
TIMED_CALLS = 3
#: Items of the untimed map that starts the workers (and builds their matrices).
WARMUP_ITEMS = 4 * WORKERS

#: A full run on 2 shared cores varies by ±15 % from round to round (measured: 5 rounds);
#: 7 give a median that two disturbed rounds cannot move.
DEFAULT_ROUNDS = 7
QUICK_ROUNDS = 3
QUICK_SCALE = 0.25

#: A subprocess that takes longer than this has hung (a full-size one takes a few seconds).
CHILD_TIMEOUT_SECONDS = 300
DISTRIBUTIONS = ("parmap-decorator", "numpy", "joblib", "threadpoolctl")

REPORT_NAME = "benchmarks-inner-threads"
RUN_OPTIONS = RunOptions("benchmarks.inner_threads", DEFAULT_ROUNDS, QUICK_ROUNDS, QUICK_SCALE)


# ------------------------------------------------------------------ the tasks

#: This process's matrices, built on its first product.
_MATRICES: tuple[Any, Any] | None = None


def _matrices() -> tuple[Any, Any]:
    global _MATRICES
    if _MATRICES is None:
        rng = numpy.random.default_rng(MATRIX_SEED)
        a, b = (rng.integers(0, MAX_ENTRY, (SIDE, SIDE)).astype(numpy.float64) for _ in range(2))
        _MATRICES = (a, b)
    return _MATRICES


def product(index: int) -> float:
    """One item: the checksum of `a @ b` (`a` rolled by `index`, so no two items are alike)."""
    a, b = _matrices()
    return float((numpy.roll(a, index, axis=0) @ b).sum())


def expected_checksums(count: int) -> list[float]:
    """The results every contender must return: rolling `a`'s rows does not change the sum."""
    a, b = _matrices()
    return [float((a @ b).sum())] * count


def blas_threads(_: object) -> list[int]:
    """The BLAS pools' thread counts in this process (threadpoolctl's view)."""
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


# ------------------------------------------------------------------ the contenders (run in a subprocess)


def _timed_calls(call: Callable[[], Sequence[float]], expected: list[float]) -> float:
    """The median seconds of `TIMED_CALLS` calls, each result checked."""
    seconds = []
    for _ in range(TIMED_CALLS):
        started = time.perf_counter()
        result = list(call())
        seconds.append(time.perf_counter() - started)
        if result != expected:
            raise AssertionError("a contender returned wrong results")
    return statistics.median(seconds)


def _parmap(inner_threads: object) -> Callable[[int], dict[str, Any]]:
    def measure(count: int) -> dict[str, Any]:
        options: dict[str, Any] = {} if inner_threads == "auto" else {"inner_threads": inner_threads}
        task = parmap.parallel(product, workers=WORKERS, **options)
        task.map(range(WARMUP_ITEMS))  # starts the workers, untimed
        threads = parmap.parallel(blas_threads, workers=WORKERS, **options).map([0])[0]
        seconds = _timed_calls(lambda: task.map(range(count)), expected_checksums(count))
        parmap.shutdown()
        return {"seconds": seconds, "threads": threads}

    return measure


def _joblib(count: int) -> dict[str, Any]:
    # Imported here and typed Any: the benchmark runs without joblib ("not installed").
    joblib: Any = importlib.import_module("joblib")
    with joblib.Parallel(n_jobs=WORKERS, backend="loky") as run:
        run(joblib.delayed(product)(i) for i in range(WARMUP_ITEMS))
        threads = run(joblib.delayed(blas_threads)(0) for _ in range(1))[0]
        seconds = _timed_calls(lambda: run(joblib.delayed(product)(i) for i in range(count)), expected_checksums(count))
    return {"seconds": seconds, "threads": threads}


def _in_process(count: int) -> dict[str, Any]:
    product(0)
    seconds = _timed_calls(lambda: [product(i) for i in range(count)], expected_checksums(count))
    return {"seconds": seconds, "threads": blas_threads(0)}


@dataclasses.dataclass(frozen=True)
class Contender:
    """One line of the report: what it runs, and the function that times it in a subprocess."""

    name: str
    description: str
    #: `(products) -> {"seconds": median seconds of a map, "threads": BLAS threads in a worker}`.
    measure: Callable[[int], dict[str, Any]]
    requires: str | None = None


SUBJECT = "parmap default"

CONTENDERS = [
    Contender(
        SUBJECT,
        f'`parallel(product, workers={WORKERS}).map(range(n))`: `inner_threads="auto"`, cpus // workers BLAS '
        "threads per worker",
        _parmap("auto"),
    ),
    Contender(
        "parmap inner_threads=None",
        "the same with `inner_threads=None`: each worker's BLAS keeps its own count (one thread per CPU)",
        _parmap(None),
    ),
    Contender(
        "joblib (loky)",
        f'`Parallel(n_jobs={WORKERS}, backend="loky")(delayed(product)(i) for i in range(n))`, which limits its '
        "workers' threads to cpus // n_jobs too",
        _joblib,
        requires="joblib",
    ),
    Contender(
        "in-process loop",
        "`[product(i) for i in range(n)]` in the calling process, with the BLAS's own threads (for scale)",
        _in_process,
    ),
]


def _contender(name: str) -> Contender:
    return next(c for c in CONTENDERS if c.name == name)


def run_child(name: str, count: int, result_path: Path) -> None:
    """The subprocess's side: time one contender, write its measurement as JSON."""
    result_path.write_text(json.dumps(_contender(name).measure(count)))


# ------------------------------------------------------------------ the driver


def measure(rounds: int, count: int, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Run every contender `rounds` times, each in a fresh subprocess; one row per contender.

    A row gives the products per second of each round (`samples`), their median, min and
    max, and the BLAS threads seen in a worker (the last round's).
    """
    rows: dict[str, dict[str, Any]] = {}
    for contender in CONTENDERS:
        rows[contender.name] = {
            "name": contender.name,
            "description": contender.description,
            "status": "ok",
            "reason": "",
            "samples": [],
            "threads": None,
        }
        if contender.requires and importlib.util.find_spec(contender.requires) is None:
            rows[contender.name].update(status="not installed", reason=f"{contender.requires} is not installed")
    for round_number in range(rounds):
        for contender in rotated(CONTENDERS, round_number):
            row = rows[contender.name]
            if row["status"] != "ok":
                continue
            result, reason = run_in_subprocess(
                RUN_OPTIONS.module, ["--child", contender.name, "--child-products", str(count)], CHILD_TIMEOUT_SECONDS
            )
            if result is None:
                row.update(status="failed", reason=reason)
                log(f"round {round_number + 1}: {contender.name} FAILED: {reason}")
                continue
            row["samples"].append(count / result["seconds"])
            row["threads"] = result["threads"]
            log(f"round {round_number + 1}: {contender.name}: {row['samples'][-1]:,.1f} products/s")
    for row in rows.values():
        if row["status"] == "ok":
            row.update(spread(row["samples"]))
    return list(rows.values())


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """parmap default's median products/s over each other contender's (`None` without both)."""
    medians = {row["name"]: row.get("median") for row in rows}
    result = []
    for row in rows:
        if row["name"] == SUBJECT:
            continue
        top, bottom = medians[SUBJECT], medians[row["name"]]
        value = top / bottom if top is not None and bottom else None
        result.append({"numerator": SUBJECT, "denominator": row["name"], "ratio": value})
    return result


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def write_report(
    output_dir: Path, meta: dict[str, Any], rows: list[dict[str, Any]], ratio_rows: list[dict[str, Any]]
) -> None:
    """Write `benchmarks-inner-threads.md` and `.json` into `output_dir`."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / f"{REPORT_NAME}.json").write_text(
        json.dumps({"meta": meta, "results": rows, "ratios": ratio_rows}, indent=2) + "\n"
    )
    lines = [
        "# Benchmark: native thread pools in the workers",
        "",
        f"Generated by `{meta['command']}`; raw numbers in `{REPORT_NAME}.json`.",
        "",
        f"{meta['products']} NumPy matrix products of {SIDE}x{SIDE} float64 matrices per map, on {WORKERS} worker "
        "processes (fork, NumPy imported by the caller); every result is checked. The figures are products per "
        "second: higher is faster. **BLAS threads** is what threadpoolctl sees in one worker.",
        "",
        f"Machine note: {meta['usable_cpus']} noisy cores (parmap's default for them: "
        f"{meta['default_inner_threads']} BLAS thread(s) per worker), shared with other work; medians and ratios. "
        f"Every contender runs in a fresh subprocess in each of {meta['rounds']} rounds (the order rotates), "
        f"starts its workers with an untimed map, and counts the median of {TIMED_CALLS} timed maps. "
        "Each row gives the median of the rounds, then their min and max. Left alone, each worker's BLAS "
        f"starts one thread per CPU: {WORKERS} x {meta['usable_cpus']} threads on {meta['usable_cpus']} CPUs. "
        "OpenBLAS's threads spin a while when they wait for work, so the cost of running more of them than "
        "CPUs grows with whatever else keeps the CPUs busy (see the load average below).",
        "",
        "| contender | what it times | BLAS threads | products/s | min-max |",
        "|---|---|---:|---:|---:|",
    ]
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"| {row['name']} | {row['description']} | | {row['status']}: {row['reason']} | |")
            continue
        threads = ", ".join(str(count) for count in row["threads"]) or "-"
        lines.append(
            f"| {row['name']} | {row['description']} | {threads} | {_rate(row['median'])} | "
            f"{_rate(row['min'])} to {_rate(row['max'])} |"
        )
    lines += [
        "",
        "## Ratios of medians",
        "",
        f"{SUBJECT}'s products per second over the other's: above 1, parmap's default is faster.",
        "",
        "| ratio | value |",
        "|---|---:|",
    ]
    for entry in ratio_rows:
        lines.append(f"| {entry['numerator']} / {entry['denominator']} | {_ratio(entry['ratio'])} |")
    lines += ["", environment_line(meta), ""]
    (output_dir / f"{REPORT_NAME}.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = RUN_OPTIONS.parser(__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--child", metavar="CONTENDER", help=argparse.SUPPRESS)
    parser.add_argument("--child-products", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        run_child(args.child, args.child_products, args.child_result)
        return 0

    rounds = RUN_OPTIONS.rounds(args)
    count = max(1, round(PRODUCTS * RUN_OPTIONS.scale(args)))
    command = RUN_OPTIONS.command(argv)
    load_before = os.getloadavg()[0]
    rows = measure(rounds, count, log=print)
    ratio_rows = ratios(rows)
    meta = {
        **environment(command, load_before, DISTRIBUTIONS),
        "rounds": rounds,
        "products": count,
        "side": SIDE,
        "default_inner_threads": max(1, parmap.default_workers() // WORKERS),
    }
    print()
    for entry in ratio_rows:
        print(f"{entry['numerator']} / {entry['denominator']} = {_ratio(entry['ratio'])}")
    if not args.no_write:
        write_report(args.output_dir, meta, rows, ratio_rows)
    return 0 if all(row["status"] != "failed" for row in rows) else 1


if __name__ == "__main__":
    # Run the importable copy, so the workers find the tasks as `benchmarks.inner_threads.<name>`,
    # not as attributes of `__main__` (joblib pickles by reference).
    from benchmarks.inner_threads import main as importable_main

    sys.exit(importable_main())
