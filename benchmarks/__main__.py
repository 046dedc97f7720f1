"""``python -m benchmarks``: run the suite and write ``docs/benchmarks.md``, ``.json`` and plots.

``python -m benchmarks --render docs/benchmarks.json`` runs nothing: it writes the page again
from the saved numbers (after a change to the page's wording, say).
"""

from __future__ import annotations

import argparse
import compileall
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import report, runner, summary, tasks
from .contenders import CONTENDERS
from .workloads import CPU_ITEM_SECONDS, WORKLOADS

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence

#: Rounds of a full run; --quick runs one.
DEFAULT_ROUNDS = 5

#: Load average per usable CPU above which the run warns that other work will skew it.
BUSY_LOAD_PER_CPU = 0.5


def parse_arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="parmap against the stdlib and its peers, each measured in fresh processes.")
    parser.add_argument("--quick", action="store_true",
                        help="one round at reduced sizes (about a minute); the ratios are indicative only")
    parser.add_argument("--rounds", type=int, default=None,
                        help=f"rounds per measurement (default {DEFAULT_ROUNDS}; 1 with --quick)")
    parser.add_argument("--only", type=_names(WORKLOADS), default=list(WORKLOADS), metavar="WORKLOAD[,..]",
                        help=f"workloads to run, of: {', '.join(WORKLOADS)}")
    parser.add_argument("--contenders", type=_names(CONTENDERS), default=list(CONTENDERS), metavar="NAME[,..]",
                        help=f"contenders to run, of: {', '.join(CONTENDERS)}")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="where benchmarks.md, benchmarks.json and img/ go (default: the project's docs/; "
                             "with --render, the JSON's folder)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--render", type=Path, default=None, metavar="JSON",
                        help="run nothing: write benchmarks.md again from a saved benchmarks.json, with the "
                             "plots already in img/ (drawn from the JSON when some are missing)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="write a cProfile file of each timed call (the calling thread) into DIR")
    # Multiplies every size; for the smoke test and for trying the harness, not for publishing.
    parser.add_argument("--scale", type=float, default=1.0, help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.rounds is None:
        arguments.rounds = 1 if arguments.quick else DEFAULT_ROUNDS
    if arguments.rounds < 1:
        parser.error("--rounds must be at least 1")
    if arguments.scale <= 0:
        parser.error("--scale must be positive")
    return arguments


def _names(known: Collection[str]) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated list of names, each one of ``known``."""

    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"unknown name(s) {', '.join(unknown) or '(none)'}; "
                                             f"choose from {', '.join(known)}")
        return names

    return parse


def compile_bytecode() -> None:
    """Write the bytecode of parmap and the harness before timing anything.

    An installed package has it (pip compiles at install). A checkout run with
    ``PYTHONDONTWRITEBYTECODE`` set would otherwise recompile every changed module in each
    fresh process: measured at about 50 ms of the cold workload, which no user pays.
    """
    for package in ("parmap", "benchmarks"):
        compileall.compile_dir(str(runner.PROJECT_ROOT / package), quiet=1)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; exit status 0 even when bars are missed (they are goals, not tests)."""
    arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    if arguments.render is not None:
        rendered, files = report.render(arguments.render, arguments.output_dir, plot=not arguments.no_plots)
        report.print_console(rendered, files)
        return 0
    output_dir = runner.PROJECT_ROOT / "docs" if arguments.output_dir is None else arguments.output_dir
    plan = runner.Plan(
        workloads=arguments.only, contenders=arguments.contenders, rounds=arguments.rounds,
        quick=arguments.quick, scale=arguments.scale, profile_dir=arguments.profile,
        cpu_loops=tasks.calibrate_burn(CPU_ITEM_SECONDS))
    command = shlex.join(["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)])
    meta = report.machine_info(plan, command)
    print(f"{len(plan.workloads)} workload(s) x {len(plan.contenders)} contender(s) x {plan.rounds} round(s); "
          f"cpu item = {plan.cpu_loops} loop steps", flush=True)
    load = meta["load_average_start"]
    if load is not None and load > BUSY_LOAD_PER_CPU * meta["usable_cpus"]:
        print(f"warning: the machine is busy (load average {load} on {meta['usable_cpus']} CPUs); "
              "the numbers will be noisy", flush=True)
    compile_bytecode()
    results = runner.run(plan, log=lambda line: print(line, flush=True))
    built = report.build(meta, summary.summarise(plan, results))
    files = report.write(built, output_dir, plot=not arguments.no_plots)
    report.print_console(built, files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
