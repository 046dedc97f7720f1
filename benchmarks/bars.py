"""Parmap's bars (issue 4): PASS, MISS, or n/a when a reference was not measured."""

from __future__ import annotations

import dataclasses

from .summary import SUBJECT, WorkloadSummary, ratio
from .workloads import WORKLOADS, Bar

PASS = "PASS"
MISS = "MISS"
UNKNOWN = "n/a"


@dataclasses.dataclass
class BarResult:
    """One bar of one workload, as measured in this run."""

    workload: str
    bar: str
    limit: float
    unit: str
    measured: float | None
    verdict: str
    detail: str = ""


def evaluate(summary: WorkloadSummary) -> list[BarResult]:
    """Every bar of ``summary``'s workload, judged on this run's numbers."""
    return [_evaluate(summary, bar) for bar in WORKLOADS[summary.name].bars]


def _evaluate(summary: WorkloadSummary, bar: Bar) -> BarResult:
    measured, detail = _measure(summary, bar)
    met = measured is not None and (measured >= bar.limit if bar.higher_is_better else measured <= bar.limit)
    verdict = UNKNOWN if measured is None else PASS if met else MISS
    return BarResult(summary.name, bar.text, bar.limit, bar.unit, measured, verdict, detail)


def _measure(summary: WorkloadSummary, bar: Bar) -> tuple[float | None, str]:
    """The number compared with the bar's limit, and what it was computed from."""
    subject = summary.stats(SUBJECT)
    if subject is None:
        return None, f"{SUBJECT} was not measured"
    if bar.quantity == "best_peer":
        if summary.best_peer is None:
            return None, "no peer was measured"
        return summary.to_best_peer, f"fastest peer: {summary.best_peer}"
    if bar.quantity == "ideal":
        if summary.to_ideal is None:
            return None, f"ideal {summary.ideal_basis}"
        return summary.to_ideal, f"ideal {summary.ideal_seconds:.4f} s ({summary.ideal_basis})"
    if bar.quantity == "contender":
        reference = summary.stats(bar.reference)
        if reference is None:
            return None, f"{bar.reference} was not measured"
        return ratio(subject.median, reference.median), f"{bar.reference} median {reference.median:.4f} s"
    if bar.quantity == "speed":
        reference = summary.stats(bar.reference)
        if reference is None:
            return None, f"{bar.reference} was not measured"
        return (ratio(reference.median, subject.median),
                f"{bar.reference} median {reference.median:.4f} s, {SUBJECT} {subject.median:.4f} s")
    if bar.quantity == "metric":
        metric = subject.metrics.get(bar.reference)
        if metric is None:
            return None, f"metric {bar.reference} missing"
        value = metric.median if bar.statistic == "median" else metric.worst
        related = [f"{name} {stats.median:.4g}" for name, stats in sorted(subject.metrics.items())
                   if name != bar.reference and name.split("_")[0] == bar.reference.split("_")[0]]
        return value, "; ".join([f"{bar.statistic} of {len(metric.samples)} round(s)", *related])
    raise ValueError(f"unknown bar quantity {bar.quantity!r}")
