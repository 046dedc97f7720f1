"""Statistics of a run: median/min/max per contender, the best peer, the ideal, parmap's ratios."""

from __future__ import annotations

import dataclasses
import statistics

from .contenders import get_contender
from .runner import STATUS_OK, Plan, Record, Results

#: The contender the ratios are about.
SUBJECT = "parmap"


@dataclasses.dataclass
class MetricStats:
    """One extra metric across rounds; ``worst`` is the largest (every metric is lower-is-better)."""

    median: float
    worst: float
    samples: list[float]


@dataclasses.dataclass
class ContenderStats:
    """One contender on one workload."""

    name: str
    label: str
    status: str
    reason: str
    samples: list[float]
    median: float | None = None
    min: float | None = None
    max: float | None = None
    failures: int = 0
    metrics: dict[str, MetricStats] = dataclasses.field(default_factory=dict)
    notes: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class WorkloadSummary:
    """Everything the report says about one workload."""

    name: str
    title: str
    workers: int
    size: int
    timed: str
    contenders: list[ContenderStats]
    ideal_seconds: float | None = None
    ideal_basis: str = ""
    best_peer: str | None = None
    to_best_peer: float | None = None
    to_ideal: float | None = None

    def stats(self, name: str) -> ContenderStats | None:
        """The stats of contender ``name``, if it ran successfully at least once."""
        for entry in self.contenders:
            if entry.name == name and entry.median is not None:
                return entry
        return None


def summarise(plan: Plan, results: Results) -> list[WorkloadSummary]:
    """Turn raw samples into per-workload summaries, in the plan's order."""
    return [_summarise_workload(plan, name, results[name]) for name in plan.workloads]


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or ``None`` when either is unknown or the denominator is 0."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _summarise_workload(plan: Plan, name: str, records: dict[str, Record]) -> WorkloadSummary:
    workload = plan.workload(name)
    size = plan.size(name)
    entries = [_contender_stats(record) for record in records.values()]
    summary = WorkloadSummary(name, workload.title, workload.workers, size, workload.timed, entries)
    if workload.ideal == "sleep":
        summary.ideal_seconds = workload.sleep_ideal(size)
        summary.ideal_basis = "total sleep / workers"
    elif workload.ideal == "serial":
        serial = summary.stats("serial")
        if serial is not None and serial.median is not None:
            summary.ideal_seconds = serial.median / workload.workers
            summary.ideal_basis = "serial median / workers"
        else:
            summary.ideal_basis = "unknown: serial was not measured"
    peers = [e for e in entries if e.median is not None and get_contender(e.name).is_peer]
    if peers:
        best = min(peers, key=lambda e: e.median or 0.0)
        summary.best_peer = best.name
    subject = summary.stats(SUBJECT)
    if subject is not None:
        best_stats = summary.stats(summary.best_peer) if summary.best_peer else None
        summary.to_best_peer = ratio(subject.median, best_stats.median if best_stats else None)
        summary.to_ideal = ratio(subject.median, summary.ideal_seconds)
    return summary


def _contender_stats(record: Record) -> ContenderStats:
    cls = get_contender(record.contender)
    good = [s for s in record.samples if s.status == STATUS_OK and s.seconds is not None]
    seconds = [s.seconds for s in good if s.seconds is not None]
    entry = ContenderStats(record.contender, cls.label, record.status, record.reason, seconds,
                           failures=len(record.samples) - len(good))
    if seconds:
        entry.median = statistics.median(seconds)
        entry.min = min(seconds)
        entry.max = max(seconds)
    names = sorted({metric for s in good for metric in s.metrics})
    for metric in names:
        values = [s.metrics[metric] for s in good if metric in s.metrics]
        entry.metrics[metric] = MetricStats(statistics.median(values), max(values), values)
    for sample in good:
        entry.notes.update(sample.notes)
    if entry.failures and not entry.reason:
        entry.reason = next(s.error for s in record.samples if s.status != STATUS_OK)
    return entry
