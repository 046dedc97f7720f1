"""Streaming: bounded read-ahead, lazy results, cancellation on break, and map == list(map)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Generator, Iterator
from typing import Any, Callable, cast

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parmap import parallel
from tests import tasks

Decorate = Callable[..., Any]


class CountingSource:
    """An endless input that records how far it has been read."""

    def __init__(self) -> None:
        self.pulled = 0

    def __iter__(self) -> Iterator[int]:
        for value in itertools.count():
            self.pulled = value + 1
            yield value


def test_imap_reads_a_bounded_window_ahead(backend: Decorate) -> None:
    source = CountingSource()
    task = backend(tasks.square)
    results = task.imap(source, chunksize=10, max_in_flight=4)
    consumed = [next(results) for _ in range(500)]
    assert consumed == [x * x for x in range(500)]
    # At most the window (4 chunks of 10) beyond what was consumed, whatever the length.
    assert source.pulled <= 500 + 4 * 10 + 10
    results.close()


def test_default_window_is_bounded_and_independent_of_length() -> None:
    source = CountingSource()
    # imap is typed as an Iterator; what it returns is a generator, which the caller may close.
    results = cast("Generator[int, None, None]", parallel(tasks.square, workers=2).imap(source))
    for _ in range(20_000):
        next(results)
    ahead = source.pulled - 20_000
    results.close()
    assert ahead <= 8 * 100_000  # the window: in-flight chunks per worker x the largest chunk


def test_break_out_of_imap_cancels_outstanding_work(tmp_path: Any) -> None:
    log = tmp_path / "ran"

    def record(x: int) -> int:
        with log.open("a") as handle:
            handle.write(f"{x}\n")
        return x

    task = parallel(record, workers=2)
    for value in task.imap(range(100_000), chunksize=1, max_in_flight=4):
        if value == 3:
            break
    assert task.map([1]) == [1]  # the pool is free again
    assert len(log.read_text().split()) < 100


def test_imap_unordered_over_a_generator(backend: Decorate) -> None:
    generator = (x for x in range(300))
    assert sorted(backend(tasks.square).imap_unordered(generator)) == [x * x for x in range(300)]


def test_map_over_a_generator(backend: Decorate) -> None:
    assert backend(tasks.square).map(x for x in range(123)) == [x * x for x in range(123)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    items=st.lists(st.integers(min_value=-1000, max_value=1000), max_size=60),
    chunksize=st.one_of(st.just("auto"), st.integers(min_value=1, max_value=70)),
)
def test_map_equals_builtin_map(items: list[int], chunksize: Any) -> None:
    task = parallel(tasks.square, workers=2)
    assert task.map(items, chunksize=chunksize) == list(map(tasks.square, items))
    assert parallel(tasks.square, backend="thread", workers=2).map(items, chunksize=chunksize) == [x * x for x in items]


def test_every_item_exactly_once_under_imap_unordered_with_small_chunks() -> None:
    results = list(parallel(tasks.identity, workers=2).imap_unordered(range(5000), chunksize=7))
    assert sorted(results) == list(range(5000))


def test_results_stream_before_the_input_ends(tmp_path: Any) -> None:
    # The first result arrives while the input still blocks on a file that appears only
    # after the caller has seen that result: impossible unless results stream.
    gate = tmp_path / "gate"

    def source() -> Iterator[int]:
        yield 1
        yield 2
        while not gate.exists():
            os.sched_yield()
        yield 3

    results = parallel(tasks.square, workers=2).imap(source(), chunksize=1)
    assert next(results) == 1
    gate.write_text("")
    assert list(results) == [4, 9]
