"""Run insights (issue 6, part 4): ``stats=True``, ``last_stats()`` and ``print(stats)``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import pytest

import parmap
from parmap import RunStats, TaskTimeoutError, WorkerStats, parallel
from parmap._decorator import ResultList
from tests import tasks, tasks_insights

Decorate = Callable[..., Any]

#: Slack for comparing a worker's busy time (measured in the worker) with the job's wall time.
CLOCK_SLACK = 1e-3


def _stats_of(results: list[Any]) -> RunStats:
    """The record a ``stats=True`` map attaches to its result list."""
    assert isinstance(results, ResultList)
    assert isinstance(results.stats, RunStats)
    return results.stats


def _check_consistent(stats: RunStats, items: int) -> None:
    """What must hold for any finished run."""
    assert stats.items == items
    assert stats.chunks == len(stats.chunk_sizes)
    assert sum(stats.chunk_sizes) == items
    assert stats.wall_seconds > 0
    assert stats.workers
    assert sum(worker.items for worker in stats.workers) == items
    assert sum(worker.chunks for worker in stats.workers) == stats.chunks
    for worker in stats.workers:
        assert isinstance(worker, WorkerStats)
        assert worker.busy_seconds >= 0
        assert 0 <= worker.utilisation <= 1 + CLOCK_SLACK
        assert worker.utilisation == pytest.approx(worker.busy_seconds / stats.wall_seconds)
    for seconds in (stats.pickling_seconds, stats.queue_seconds, stats.input_wait_seconds):
        assert seconds >= 0


def test_fields_of_a_run(backend: Decorate) -> None:
    task = backend(tasks.square, workers=2)
    results = task.map(range(50), chunksize=7, stats=True)
    assert results == [x * x for x in range(50)]
    assert isinstance(results, list)
    stats = _stats_of(results)
    _check_consistent(stats, 50)
    assert stats.chunk_sizes == (7, 7, 7, 7, 7, 7, 7, 1)
    assert stats.chunks == 8
    assert (stats.retries, stats.lost_workers, stats.timeouts, stats.resumed_items) == (0, 0, 0, 0)
    assert task.last_stats() is stats
    assert len(stats.workers) <= (1 if backend.args[0] == "serial" else 2)  # type: ignore[attr-defined]


def test_auto_chunk_sizes_are_recorded(backend: Decorate) -> None:
    task = backend(tasks.square, workers=2)
    stats = _stats_of(task.map(range(300), stats=True))
    _check_consistent(stats, 300)
    assert stats.chunks >= 2  # "auto" splits the work between the workers


def test_record_is_frozen() -> None:
    stats = _stats_of(parallel(tasks.square, backend="serial").map(range(3), stats=True))
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.items = 4  # type: ignore[misc]


def test_process_runs_measure_pickling(process_backend: Decorate) -> None:
    stats = _stats_of(process_backend(tasks.square).map(range(40), chunksize=4, stats=True))
    _check_consistent(stats, 40)
    assert stats.pickling_seconds > 0
    assert all(worker.worker.isdigit() for worker in stats.workers)  # process ids


def test_retries_and_lost_workers_are_counted(process_backend: Decorate, tmp_path: Path) -> None:
    task = process_backend(tasks_insights.exit_once_on_seven, retries=1)
    results = task.map([(str(tmp_path), x) for x in range(12)], chunksize=4, stats=True)
    assert results == list(range(12))
    stats = _stats_of(results)
    assert stats.lost_workers == 1
    assert stats.retries == 1
    assert stats.items == 12


def test_timeouts_are_counted() -> None:
    task = parallel(tasks.sleep_on, workers=2, start_method="fork", timeout=0.5)
    results = task.map([0.0, 30.0, 0.0], chunksize=1, return_exceptions=True, stats=True)
    assert isinstance(results[1], TaskTimeoutError)
    assert _stats_of(results).timeouts == 1
    assert _stats_of(results).items == 3


def test_slowest_items_name_the_slow_index(backend: Decorate) -> None:
    task = backend(tasks_insights.slow_on_thirteen, workers=2)
    stats = _stats_of(task.map(range(30), chunksize=4, stats=True))
    index, seconds = stats.slowest_items[0]
    assert index == 13
    assert seconds >= 0.3
    assert len(stats.slowest_items) == parmap._stats.SLOWEST_KEPT
    durations = [seconds for _, seconds in stats.slowest_items]
    assert durations == sorted(durations, reverse=True)


def test_per_item_durations_only_with_stats(backend: Decorate) -> None:
    """Without ``stats=True`` the workers do not time each item: no slowest items."""
    task = backend(tasks_insights.slow_on_thirteen, workers=2)
    assert task.map(range(20), chunksize=4) == list(range(20))
    stats = task.last_stats()
    assert stats is not None
    _check_consistent(stats, 20)
    assert stats.slowest_items == ()


def test_print_renders_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = parallel(tasks_insights.exit_once_on_seven, workers=2, start_method="fork", retries=1)
    stats = _stats_of(task.map([(str(tmp_path), x) for x in range(50)], chunksize=7, stats=True))
    print(stats)
    text = capsys.readouterr().out
    assert f"{stats.items} items" in text
    assert "50 items" in text
    assert f"{stats.chunks} chunks" in text
    assert "retries 1" in text
    assert "lost workers 1" in text
    assert "resumed from checkpoint 0" in text
    header = next(line for line in text.splitlines() if "worker" in line and "util" in line)
    assert header.split() == ["worker", "items", "chunks", "busy", "s", "util"]
    for worker in stats.workers:
        row = next(line for line in text.splitlines() if line.split()[:1] == [worker.worker])
        assert row.split()[1:3] == [str(worker.items), str(worker.chunks)]
        assert row.split()[-1] == f"{worker.utilisation:.0%}"
    assert f"#{stats.slowest_items[0][0]}" in text


def test_last_stats_after_map_imap_and_map_async(backend: Decorate) -> None:
    task = backend(tasks.square, workers=2)
    assert task.last_stats() is None  # nothing ran yet
    task.map(range(10), chunksize=5)
    after_map = task.last_stats()
    assert after_map is not None
    assert (after_map.items, after_map.chunks) == (10, 2)

    assert list(task.imap(range(20), chunksize=5)) == [x * x for x in range(20)]
    after_imap = task.last_stats()
    assert after_imap is not None
    assert after_imap is not after_map
    assert (after_imap.items, after_imap.chunk_sizes) == (20, (5, 5, 5, 5))

    assert task.map_async(range(6), chunksize=3).get(timeout=20) == [x * x for x in range(6)]
    after_async = task.last_stats()
    assert after_async is not None
    assert after_async.items == 6


def test_last_stats_of_an_imap_left_early() -> None:
    task = parallel(tasks.square, backend="serial")
    for value in task.imap(range(100), chunksize=10):
        assert value == 0
        break  # leaving the loop early ends the job, and records what it did
    stats = task.last_stats()
    assert stats is not None
    assert 1 <= stats.items < 100


# ---------------------------------------------------------------- renderings (issue 13, point 8)


def _made_up_stats(worker: str = "4242") -> RunStats:
    """A record with chosen figures: the sums over chunks exceed the wall time, as they may."""
    return RunStats(
        wall_seconds=1.0,
        items=10,
        chunks=4,
        chunk_sizes=(3, 3, 3, 1),
        workers=(
            WorkerStats(worker=worker, items=6, chunks=2, busy_seconds=0.75, utilisation=0.75),
            WorkerStats(worker="17", items=4, chunks=2, busy_seconds=0.5, utilisation=0.5),
        ),
        pickling_seconds=0.125,
        queue_seconds=2.5,
        input_wait_seconds=0.25,
        retries=1,
        lost_workers=0,
        timeouts=2,
        resumed_items=3,
        slowest_items=((7, 0.5), (2, 0.25)),
    )


def test_summary_says_which_figures_are_sums_over_chunks() -> None:
    lines = str(_made_up_stats()).splitlines()
    assert lines[0] == "parmap run: 10 items in 1.000 s wall time, 4 chunks of 1..3 (median 3)"
    summed = next(line for line in lines if "summed over chunks" in line)
    assert "may exceed the wall time" in summed
    assert "pickling 0.125 s" in summed
    assert "queued 2.500 s" in summed  # 2.5 s of queueing in a 1 s run: chunks wait together
    assert "worker busy 1.250 s" in summed  # the workers' busy times, added up
    assert "waiting on input" not in summed
    assert "waiting on input 0.250 s" in lines[2]
    assert "timeouts 2" in lines[2]
    assert any(
        "busy s: compute time summed over the worker's chunks; util: busy s / wall time" in line for line in lines
    )
    assert lines[-1] == "  slowest items: #7 0.500 s, #2 0.250 s"


def test_html_table_for_notebooks() -> None:
    import html.parser

    stats = _made_up_stats(worker="tcp://<host>&1")
    page = stats._repr_html_()

    class Cells(html.parser.HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.open: list[str] = []
            self.rows: list[list[str]] = []
            self.captions: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.open.append(tag)
            if tag == "tr":
                self.rows.append([])
            if tag in ("td", "th"):
                self.rows[-1].append("")
            if tag == "caption":
                self.captions.append("")

        def handle_endtag(self, tag: str) -> None:
            assert self.open.pop() == tag  # well nested

        def handle_data(self, data: str) -> None:
            if self.open and self.open[-1] in ("td", "th"):
                self.rows[-1][-1] += data
            elif self.open and self.open[-1] == "caption":
                self.captions[-1] += data

    parser = Cells()
    parser.feed(page)
    assert parser.open == []
    rows = {row[0]: row[1:] for row in parser.rows}
    assert rows["wall time"][0] == "1.000 s"
    assert rows["items"][0] == "10"
    assert rows["chunks"][0] == "4 of 1..3 (median 3)"
    for label in ("pickling", "queued", "worker busy"):
        assert rows[label][1] == "summed over chunks", label
    assert rows["waiting on input"] == ["0.250 s", ""]
    assert rows["resumed from checkpoint"][0] == "3"
    assert rows["slowest items"][0] == "#7 0.500 s, #2 0.250 s"
    assert rows["worker"] == ["items", "chunks", "busy s", "util"]
    assert rows["tcp://<host>&1"] == ["6", "2", "0.750", "75%"]  # the name came through, escaped
    assert "tcp://&lt;host&gt;&amp;1" in page
    assert "<host>" not in page
    assert any("may exceed the wall time" in caption for caption in parser.captions)


def test_html_of_a_real_run() -> None:
    stats = _stats_of(parallel(tasks.square, backend="serial").map(range(5), chunksize=2, stats=True))
    page = stats._repr_html_()
    assert page.startswith('<div class="parmap-run-stats">')
    assert page.count("<table>") == 2
    assert f"<td>{stats.chunks} of 1..2 (median 2)</td>" in page
