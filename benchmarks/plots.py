"""PNG plots with matplotlib's Agg backend (optional: without matplotlib, no plots and a note)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .summary import SUBJECT, WorkloadSummary

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

#: Colours: parmap stands out, peers are neutral, the ideal is a dashed line.
SUBJECT_COLOUR = "#d62728"
PEER_COLOUR = "#7f7f7f"
IDEAL_COLOUR = "#2ca02c"
DPI = 110


def load_pyplot() -> Any | None:
    """``matplotlib.pyplot`` on the Agg backend, or ``None`` when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def write_benchmark_plots(summaries: Sequence[WorkloadSummary], image_dir: Path) -> tuple[list[Path], str]:
    """One ``bench-<workload>.png`` per workload and ``bench-ratios.png``; returns the paths and a note."""
    pyplot = load_pyplot()
    if pyplot is None:
        return [], "Plots skipped: matplotlib is not installed."
    image_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for summary in summaries:
        path = image_dir / f"bench-{summary.name}.png"
        if _plot_workload(pyplot, summary, path):
            paths.append(path)
    ratios = image_dir / "bench-ratios.png"
    if _plot_ratios(pyplot, summaries, ratios):
        paths.append(ratios)
    return paths, ""


def _plot_workload(pyplot: Any, summary: WorkloadSummary, path: Path) -> bool:
    """Horizontal bars of the medians, whiskers from min to max, the ideal as a dashed line."""
    measured = [entry for entry in summary.contenders if entry.median is not None]
    if not measured:
        return False
    figure, axes = pyplot.subplots(figsize=(7.5, 0.45 * len(measured) + 1.4))
    labels = [entry.label for entry in measured]
    medians = [entry.median or 0.0 for entry in measured]
    low = [(entry.median or 0.0) - (entry.min or 0.0) for entry in measured]
    high = [(entry.max or 0.0) - (entry.median or 0.0) for entry in measured]
    colours = [SUBJECT_COLOUR if entry.name == SUBJECT else PEER_COLOUR for entry in measured]
    positions = list(range(len(measured)))
    axes.barh(positions, medians, xerr=[low, high], color=colours, capsize=3)
    axes.set_yticks(positions)
    axes.set_yticklabels(labels)
    axes.invert_yaxis()
    if summary.ideal_seconds:
        axes.axvline(summary.ideal_seconds, color=IDEAL_COLOUR, linestyle="--", label="ideal")
        axes.legend(loc="lower right")
    if max(medians) > 50 * min(medians):
        axes.set_xscale("log")
    axes.set_xlabel("seconds (median; whiskers: min to max)")
    axes.set_title(f"{summary.name}: {summary.title}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    pyplot.close(figure)
    return True


def _plot_ratios(pyplot: Any, summaries: Sequence[WorkloadSummary], path: Path) -> bool:
    """parmap's median over the fastest peer's, per workload (below 1: parmap is faster)."""
    rows = [(summary.name, summary.to_best_peer) for summary in summaries if summary.to_best_peer is not None]
    if not rows:
        return False
    figure, axes = pyplot.subplots(figsize=(7.5, 0.45 * len(rows) + 1.4))
    names = [name for name, _ in rows]
    values = [value or 0.0 for _, value in rows]
    positions = list(range(len(rows)))
    axes.barh(positions, values, color=SUBJECT_COLOUR)
    axes.axvline(1.0, color=PEER_COLOUR, linestyle="--")
    axes.set_yticks(positions)
    axes.set_yticklabels(names)
    axes.invert_yaxis()
    axes.set_xlabel("parmap median / fastest peer median (lower is better)")
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    pyplot.close(figure)
    return True


def write_scaling_plot(workers: Sequence[int], speedups: Sequence[float | None], path: Path) -> bool:
    """Speedup against workers, with the ideal diagonal; False when matplotlib is missing."""
    pyplot = load_pyplot()
    points = [(w, s) for w, s in zip(workers, speedups) if s is not None]
    if pyplot is None or not points:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = pyplot.subplots(figsize=(6, 4.5))
    axes.plot([w for w, _ in points], [s for _, s in points], "o-", color=SUBJECT_COLOUR, label="parmap")
    axes.plot(list(workers), list(workers), "--", color=IDEAL_COLOUR, label="ideal (speedup = workers)")
    axes.set_xscale("log", base=2)
    axes.set_yscale("log", base=2)
    axes.set_xticks(list(workers))
    axes.set_xticklabels([str(w) for w in workers])
    axes.set_xlabel("workers")
    axes.set_ylabel("speedup over serial")
    axes.set_title("cpu workload: ~1 ms pure-Python items")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    pyplot.close(figure)
    return True
