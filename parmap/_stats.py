"""Run insights: what a job did and where its time went, as a small typed record.

The engine feeds a [StatsCollector][parmap._stats.StatsCollector] once per chunk (never per
item, except for the per-item durations a `stats=True` job asks the workers to measure)
and turns it into a frozen [RunStats][parmap.RunStats] when the job ends. `print(stats)`
renders a compact table, and a notebook shows an HTML table (`_repr_html_`); both say
which times are sums over chunks, which overlap in time, so a sum may exceed the wall time.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Sequence
from typing import NamedTuple

#: How many of the slowest items a record keeps.
SLOWEST_KEPT = 5

#: How the figures summed over chunks are marked, in the text and the HTML renderings.
SUMMED = "summed over chunks"

#: Why such a sum is not a share of the wall time, said once for both renderings.
SUMMED_NOTE = "may exceed the wall time: chunks overlap"

#: What the workers' table's `busy s` and `util` columns are.
WORKER_COLUMNS_NOTE = "busy s: compute time summed over the worker's chunks; util: busy s / wall time"


class _Figure(NamedTuple):
    """One figure of a run, as both renderings show it."""

    label: str
    value: str
    summed: bool  # a sum over chunks, not a span of wall time


@dataclasses.dataclass(frozen=True)
class WorkerStats:
    """One worker's share of a job."""

    worker: str
    items: int
    chunks: int
    busy_seconds: float  # compute time, summed over the worker's chunks
    utilisation: float  # busy time / job wall time


@dataclasses.dataclass(frozen=True)
class RunStats:
    """What one map did. Times are in seconds.

    `wall_seconds` is the map's duration. `pickling_seconds`, `queue_seconds` and each
    worker's `busy_seconds` are sums over chunks, which run at the same time: a sum can
    exceed the wall time. `input_wait_seconds` is the total time spent reading the input.
    `print(stats)` renders a compact table; a notebook shows it as an HTML table.
    """

    wall_seconds: float
    items: int
    chunks: int
    chunk_sizes: tuple[int, ...]
    workers: tuple[WorkerStats, ...]
    pickling_seconds: float
    queue_seconds: float
    input_wait_seconds: float
    retries: int
    lost_workers: int
    timeouts: int
    resumed_items: int
    slowest_items: tuple[tuple[int, float], ...]  # (input index, seconds), slowest first

    def _chunk_sizes_text(self) -> str:
        sizes = self.chunk_sizes
        return f"{min(sizes)}..{max(sizes)} (median {sorted(sizes)[len(sizes) // 2]})" if sizes else "-"

    def _figures(self) -> list[_Figure]:
        """The run's figures after items, wall time and chunks, in the order both renderings show them."""
        busy = sum(worker.busy_seconds for worker in self.workers)
        return [
            _Figure("pickling", f"{self.pickling_seconds:.3f} s", True),
            _Figure("queued", f"{self.queue_seconds:.3f} s", True),
            _Figure("worker busy", f"{busy:.3f} s", True),
            _Figure("waiting on input", f"{self.input_wait_seconds:.3f} s", False),  # in total
            _Figure("retries", str(self.retries), False),
            _Figure("lost workers", str(self.lost_workers), False),
            _Figure("timeouts", str(self.timeouts), False),
            _Figure("resumed from checkpoint", str(self.resumed_items), False),
        ]

    def _slowest_text(self) -> str:
        return ", ".join(f"#{index} {seconds:.3f} s" for index, seconds in self.slowest_items)

    def __str__(self) -> str:
        figures = self._figures()
        lines = [
            f"parmap run: {self.items} items in {self.wall_seconds:.3f} s wall time, "
            f"{self.chunks} chunks of {self._chunk_sizes_text()}",
            f"  {SUMMED} ({SUMMED_NOTE}): " + " | ".join(f"{f.label} {f.value}" for f in figures if f.summed),
            "  " + " | ".join(f"{f.label} {f.value}" for f in figures if not f.summed),
        ]
        if self.workers:
            width = max(len("worker"), *(len(w.worker) for w in self.workers))
            lines.append(f"  {'worker':<{width}}  {'items':>8}  {'chunks':>6}  {'busy s':>8}  {'util':>5}")
            lines.extend(
                f"  {w.worker:<{width}}  {w.items:>8}  {w.chunks:>6}  {w.busy_seconds:>8.3f}  {w.utilisation:>5.0%}"
                for w in self.workers
            )
            lines.append(f"  ({WORKER_COLUMNS_NOTE})")
        if self.slowest_items:
            lines.append(f"  slowest items: {self._slowest_text()}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """The record as HTML tables, for Jupyter (every value escaped)."""
        import html  # here only: `html.entities` costs ~2 ms of `import parmap`

        def cells(tag: str, *values: object, numeric: bool = False) -> str:
            style = ' style="text-align: right"' if numeric else ""
            return "".join(f"<{tag}{style}>{html.escape(str(value))}</{tag}>" for value in values)

        rows = [
            ("wall time", f"{self.wall_seconds:.3f} s", "from the call to the last result"),
            ("items", str(self.items), ""),
            ("chunks", f"{self.chunks} of {self._chunk_sizes_text()}", ""),
            *((f.label, f.value, SUMMED if f.summed else "") for f in self._figures()),
        ]
        if self.slowest_items:
            rows.append(("slowest items", self._slowest_text(), "input index and seconds, slowest first"))
        caption = f"parmap run: {self.items} items in {self.wall_seconds:.3f} s; figures {SUMMED} {SUMMED_NOTE}"
        parts = [
            '<div class="parmap-run-stats">',
            "<table>",
            f"<caption>{html.escape(caption)}</caption>",
            *(f"<tr>{cells('th', label)}{cells('td', value, note)}</tr>" for label, value, note in rows),
            "</table>",
        ]
        if self.workers:
            parts.extend(
                [
                    "<table>",
                    f"<caption>{html.escape(WORKER_COLUMNS_NOTE)}</caption>",
                    f"<tr>{cells('th', 'worker', 'items', 'chunks', 'busy s', 'util')}</tr>",
                    *(
                        f"<tr>{cells('td', w.worker)}"
                        + cells("td", w.items, w.chunks, f"{w.busy_seconds:.3f}", f"{w.utilisation:.0%}", numeric=True)
                        + "</tr>"
                        for w in self.workers
                    ),
                    "</table>",
                ]
            )
        parts.append("</div>")
        return "\n".join(parts)


class StatsCollector:
    """Accumulates a job's measurements; `finish()` freezes them into a [`RunStats`][parmap.RunStats]."""

    def __init__(self) -> None:
        self.items = 0
        self.chunk_sizes: list[int] = []
        self.pickling_seconds = 0.0
        self.queue_seconds = 0.0
        self.input_wait_seconds = 0.0
        self.retries = 0
        self.lost_workers = 0
        self.timeouts = 0
        self.resumed_items = 0
        self._busy: dict[str, list[float]] = {}  # worker -> [items, chunks, busy seconds]
        self._slowest: list[tuple[float, int]] = []

    def chunk_done(
        self,
        worker: object,
        *,
        completed: int,
        compute_seconds: float,
        transport_seconds: float,
        queue_seconds: float,
        indices: Sequence[int],
        item_seconds: Sequence[float] | None,
    ) -> None:
        entry = self._busy.setdefault(str(worker), [0, 0, 0.0])
        entry[0] += completed
        entry[1] += 1
        entry[2] += compute_seconds
        self.pickling_seconds += transport_seconds
        self.queue_seconds += max(0.0, queue_seconds)
        if item_seconds:
            candidates = heapq.nlargest(SLOWEST_KEPT, zip(item_seconds, indices))
            self._slowest = heapq.nlargest(SLOWEST_KEPT, [*self._slowest, *candidates])

    def finish(self, wall_seconds: float) -> RunStats:
        workers = tuple(
            WorkerStats(
                worker=name,
                items=int(items),
                chunks=int(chunks),
                busy_seconds=busy,
                utilisation=busy / wall_seconds if wall_seconds > 0 else 0.0,
            )
            for name, (items, chunks, busy) in sorted(self._busy.items())
        )
        slowest = tuple((index, seconds) for seconds, index in self._slowest)
        return RunStats(
            wall_seconds=wall_seconds,
            items=self.items,
            chunks=len(self.chunk_sizes),
            chunk_sizes=tuple(self.chunk_sizes),
            workers=workers,
            pickling_seconds=self.pickling_seconds,
            queue_seconds=self.queue_seconds,
            input_wait_seconds=self.input_wait_seconds,
            retries=self.retries,
            lost_workers=self.lost_workers,
            timeouts=self.timeouts,
            resumed_items=self.resumed_items,
            slowest_items=slowest,
        )
