"""Run insights: what a job did and where its time went, as a small typed record.

The engine feeds a :class:`StatsCollector` once per chunk (never per item, except for the
per-item durations a ``stats=True`` job asks the workers to measure) and turns it into a
frozen :class:`RunStats` when the job ends. ``print(stats)`` renders a compact table.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Sequence

#: How many of the slowest items a record keeps.
SLOWEST_KEPT = 5


@dataclasses.dataclass(frozen=True)
class WorkerStats:
    """One worker's share of a job."""

    worker: str
    items: int
    chunks: int
    busy_seconds: float
    utilisation: float  # busy time / job wall time


@dataclasses.dataclass(frozen=True)
class RunStats:
    """What one map did. Times are in seconds."""

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

    def __str__(self) -> str:
        sizes = self.chunk_sizes
        size_text = f"{min(sizes)}..{max(sizes)} (median {sorted(sizes)[len(sizes) // 2]})" if sizes else "-"
        lines = [
            f"parmap run: {self.items} items in {self.wall_seconds:.3f} s, {self.chunks} chunks of {size_text}",
            f"  pickling {self.pickling_seconds:.3f} s | queued {self.queue_seconds:.3f} s | "
            f"waiting on input {self.input_wait_seconds:.3f} s",
            f"  retries {self.retries} | lost workers {self.lost_workers} | timeouts {self.timeouts} | "
            f"resumed from checkpoint {self.resumed_items}",
        ]
        if self.workers:
            width = max(len("worker"), *(len(w.worker) for w in self.workers))
            lines.append(f"  {'worker':<{width}}  {'items':>8}  {'chunks':>6}  {'busy s':>8}  {'util':>5}")
            lines.extend(
                f"  {w.worker:<{width}}  {w.items:>8}  {w.chunks:>6}  {w.busy_seconds:>8.3f}  {w.utilisation:>5.0%}"
                for w in self.workers
            )
        if self.slowest_items:
            slowest = ", ".join(f"#{index} {seconds:.3f} s" for index, seconds in self.slowest_items)
            lines.append(f"  slowest items: {slowest}")
        return "\n".join(lines)


class StatsCollector:
    """Accumulates a job's measurements; :meth:`finish` freezes them into a :class:`RunStats`."""

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
