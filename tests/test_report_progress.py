"""Progress from inside tasks (issue 6, part 3): ``parmap.report_progress``.

The bar is a real tqdm bar writing to a string buffer, recorded so the test can read its
count while the map runs. A task reports, then waits for a ``go`` file: the fraction must
show while no item has finished, and the count must end exact.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

import parmap
from parmap import parallel
from tests import tasks_insights
from tests.conftest import RecordingBar, wait_until

Decorate = Callable[..., Any]


def test_fraction_shows_before_the_item_finishes(backend: Decorate, tmp_path: Path, bars: list[RecordingBar]) -> None:
    task = backend(tasks_insights.report_half_then_wait, workers=1)
    result = task.map_async([(str(tmp_path), 0)], progress=True, chunksize=1)
    wait_until(lambda: bool(bars) and bars[-1].n == 0.5)
    assert not result.ready()  # the item is still waiting for "go": the half came from inside it
    assert (tmp_path / "started-0").exists()
    (tmp_path / "go").write_text("")
    assert result.get(timeout=20) == [0]
    assert bars[-1].n == 1
    assert bars[-1].total == 1


def test_fraction_shows_in_a_multi_item_chunk(
    process_backend: Decorate, tmp_path: Path, bars: list[RecordingBar]
) -> None:
    task = process_backend(tasks_insights.report_half_then_wait, workers=1)
    result = task.map_async([(str(tmp_path), x) for x in range(3)], progress=True, chunksize=3)
    wait_until(lambda: bool(bars) and bars[-1].n == 0.5)
    assert not result.ready()
    (tmp_path / "go").write_text("")
    assert result.get(timeout=20) == [0, 1, 2]
    assert bars[-1].n == 3


@pytest.mark.parametrize("chunksize", [1, 5, "auto"])
def test_count_is_exact_after_completion(backend: Decorate, chunksize: Any, bars: list[RecordingBar]) -> None:
    items = range(12)
    task = backend(tasks_insights.report_many)
    assert task.map(items, progress=True, chunksize=chunksize) == list(items)
    bar = bars[-1]
    assert bar.n == len(items)  # exactly: the fractions were replaced by the item counts
    assert bar.total == len(items)
    assert any(not float(n).is_integer() for n in bar.received), "no fractional report reached the bar"


def test_imap_count_is_exact(process_backend: Decorate, bars: list[RecordingBar]) -> None:
    task = process_backend(tasks_insights.report_many)
    assert sorted(task.imap_unordered(range(9), progress=True, chunksize=2)) == list(range(9))
    assert bars[-1].n == 9


def test_reports_are_throttled(bars: list[RecordingBar]) -> None:
    def report_a_lot(x: int) -> int:
        for step in range(100_000):
            parmap.report_progress(step / 100_000)
        return x

    started = time.monotonic()
    assert parallel(report_a_lot, backend="thread", workers=2).map(range(2), progress=True, chunksize=1) == [0, 1]
    elapsed = time.monotonic() - started
    fractional = [n for n in bars[-1].received if not float(n).is_integer()]
    # 200,000 calls; at most one report per worker per REPORT_INTERVAL gets through (plus,
    # per item, the update that takes its fractions back when it finishes).
    assert len(fractional) <= 2 * (elapsed / parmap._reporting.REPORT_INTERVAL + 1) + 2
    assert len(fractional) < 1000
    assert bars[-1].n == 2


@pytest.mark.parametrize(
    ("args", "match"),
    [
        pytest.param((1.5,), "fraction", id="above-one"),
        pytest.param((-0.1,), "fraction", id="negative"),
        pytest.param((math.nan,), "fraction", id="nan"),
        pytest.param((5, 4), "fraction", id="done-over-total"),
        pytest.param((1, 0), "total", id="zero-total"),
        pytest.param((1, -3), "total", id="negative-total"),
    ],
)
def test_invalid_values_raise_value_error(args: tuple[float, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parmap.report_progress(*args)


def test_invalid_value_inside_a_task_is_that_items_error(backend: Decorate) -> None:
    with pytest.raises(ValueError, match="fraction") as info:
        backend(tasks_insights.report_out_of_range).map(range(3))
    assert "input index 2" in "".join(getattr(info.value, "__notes__", []))


def test_outside_a_task_it_does_nothing() -> None:
    parmap.report_progress(0.5)
    parmap.report_progress(3, total=4)
    finished = threading.Event()

    def report_in_a_plain_thread() -> None:
        parmap.report_progress(1.0)
        finished.set()

    thread = threading.Thread(target=report_in_a_plain_thread)
    thread.start()
    thread.join(5)
    assert finished.is_set()


def test_no_bar_no_cost(backend: Decorate) -> None:
    """Without a bar the reports go nowhere and change nothing."""
    assert backend(tasks_insights.report_many).map(range(6), chunksize=2) == list(range(6))
