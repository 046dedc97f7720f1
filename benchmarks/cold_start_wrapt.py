"""``python -m benchmarks.cold_start_wrapt``: cold start under wrapt 1 and wrapt 2, side by side.

parmap accepts both majors (``wrapt>=1.16``). wrapt 2's package ``__init__`` imports every
submodule, among them ``wrapt.synchronization`` (which imports ``asyncio``) and
``wrapt.importer`` (``importlib.metadata``); parmap imports only ``wrapt.__wrapt__`` until
something else of wrapt is used (see ``parmap._wrapt``). This script makes two throwaway
virtual environments (``wrapt>=1.16,<2`` and ``wrapt>=2``, with parmap's other
dependencies; parmap itself is imported from this checkout), and times, in fresh interpreters, ``N`` runs each of:

* ``python -c pass`` (the interpreter alone, subtracted from nothing, shown for scale),
* ``import wrapt``,
* ``import parmap``,
* ``import parmap`` and a first tiny map on 2 fork workers (the pool's start included).

It writes the medians to ``docs/benchmarks-wrapt.md``. The environments are made with pip
(which works against the configured registry) under a temporary folder, or ``--env-dir``
to keep them between runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

#: Runs per measurement: the median of 15 fresh interpreters is stable to about 1 ms on an
#: idle 2-core machine; pass --runs for more on a busy one.
DEFAULT_RUNS = 15

#: The two environments: name -> the wrapt requirement.
WRAPTS = {"wrapt 1": "wrapt>=1.16,<2", "wrapt 2": "wrapt>=2"}

#: What each timed interpreter runs.
PROGRAMS = {
    "interpreter (`-c pass`)": "pass",
    "`import wrapt`": "import wrapt",
    "`import parmap`": "import parmap",
    "`import parmap` + first map (2 fork workers)": (
        "import parmap\n"
        "def inc(x):\n    return x + 1\n"
        "assert parmap.parallel(inc, workers=2, start_method='fork').map(range(4)) == [1, 2, 3, 4]\n"
    ),
}


def make_env(directory: Path, requirement: str) -> Path:
    """A virtual environment with parmap's dependencies and `requirement`; its python."""
    python = directory / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             requirement, "cloudpickle>=2.2", "tqdm>=4.60"],
            check=True,
        )
    return python


def median_seconds(python: Path, program: str, runs: int) -> float:
    """Median wall time of `runs` fresh `python -c program` (parmap from this checkout)."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([str(python), "-c", program], check=True, env=env, cwd=PROJECT_ROOT)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def version_of(python: Path) -> str:
    completed = subprocess.run(
        [str(python), "-c", "import wrapt; print(wrapt.__version__)"], capture_output=True, text=True, check=True
    )
    return completed.stdout.strip()


def render(results: dict[str, dict[str, float]], versions: dict[str, str], runs: int) -> str:
    names = list(results)
    lines = [
        "# Cold start: wrapt 1 and wrapt 2",
        "",
        "parmap accepts wrapt 1.16+ and wrapt 2 (no upper bound, so it installs next to anything",
        "that needs wrapt 2). wrapt 2's `__init__` imports all of its submodules, `asyncio` and",
        "`importlib.metadata` among them. parmap imports only the proxy classes it subclasses",
        "(`wrapt.__wrapt__`) and leaves the package's `__init__` until something else of wrapt is",
        "used (`parmap._wrapt`), so `import wrapt` below is what a program that uses wrapt itself",
        "pays, not what parmap costs. The difference is paid once per process, not by each map.",
        "",
        f"Median of {runs} fresh interpreters, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} at the end: other work",
        "on the machine inflates every figure, the difference less); written by",
        "`python -m benchmarks.cold_start_wrapt`.",
        "",
        "| what | " + " | ".join(f"{name} ({versions[name]})" for name in names) + " | difference |",
        "|---|" + "---:|" * (len(names) + 1),
    ]
    for program in PROGRAMS:
        cells = [results[name][program] for name in names]
        lines.append(
            f"| {program} | " + " | ".join(f"{cell * 1000:.1f} ms" for cell in cells)
            + f" | {(cells[-1] - cells[0]) * 1000:+.1f} ms |"
        )
    lines += [
        "",
        "CI tests both: `scripts/test` installs wrapt 2 in the newest Python's environment and",
        "wrapt 1 in the oldest's (see the README's test command).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cold_start_wrapt", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help=f"runs per measurement (default {DEFAULT_RUNS})")
    parser.add_argument(
        "--env-dir", type=Path, default=None, help="keep the two environments here (default: temporary)"
    )
    parser.add_argument("--output", type=Path, default=PROJECT_ROOT / "docs" / "benchmarks-wrapt.md")
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="parmap-wrapt-") as scratch:
        base = arguments.env_dir or Path(scratch)
        pythons = {name: make_env(base / name.replace(" ", ""), requirement) for name, requirement in WRAPTS.items()}
        versions = {name: version_of(python) for name, python in pythons.items()}
        results: dict[str, dict[str, float]] = {name: {} for name in pythons}
        for program_name, program in PROGRAMS.items():
            for name, python in pythons.items():  # alternating, so a load spike hits both alike
                results[name][program_name] = median_seconds(python, program, arguments.runs)
                print(f"{name:8} {program_name:50} {results[name][program_name] * 1000:7.1f} ms", flush=True)
    arguments.output.write_text(render(results, versions, arguments.runs))
    print(f"wrote {arguments.output}")


if __name__ == "__main__":
    main()
