"""Scaling of parmap on the cpu workload: speedup and efficiency from 1 to 16 workers.

Run ``python -m benchmarks.scaling`` or ``python benchmarks/scaling.py`` from the project
(``--workers 1,2,4,8,16``, ``--rounds N``, ``--items N``, ``--output-dir DIR``). It needs
only parmap's runtime dependencies; with matplotlib it also draws the curve. Like the main
suite, every measurement runs in a fresh process and the rounds are interleaved.

speedup(w) = serial median / parmap median at w workers; efficiency(w) = speedup(w) / w.
The issue aims for efficiency >= 0.9 at 16 workers, on a machine with at least 16 cores.
It writes ``benchmarks-scaling.md``, ``benchmarks-scaling.json`` and ``img/bench-scaling.png``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from benchmarks.runner import Plan

DEFAULT_WORKERS = (1, 2, 4, 8, 16)
DEFAULT_ROUNDS = 3
DEFAULT_ITEMS = 2_000
#: The efficiency the issue aims for at the largest worker count.
TARGET_EFFICIENCY = 0.9
WORKLOAD = "cpu"


def _ensure_importable() -> None:
    """Make ``import benchmarks`` work when this file is run as a script."""
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)


def parse_arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=_worker_counts, default=list(DEFAULT_WORKERS), metavar="N[,N..]",
                        help="worker counts to measure (default: 1,2,4,8,16)")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="rounds (default %(default)s)")
    parser.add_argument("--items", type=int, default=DEFAULT_ITEMS, help="items of ~1 ms (default %(default)s)")
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).resolve().parent.parent / "docs",
                        help="where benchmarks-scaling.md/.json and img/ go (default: the project's docs/)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plot")
    arguments = parser.parse_args(argv)
    if arguments.rounds < 1 or arguments.items < 1:
        parser.error("--rounds and --items must be at least 1")
    return arguments


def _worker_counts(text: str) -> list[int]:
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError("worker counts must be integers >= 1")
    return counts


def measure(plans: dict[int, Plan], rounds: int, log: Callable[[str], None]) -> dict[str, list[float]]:
    """Seconds per configuration (``"serial"`` and ``"<w>"``), interleaved over ``rounds``."""
    from benchmarks import runner

    configurations = ["serial", *(str(w) for w in plans)]
    seconds: dict[str, list[float]] = {name: [] for name in configurations}
    serial_plan = next(iter(plans.values()))
    for round_number in range(1, rounds + 1):
        shift = (round_number - 1) % len(configurations)
        for name in [*configurations[shift:], *configurations[:shift]]:
            plan, contender = (serial_plan, "serial") if name == "serial" else (plans[int(name)], "parmap")
            sample = runner.measure_once(plan, WORKLOAD, contender, round_number)
            if sample.seconds is not None:
                seconds[name].append(sample.seconds)
            shown = f"{sample.seconds:.4f} s" if sample.seconds is not None else f"FAILED: {sample.error}"
            log(f"round {round_number}/{rounds}  {name:>6} {'workers' if name != 'serial' else '':<7} {shown}")
    return seconds


def summarise(seconds: dict[str, list[float]], workers: Sequence[int]) -> dict[str, Any]:
    """Medians, speedups and efficiencies."""
    serial = statistics.median(seconds["serial"]) if seconds["serial"] else None
    points = []
    for count in workers:
        samples = seconds[str(count)]
        median = statistics.median(samples) if samples else None
        speedup = serial / median if serial is not None and median else None
        points.append({
            "workers": count, "samples": samples, "median": median,
            "min": min(samples) if samples else None, "max": max(samples) if samples else None,
            "speedup": speedup, "efficiency": speedup / count if speedup is not None else None,
        })
    return {"serial": {"samples": seconds["serial"], "median": serial}, "points": points}


def to_markdown(meta: dict[str, Any], result: dict[str, Any], image: Path | None) -> str:
    def number(value: float | None, pattern: str) -> str:
        return "-" if value is None else format(value, pattern)

    lines = [
        "# parmap scaling: the cpu workload from 1 to many workers",
        "",
        "<!-- Generated by `python -m benchmarks.scaling`; do not edit by hand. -->",
        "",
        f"Run `{meta['command']}` on {meta['date']}: {meta['python']}, {meta['platform']}, "
        f"{meta['usable_cpus']} usable CPUs, {meta['rounds']} round(s), {meta['items']:,} items of "
        f"~1 ms ({meta['cpu_loops']} loop steps). Each measurement ran in a fresh process; rounds were "
        f"interleaved. Speedup = serial median / parmap median; efficiency = speedup / workers "
        f"(aim: >= {TARGET_EFFICIENCY} at the largest count).",
        "",
    ]
    if max(point["workers"] for point in result["points"]) > meta["usable_cpus"]:
        lines += ["**Oversubscribed:** some worker counts exceed the usable CPUs; their efficiency "
                  "says nothing about parmap.", ""]
    lines += [f"Serial: {number(result['serial']['median'], '.3f')} s.", "",
              "| workers | median (s) | min (s) | max (s) | speedup | efficiency |", "|---|---|---|---|---|---|"]
    for point in result["points"]:
        lines.append(f"| {point['workers']} | {number(point['median'], '.3f')} | {number(point['min'], '.3f')} | "
                     f"{number(point['max'], '.3f')} | {number(point['speedup'], '.2f')} | "
                     f"{number(point['efficiency'], '.2f')} |")
    lines.append("")
    if image is not None:
        lines += [f"![speedup]({image.as_posix()})", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    _ensure_importable()
    from benchmarks import plots, report, runner, tasks
    from benchmarks.workloads import CPU_ITEM_SECONDS

    arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    loops = tasks.calibrate_burn(CPU_ITEM_SECONDS)
    plans = {count: runner.Plan(workloads=[WORKLOAD], contenders=["serial", "parmap"], rounds=arguments.rounds,
                                cpu_loops=loops, workers={WORKLOAD: count}, sizes={WORKLOAD: arguments.items})
             for count in arguments.workers}
    command = shlex.join(["python", "-m", "benchmarks.scaling", *(sys.argv[1:] if argv is None else argv)])
    meta = {**report.machine_info(next(iter(plans.values())), command), "items": arguments.items}
    seconds = measure(plans, arguments.rounds, lambda line: print(line, flush=True))
    result = summarise(seconds, arguments.workers)
    output_dir: Path = arguments.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    image_path = output_dir / "img" / "bench-scaling.png"
    speedups = [point["speedup"] for point in result["points"]]
    drawn = not arguments.no_plots and plots.write_scaling_plot(arguments.workers, speedups, image_path)
    image = image_path.relative_to(output_dir) if drawn else None
    (output_dir / "benchmarks-scaling.json").write_text(json.dumps({"meta": meta, **result}, indent=2) + "\n")
    (output_dir / "benchmarks-scaling.md").write_text(to_markdown(meta, result, image))
    for point in result["points"]:
        efficiency = point["efficiency"]
        print(f"{point['workers']:>3} workers: speedup {point['speedup'] or 0:.2f}, "
              f"efficiency {efficiency or 0:.2f}")
    print(f"wrote {output_dir / 'benchmarks-scaling.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
