"""The outputs of a run: the console summary, ``benchmarks.md``, ``benchmarks.json`` and the plots.

Every number written here comes from the run; ``benchmarks.md`` can be written again from a
saved ``benchmarks.json`` (:func:`from_json`, :func:`render`) without running anything.
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
    """The :class:`Report` that :func:`to_json` saved as ``data`` (``data`` is left as it is)."""
    summaries, bars = [], []
    for saved in data["workloads"]:
        fields = {key: value for key, value in saved.items() if key not in ("bars", "contenders")}
        contenders = []
        for entry in saved["contenders"]:
            stats = {key: value for key, value in entry.items() if key != "metrics"}
            metrics = {name: MetricStats(**metric) for name, metric in entry.get("metrics", {}).items()}
            contenders.append(ContenderStats(**stats, metrics=metrics))
        summaries.append(WorkloadSummary(**fields, contenders=contenders))
        bars += [BarResult(**bar) for bar in saved.get("bars", [])]
    return Report(meta=dict(data["meta"]), summaries=summaries, bars=bars)


def render(json_path: Path, output_dir: Path | None = None, *, plot: bool = True) -> tuple[Report, list[Path]]:
    """Write ``benchmarks.md`` again from a saved ``benchmarks.json``, running nothing.

    The page goes into ``output_dir`` (default: the JSON's folder) and shows the plots
    already in its ``img/``. When some are missing there, all are drawn from the JSON's
    numbers (unless ``plot`` is false), so a run's own plots are never redrawn in place.
    Returns the report and the files written.
    """
    report = from_json(json.loads(json_path.read_text()))
    output_dir = json_path.parent if output_dir is None else output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    wanted = [output_dir / "img" / f"bench-{name}.png" for name in [s.name for s in report.summaries] + ["ratios"]]
    written: list[Path] = []
    plot_note = ""
    if plot and not all(path.is_file() for path in wanted):
        written, plot_note = plots.write_benchmark_plots(report.summaries, output_dir / "img")
    images = [path.relative_to(output_dir) for path in wanted if path.is_file()]
    markdown_path = output_dir / "benchmarks.md"
    markdown_path.write_text(to_markdown(report, images, plot_note))
    return report, [markdown_path, *written]


def to_markdown(report: Report, images: Sequence[Path], plot_note: str = "") -> str:
    """The report as Markdown, for people choosing a library.

    In order: what is compared and how to read it; at a glance (the ratio plot and one row
    per workload); what each workload means, in plain words; parmap against each library;
    the contenders; each workload in detail; how the numbers were taken. The project's own
    targets are not on the page: :func:`print_console` prints them.
    """
    meta = report.meta
    image_by_name = {image.stem.removeprefix("bench-"): image for image in images}
    others = sorted({module.split(".")[0] for name in _contender_names(report.summaries)
                     for module in [get_contender(name).module] if get_contender(name).is_peer
                     and module is not None and module not in STDLIB_MODULES})
    libraries = f" and {_join(others)}" if others else ""
    small = "a small machine" if meta["usable_cpus"] <= 4 else "a machine"
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `python -m benchmarks`; do not edit by hand. -->",
        "",
        f"How long parmap takes to map a function over items in worker processes, next to the standard "
        f"library's process pools{libraries}, on {len(report.summaries)} workloads. "
        "**Lower times are better.**",
        "",
        f"Measured on {meta['date']} on {small}: {meta['usable_cpus']} CPUs, {meta['python']}, "
        f"{meta['platform']}. Each figure is the median of {meta['rounds']} interleaved rounds, every "
        "measurement in a fresh process. Times on such a machine are noisy and yours will differ: "
        "read the ratios between libraries rather than the absolute times. "
        "[How the numbers were taken](#how-the-numbers-were-taken) is at the end.",
        "",
    ]
    if meta["quick"] or meta["scale"] != 1.0:
        lines += ["**Reduced run** (`--quick` or a size scale): sizes are smaller than the full run's and "
                  "one round gives no spread, so the ratios are indicative only.", ""]
    lines += overview.glance_lines(report.summaries, image_by_name.get("ratios"))
    lines += overview.meaning_lines(report.summaries)
    lines += overview.head_to_head_lines(report.summaries)
    lines += overview.contenders_lines(_contender_names(report.summaries))
    lines += ["## Workloads in detail", "",
              "Per library: the median, fastest and slowest round, and the median over parmap's "
              "(above 1x, slower than parmap). The plot's whiskers span the fastest to the slowest round; "
              "the dashed line is the ideal time, where there is one.", ""]
    for summary in report.summaries:
        lines += _workload_section(summary, image_by_name.get(summary.name))
    if plot_note:
        lines += [f"_{plot_note}_", ""]
    load_start, load_end = meta["load_average_start"], meta["load_average_end"]
    busy = max((load for load in (load_start, load_end) if load is not None), default=None)
    lines += ["## How the numbers were taken", "",
              f"Run `{meta['command']}` on {meta['date']}: {meta['python']}, {meta['platform']}, "
              f"{meta['usable_cpus']} usable CPUs, {meta['rounds']} round(s).", "",
              "- Each measurement ran in a fresh process. The rounds were interleaved and the contenders' "
              "order rotated, so a slow moment of the machine falls on all of them alike.",
              "- Times are medians over the rounds. \"The fastest other library\" leaves out the plain loop "
              f"(`serial`). \"About as fast\" means within {overview.SAME_SPEED_MARGIN:.0%}: medians moved "
              "that much between runs.",
              f"- 1-minute load average: {load_start} at the start, {load_end} at the end"
              + (f"; above {meta['usable_cpus']} (the usable CPUs), other work competed with the run."
                 if busy is not None and busy > meta["usable_cpus"] else "."),
              "- The project's own performance targets, met or missed on these medians, are printed by "
              "`python -m benchmarks` in the terminal (and kept in `benchmarks.json`).",
              "- `python -m benchmarks --render benchmarks.json` writes this page again from the saved "
              "numbers, without running anything.", ""]
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


#: The workloads' other measurements, in this order: a short column header, and what the number is.
METRIC_WORDS: dict[str, tuple[str, str]] = {
    "per_map_ms": ("ms per map", "the time of one of the maps"),
    "rss_growth_mb": ("memory growth, MB", "how much the caller's peak memory grew while it used the stream"),
    "readahead": ("items read ahead", "the most items taken from the generator and not yet returned"),
    "readahead_half": ("read ahead, half input", "the same on an input half as long"),
    "readahead_growth": ("read-ahead growth", "the first over the second: near 1, what is read ahead does "
                                              "not grow with the input"),
}


def _workload_section(summary: WorkloadSummary, image: Path | None) -> list[str]:
    """One workload: its times in a table of five columns (narrow enough for the page), its other
    measurements in a second table, the contenders' notes as a list, then its plot."""
    subject = summary.stats(SUBJECT)
    ideal = (f" Ideal time: {format_seconds(summary.ideal_seconds)}, {overview.ideal_words(summary)}."
             if summary.ideal_seconds is not None else "")
    lines = [f"### {overview.plain_name(summary)} ({summary.name})", "",
             f"The work: {_escape(summary.title)}. Size {summary.size:,}, {summary.workers} "
             f"worker{'' if summary.workers == 1 else 's'}. Timed: {summary.timed}.{ideal}", "",
             "| contender | median | fastest | slowest | vs parmap |", "|---|---|---|---|---|"]
    for entry in summary.contenders:
        relative = ratio(entry.median, subject.median if subject else None)
        cells = [_label(entry), format_seconds(entry.median), format_seconds(entry.min),
                 format_seconds(entry.max), format_ratio(relative)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    present = {name for entry in summary.contenders for name in entry.metrics}
    metric_names = [name for name in METRIC_WORDS if name in present] + sorted(present - set(METRIC_WORDS))
    measured = [entry for entry in summary.contenders if entry.metrics]
    if metric_names and measured:
        lines += ["Also measured (the worst round of each):", ""]
        lines += [f"- {METRIC_WORDS[name][0]}: {METRIC_WORDS[name][1]}." for name in metric_names
                  if name in METRIC_WORDS]
        lines += ["", "| contender | " + " | ".join(METRIC_WORDS.get(name, (name, ""))[0] for name in metric_names)
                  + " |", "|---|" + "---|" * len(metric_names)]
        for entry in measured:
            lines.append("| " + " | ".join([_label(entry), *(_format_metric(entry, name) for name in metric_names)])
                         + " |")
        lines.append("")
    notes = [(entry.label, _note(entry)) for entry in summary.contenders if _note(entry)]
    if notes:
        lines += [f"- {label}: {_escape(note)}" for label, note in notes]
        lines.append("")
    if image is not None:
        lines += [f"![{summary.name}]({image.as_posix()})", ""]
    return lines


def _label(entry: ContenderStats) -> str:
    """The contender's label for a table row; parmap's in bold."""
    return f"**{entry.label}**" if entry.name == SUBJECT else entry.label


def _note(entry: ContenderStats) -> str:
    if entry.median is None:
        return f"{entry.status}: {entry.reason}" if entry.reason else entry.status
    if entry.failures:
        return f"{entry.failures} failed round(s): {entry.reason}"
    return ""


def _format_metric(entry: ContenderStats, name: str) -> str:
    """A metric's worst round: counts of a thousand and more in full (``"39,270"``), else 4 digits."""
    stats = entry.metrics.get(name)
    if stats is None:
        return "-"
    return f"{stats.worst:,.0f}" if abs(stats.worst) >= 1000 else f"{stats.worst:.4g}"


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
