"""What the one-file benchmarks (`asyncio_maps`, `shared_data`) share.

Each of them times every contender in a fresh subprocess per round, rotating the order,
and reports the median of the rounds with their min and max under an environment header.
The pieces that do not depend on the workload live here: the command line they share
([RunOptions][]), running one measurement in a subprocess ([run_in_subprocess][]), timing
one checked call ([timed][]), the rotation ([rotated][]), the spread of the rounds
([spread][]), and the header ([environment][], [load_note][]).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

#: Lines of a failed subprocess's stderr kept in the report.
STDERR_TAIL_LINES = 5

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Where the reports go unless `--output-dir` says otherwise.
DOCS = PROJECT_ROOT / "docs"

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """The options every one-file benchmark takes, and what they resolve to.

    `--rounds N`, `--quick` (`quick_rounds` rounds at `quick_scale` of the sizes, unless
    `--rounds`), `--output-dir DIR`, `--no-write`, and two hidden ones: `--scale` (any
    fraction of the sizes, for the smoke tests) and `--child-result` (where a subprocess
    writes its measurement, see [run_in_subprocess][]).
    """

    #: The benchmark's module, as `python -m` runs it.
    module: str
    default_rounds: int
    quick_rounds: int
    quick_scale: float

    def parser(self, description: str | None) -> argparse.ArgumentParser:
        """A parser with the shared options; the benchmark adds its `--child` ones."""
        parser = argparse.ArgumentParser(description=description)
        parser.add_argument("--rounds", type=int, default=None, help=f"rounds (default {self.default_rounds})")
        parser.add_argument(
            "--quick",
            action="store_true",
            help=f"{self.quick_rounds} rounds at {self.quick_scale:g} of the size (unless --rounds)",
        )
        parser.add_argument("--output-dir", type=Path, default=DOCS, help="where the report goes (default docs/)")
        parser.add_argument("--no-write", action="store_true", help="print only; write no report")
        parser.add_argument("--scale", type=float, default=None, help=argparse.SUPPRESS)
        parser.add_argument("--child-result", type=Path, help=argparse.SUPPRESS)
        return parser

    def rounds(self, args: argparse.Namespace) -> int:
        """The rounds to run: `--rounds`, else the quick or the default number."""
        rounds: int = args.rounds or (self.quick_rounds if args.quick else self.default_rounds)
        return rounds

    def scale(self, args: argparse.Namespace) -> float:
        """The fraction of the issue's sizes to run: `--scale`, else the quick one or 1."""
        if args.scale is not None:
            return float(args.scale)
        return self.quick_scale if args.quick else 1.0

    def command(self, argv: Sequence[str] | None) -> str:
        """The command line, for the report (`argv`, or this process's arguments)."""
        return shlex.join(["python", "-m", self.module, *(argv if argv is not None else sys.argv[1:])])


def run_in_subprocess(module: str, arguments: Sequence[str], timeout: float) -> tuple[Any, str]:
    """Run `python -m module *arguments --child-result PATH` in the project root.

    The subprocess writes its measurement to `PATH` as JSON.

    Returns:
        `(the JSON it wrote, "")`, or `(None, reason)` when it failed, hung past `timeout`
        seconds or wrote nothing.
    """
    with tempfile.TemporaryDirectory() as directory:
        result_path = Path(directory, "result.json")
        command = [sys.executable, "-m", module, *arguments, "--child-result", str(result_path)]
        try:
            completed = subprocess.run(
                command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            return None, f"no result after {timeout:g} s"
        if completed.returncode != 0 or not result_path.exists():
            tail = " / ".join(completed.stderr.strip().splitlines()[-STDERR_TAIL_LINES:])
            return None, f"exit status {completed.returncode}: {tail}"
        return json.loads(result_path.read_text()), ""


def timed(call: Callable[[], Sequence[_T]], expected: Sequence[_T]) -> float:
    """Seconds `call()` took.

    Raises:
        AssertionError: it did not return `expected` (a contender that skips work is not faster).
    """
    started = time.perf_counter()
    result = call()
    elapsed = time.perf_counter() - started
    if list(result) != list(expected):
        raise AssertionError("a contender returned wrong results")
    return elapsed


def rotated(items: Sequence[_T], round_number: int) -> list[_T]:
    """`items` started `round_number` places later, so drift of the machine hits each alike."""
    shift = round_number % len(items) if items else 0
    return [*items[shift:], *items[:shift]]


def spread(samples: Sequence[float]) -> dict[str, float]:
    """`{"median", "min", "max"}` of one contender's rounds."""
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def environment(command: str, load_before: float, distributions: Sequence[str]) -> dict[str, Any]:
    """Where and how the numbers were taken (no paths: the report travels).

    `versions` gives each of `distributions`' installed version, or "not installed".
    """
    try:
        usable_cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # platforms without affinity
        usable_cpus = os.cpu_count() or 1
    versions = {}
    for distribution in distributions:
        try:
            versions[distribution] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            versions[distribution] = "not installed"
    return {
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": f"{platform.system()} {platform.machine()}",
        "usable_cpus": usable_cpus,
        "versions": versions,
        "load_average_start": load_before,
        "load_average_end": os.getloadavg()[0],
    }


def load_note(meta: dict[str, Any]) -> str:
    """The header's remark when the load average went above the CPU count during the run."""
    if max(meta["load_average_start"], meta["load_average_end"]) > meta["usable_cpus"]:
        return " (above the CPU count: other work competed with the run)"
    return ""


def environment_line(meta: dict[str, Any]) -> str:
    """The report's closing line: Python, platform, versions, the load and the date."""
    versions = ", ".join(f"{name} {version}" for name, version in meta["versions"].items())
    return (
        f"Environment: {meta['python']}, {meta['platform']}, {versions}; 1-minute load average "
        f"{meta['load_average_start']:.1f} at the start and {meta['load_average_end']:.1f} at the "
        f"end{load_note(meta)}; {meta['date']}."
    )
