"""The "auto" chunking policy, fed made-up durations (no clock, no processes)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parmap._chunking import (
    MAX_CHUNKSIZE,
    MAX_STREAM_CHUNKSIZE,
    MIN_CHUNK_SECONDS,
    TARGET_CHUNK_SECONDS,
    CostEstimate,
    iter_chunks,
    resolve_chunksize,
)


def test_fixed_chunksize_is_used_as_is() -> None:
    assert resolve_chunksize(7, workers=4, remaining=3, seconds_per_item=1.0) == 7


def test_probe_before_any_measurement() -> None:
    assert resolve_chunksize("auto", workers=4, remaining=1000, seconds_per_item=None) == 1


def test_slow_items_go_one_by_one() -> None:
    # The tutorial's case: 0.1 s per item; batching would create stragglers.
    assert resolve_chunksize("auto", workers=4, remaining=40, seconds_per_item=0.1) == 1


def test_tiny_items_are_amortised_up_to_the_target_duration() -> None:
    size = resolve_chunksize("auto", workers=2, remaining=10**7, seconds_per_item=1e-6)
    assert size == int(TARGET_CHUNK_SECONDS / 1e-6)
    assert resolve_chunksize("auto", workers=2, remaining=10**7, seconds_per_item=1e-6, target_seconds=0.1) == int(
        0.1 / 1e-6
    )


def test_streams_of_unknown_length_keep_chunks_small() -> None:
    assert resolve_chunksize("auto", workers=2, remaining=None, seconds_per_item=1e-9) == MAX_STREAM_CHUNKSIZE
    assert resolve_chunksize("auto", workers=2, remaining=None, seconds_per_item=0.01) == 2


def test_chunks_shrink_as_the_input_runs_out_but_not_below_the_floor() -> None:
    cost = 1e-3
    sizes = []
    remaining = 2000
    while remaining > 0:
        size = resolve_chunksize("auto", workers=2, remaining=remaining, seconds_per_item=cost)
        sizes.append(size)
        remaining -= size
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[0] == int(TARGET_CHUNK_SECONDS / cost)
    assert min(sizes) >= min(int(MIN_CHUNK_SECONDS / cost), sizes[-1])
    assert sum(sizes) == 2000


def test_upper_bound() -> None:
    assert resolve_chunksize("auto", workers=1, remaining=10**9, seconds_per_item=1e-12) == MAX_CHUNKSIZE
    assert resolve_chunksize("auto", workers=1, remaining=10**9, seconds_per_item=0.0) == MAX_CHUNKSIZE
    assert resolve_chunksize("auto", workers=1, remaining=5, seconds_per_item=0.0) == 5


@given(
    remaining=st.one_of(st.none(), st.integers(1, 100_000)),
    seconds=st.one_of(st.none(), st.floats(1e-7, 1.0)),
    concurrency=st.integers(2, 200),
)
def test_async_chunks_are_whole_waves_of_concurrency(
    remaining: int | None, seconds: float | None, concurrency: int
) -> None:
    """A worker awaits `concurrency` items of a chunk at once: a chunk is whole waves of them,
    probes included, unless fewer items than one wave remain (then it takes them all)."""
    size = resolve_chunksize("auto", workers=2, remaining=remaining, seconds_per_item=seconds, wave=concurrency)
    if remaining is not None and remaining <= concurrency:
        assert size == remaining
    else:
        assert size >= concurrency
        assert size % concurrency == 0


def test_a_fixed_chunksize_wins_over_concurrency() -> None:
    assert resolve_chunksize(7, workers=2, remaining=100, seconds_per_item=None, wave=50) == 7


def test_cost_estimate_weighs_chunks_by_their_items() -> None:
    estimate = CostEstimate()
    assert estimate.seconds_per_item is None
    estimate.record(1, 0.01)  # a one-item probe that happened to be slow
    estimate.record(10_000, 0.01)  # a real chunk: 1 us per item
    assert estimate.seconds_per_item is not None
    assert estimate.seconds_per_item < 3e-6
    estimate.record(0, 5.0)  # nothing ran: ignored
    assert estimate.seconds_per_item < 3e-6


def test_cost_estimate_follows_a_change_in_cost() -> None:
    estimate = CostEstimate()
    for _ in range(20):
        estimate.record(100, 0.1)  # 1 ms per item
    for _ in range(10):
        estimate.record(100, 1.0)  # now 10 ms per item
    assert estimate.seconds_per_item == pytest.approx(0.01, rel=0.05)


@given(st.lists(st.integers()), st.lists(st.integers(min_value=1, max_value=7), min_size=1))
def test_iter_chunks_covers_the_input_in_order(items: list[int], sizes: list[int]) -> None:
    cycle = itertools.cycle(sizes)
    for source in (items, tuple(items), iter(items)):
        chunks = list(iter_chunks(source, lambda: next(cycle)))
        assert [x for _, chunk in chunks for x in chunk] == items
        starts = [start for start, _ in chunks]
        assert starts == list(itertools.accumulate([0] + [len(c) for _, c in chunks[:-1]])) if chunks else True


def test_iter_chunks_slices_ranges_into_ranges() -> None:
    chunks = list(iter_chunks(range(10), lambda: 4))
    assert chunks == [(0, range(4)), (4, range(4, 8)), (8, range(8, 10))]


def test_iter_chunks_reads_lazily() -> None:
    pulled = []

    def source() -> Iterator[int]:
        for x in range(100):
            pulled.append(x)
            yield x

    chunks = iter_chunks(source(), lambda: 5)
    next(chunks)
    assert len(pulled) <= 6
