"""The outputs of a run: the console summary, ``benchmarks.md``, ``benchmarks.json`` and the plots.

Everything written here is generated from the run's numbers; nothing is typed in by hand.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from typing import TYPE_CHECKING, Any

from . import overview, plots
from .bars import BarResult, evaluate
from .contenders import CONTENDERS, get_contender
from .formatting import format_measured, format_ratio, format_seconds
from .runner import PROJECT_ROOT
from .summary import SUBJECT, ContenderStats, MetricStats, WorkloadSummary, ratio

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from .runner import Plan

#: The peers' modules that come with Python: the report names the others.
STDLIB_MODULES = ("multiprocessing", "concurrent.futures")

#: Distributions whose versions are recorded with the results.
DISTRIBUTIONS = ("parmap-decorator", "joblib", "loky", "mpire", "Pebble", "numpy", "cloudpickle", "matplotlib")


@dataclasses.dataclass
class Report:
    """A summarised run, ready to be written."""

    meta: dict[str, Any]
    summaries: list[WorkloadSummary]
    bars: list[BarResult]


def build(meta: dict[str, Any], summaries: list[WorkloadSummary]) -> Report:
    """Evaluate the bars; ``meta`` (from :func:`machine_info`, taken before the run) gets the final load."""
    bars = [result for summary in summaries for result in evaluate(summary)]
    return Report({**meta, "load_average_end": _load_average()}, summaries, bars)


def machine_info(plan: Plan, command: str) -> dict[str, Any]:
    """Where and how the numbers were taken (no paths: the report travels); call it before the run."""
    try:
        usable_cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - platforms without affinity
        usable_cpus = os.cpu_count() or 1
    return {
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "usable_cpus": usable_cpus,
        "load_average_start": _load_average(),
        "rounds": plan.rounds,
        "quick": plan.quick,
        "scale": plan.scale,
        "cpu_loops": plan.cpu_loops,
        "versions": _versions(),
        "revision": _revision(),
    }


def _revision() -> str:
    """The project's git commit, marked "+ local changes" when parmap/ differs from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        changes = subprocess.run(["git", "status", "--porcelain", "--", "parmap"], cwd=PROJECT_ROOT,
                                 capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit} + local changes" if changes else commit


def _load_average() -> float | None:
    """The 1-minute load average: above the usable CPUs, other work competed with the run."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # pragma: no cover - platforms without it
        return None


def _versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for name in DISTRIBUTIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            if name == "parmap-decorator":
                versions[name] = _source_tree_version()
    return versions


def _source_tree_version() -> str:
    """parmap's ``__version__`` when it runs from the source tree rather than installed."""
    try:
        import parmap
    except ImportError:
        return "not installed"
    return f"{parmap.__version__} (source tree)"


# --------------------------------------------------------------------------- writing


def write(report: Report, output_dir: Path, *, plot: bool = True) -> list[Path]:
    """Write ``benchmarks.md``, ``benchmarks.json`` and ``img/bench-*.png`` under ``output_dir``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    images: list[Path] = []
    plot_note = "plots not requested"
    if plot:
        images, plot_note = plots.write_benchmark_plots(report.summaries, output_dir / "img")
    json_path = output_dir / "benchmarks.json"
    json_path.write_text(json.dumps(to_json(report), indent=2) + "\n")
    markdown_path = output_dir / "benchmarks.md"
    markdown_path.write_text(to_markdown(report, [image.relative_to(output_dir) for image in images], plot_note))
    return [markdown_path, json_path, *images]


def to_json(report: Report) -> dict[str, Any]:
    """The whole report as plain JSON data."""
    workloads = []
    for summary in report.summaries:
        entry = dataclasses.asdict(summary)
        entry["bars"] = [dataclasses.asdict(bar) for bar in report.bars if bar.workload == summary.name]
        workloads.append(entry)
    return {"meta": report.meta, "workloads": workloads}


def from_json(data: dict[str, Any]) -> Report:
    """The report `to_json` saved, rebuilt (to render the page again without a new run)."""
    summaries, bars = [], []
    for entry in data["workloads"]:
        fields = dict(entry)
        bars += [BarResult(**bar) for bar in fields.pop("bars")]
        contenders = []
        for contender in fields.pop("contenders"):
            metrics = {name: MetricStats(**stats) for name, stats in contender.pop("metrics").items()}
            contenders.append(ContenderStats(**contender, metrics=metrics))
        summaries.append(WorkloadSummary(**fields, contenders=contenders))
    return Report(meta=data["meta"], summaries=summaries, bars=bars)


def render(json_path: Path) -> Path:
    """Write `benchmarks.md` next to the saved `json_path` from it, with the plots found there."""
    report = from_json(json.loads(json_path.read_text()))
    output_dir = json_path.parent
    images = sorted((output_dir / "img").glob("bench-*.png"))
    markdown_path = output_dir / "benchmarks.md"
    markdown_path.write_text(to_markdown(report, [image.relative_to(output_dir) for image in images]))
    return markdown_path


def to_markdown(report: Report, images: Sequence[Path], plot_note: str = "") -> str:
    """The report as Markdown, for people choosing a library.

    In order: a plain-language summary and the overview plot, what each contender runs,
    the project's own targets (the bars), parmap's ratios, each workload in detail, and
    how the numbers were taken.
    """
    meta = report.meta
    image_by_name = {image.stem.removeprefix("bench-"): image for image in images}
    others = sorted({module.split(".")[0] for name in _contender_names(report.summaries)
                     for module in [get_contender(name).module] if get_contender(name).is_peer
                     and module is not None and module not in STDLIB_MODULES})
    libraries = f" and {_join(others)}" if others else ""
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `python -m benchmarks`; do not edit by hand. -->",
        "",
        f"How long parmap takes to map a function over items, beside the standard library's process "
        f"pools{libraries}, on {len(report.summaries)} workloads: tiny and heavy items, uneven ones, a "
        "fresh pool, many small maps, large NumPy arrays and a stream. Lower is better.",
        "",
        f"Measured on {meta['usable_cpus']} CPUs ({meta['python']}) on {meta['date']}. Such a small "
        "machine is noisy: every figure is a median of interleaved rounds, each in a fresh process, and "
        "the ratios matter more than the times. [How the numbers were taken](#how-the-numbers-were-taken) "
        "is at the end; the same command reruns them on your machine.",
        "",
    ]
    if meta["quick"] or meta["scale"] != 1.0:
        lines += ["**Reduced run** (`--quick` or a size scale): sizes are smaller than the full run's and "
                  "one round gives no spread, so the ratios are indicative only.", ""]
    lines += ["## At a glance", ""]
    if "ratios" in image_by_name:
        lines += [f"![parmap's time over the fastest other library's]({image_by_name['ratios'].as_posix()})",
                  "", "Below 1, parmap is faster than every other library on that workload.", ""]
    lines += ["| workload | parmap | fastest other | parmap is |", "|---|---|---|---|"]
    for summary in report.summaries:
        subject = summary.stats(SUBJECT)
        peer = summary.stats(summary.best_peer) if summary.best_peer else None
        if subject is None or subject.median is None or peer is None or peer.median is None:
            continue
        verdict = overview.compare(subject.median, peer.median)
        lines.append(f"| {summary.name}: {_escape(summary.title)} | {format_seconds(subject.median)} "
                     f"| {peer.label}, {format_seconds(peer.median)} | {verdict} |")
    lines += [""]
    lines += overview.summary_lines(report.summaries)
    lines += overview.contenders_lines(_contender_names(report.summaries))
    lines += ["## parmap's ratios", "", "parmap's median over the fastest other library's and over the ideal "
              "time (below 1 is faster).", "", ratio_table_markdown(report.summaries), ""]
    lines += ["## Workloads in detail", ""]
    for summary in report.summaries:
        lines += _workload_section(summary, image_by_name.get(summary.name))
    if plot_note:
        lines += [f"_{plot_note}_", ""]
    lines += ["## How the numbers were taken", "",
              f"Run `{meta['command']}` on {meta['date']}: {meta['python']}, {meta['platform']}, "
              f"{meta['usable_cpus']} usable CPUs, {meta['rounds']} round(s). "
              "Each measurement ran in a fresh process; rounds were interleaved and the contenders' order rotated. "
              "Times are medians unless stated.", "",
              f"1-minute load average: {meta['load_average_start']} at the start, {meta['load_average_end']} "
              f"at the end; above {meta['usable_cpus']} (the usable CPUs), other work competed with the run.", "",
              "The project's own performance targets, judged on the same medians, are printed by the "
              "command in the terminal and kept in `benchmarks.json`.", ""]
    versions = ", ".join(f"{name} {version}" for name, version in meta["versions"].items())
    lines += [f"Versions: {versions}; project revision {meta['revision']}.", ""]
    return "\n".join(lines)


def _join(names: Sequence[str]) -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _contender_names(summaries: Sequence[WorkloadSummary]) -> list[str]:
    """The contenders of this run, in the suite's order."""
    names = {entry.name for summary in summaries for entry in summary.contenders}
    return [name for name in CONTENDERS if name in names]


def ratio_table_markdown(summaries: Sequence[WorkloadSummary]) -> str:
    rows = ["| workload | parmap | fastest peer | parmap / fastest peer | ideal | parmap / ideal |",
            "|---|---|---|---|---|---|"]
    for row in ratio_rows(summaries):
        rows.append("| " + " | ".join(row) + " |")
    return "\n".join(rows)


def ratio_rows(summaries: Sequence[WorkloadSummary]) -> list[list[str]]:
    """One row per workload: parmap's median, the best peer, the ideal, and the two ratios."""
    rows = []
    for summary in summaries:
        subject = summary.stats(SUBJECT)
        peer = summary.stats(summary.best_peer) if summary.best_peer else None
        rows.append([
            summary.name,
            format_seconds(subject.median if subject else None),
            f"{peer.name} {format_seconds(peer.median)}" if peer else "-",
            format_ratio(summary.to_best_peer),
            format_seconds(summary.ideal_seconds),
            format_ratio(summary.to_ideal),
        ])
    return rows


def _workload_section(summary: WorkloadSummary, image: Path | None) -> list[str]:
    """One workload: its times in a table of five columns (narrow enough for the page), then its
    other measurements and the contenders' notes as lists."""
    subject = summary.stats(SUBJECT)
    metric_names = sorted({name for entry in summary.contenders for name in entry.metrics})
    lines = [f"### {summary.name}: {_escape(summary.title)}", "",
             f"{summary.workers} worker{'' if summary.workers == 1 else 's'}, size {summary.size:,}; "
             f"timed: {summary.timed}. "
             f"Ideal: {format_seconds(summary.ideal_seconds)} ({summary.ideal_basis or 'none defined'}).", "",
             "| contender | median | min | max | time / parmap's |", "|---|---|---|---|---|"]
    for entry in summary.contenders:
        relative = ratio(entry.median, subject.median if subject else None)
        cells = [entry.label if entry.name != SUBJECT else f"**{entry.label}**",
                 format_seconds(entry.median), format_seconds(entry.min), format_seconds(entry.max),
                 format_ratio(relative)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    measured = [entry for entry in summary.contenders if entry.metrics]
    if metric_names and measured:
        lines += [f"Also measured (worst round): {', '.join(f'`{name}`' for name in metric_names)}.", ""]
        lines += [f"- {entry.label}: " + ", ".join(f"{name} {_format_metric(entry, name)}" for name in metric_names
                                                  if name in entry.metrics) for entry in measured]
        lines.append("")
    notes = [(entry.label, _note(entry)) for entry in summary.contenders if _note(entry)]
    if notes:
        lines += [f"- {label}: {_escape(note)}" for label, note in notes]
        lines.append("")
    if image is not None:
        lines += [f"![{summary.name}]({image.as_posix()})", ""]
    return lines


def _note(entry: ContenderStats) -> str:
    if entry.median is None:
        return f"{entry.status}: {entry.reason}" if entry.reason else entry.status
    if entry.failures:
        return f"{entry.failures} failed round(s): {entry.reason}"
    return ""


def _format_metric(entry: ContenderStats, name: str) -> str:
    stats = entry.metrics.get(name)
    return "-" if stats is None else f"{stats.worst:.4g}"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# --------------------------------------------------------------------------- console


def print_console(report: Report, files: Sequence[Path], stream: Any = None) -> None:
    """The ratio table and every bar with PASS/MISS, for the terminal."""
    out = stream or sys.stdout
    header = ["workload", "parmap", "fastest peer", "/peer", "ideal", "/ideal"]
    rows = [header, *ratio_rows(report.summaries)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    print("", file=out)
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)), file=out)
    print("", file=out)
    for bar in report.bars:
        print(f"{bar.verdict:<4}  {bar.workload:<8} {bar.bar}: measured {format_measured(bar)} ({bar.detail})",
              file=out)
    missed = [bar for bar in report.bars if bar.verdict == "MISS"]
    print(f"\n{len(missed)} of {len(report.bars)} bars missed.", file=out)
    for path in files:
        print(f"wrote {path}", file=out)
