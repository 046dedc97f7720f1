"""Maps over several inputs (issue 13, point 5): `f.map(xs, ys)` calls `f(x, y)`, as `map` does.

Every map method takes one input per parameter and stops at the shortest input. Each test
runs on every backend (the `backend` fixture) unless it checks a part of the parent alone
(progress bars, the zipped view). Faults come from the input (`fail_on_pair`).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

import parmap
from parmap import CheckpointMismatchError, _zipping
from parmap._zipping import SLICED_TYPES, AsyncZip, SizedZip, ZippedSequences, zip_inputs
from tests import tasks_several
from tests.conftest import RecordingBar

Decorate = Callable[..., Any]


class Sized:
    """An iterable with a length that is no list, tuple or range (read lazily, length known)."""

    def __init__(self, *values: int) -> None:
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[int]:
        return iter(self.values)


def numbers(count: int) -> Iterator[int]:
    yield from range(count)


async def async_numbers(count: int) -> AsyncIterator[int]:
    for value in range(count):
        await asyncio.sleep(0)
        yield value


# ---------------------------------------------------------------------------- every backend


def test_map_calls_the_function_with_one_item_of_each_input(backend: Decorate) -> None:
    task = backend(tasks_several.add)
    assert task.map([1, 2, 3], [10, 20, 30]) == [11, 22, 33]
    assert task.map(range(100), range(100, 200), chunksize=7) == [100 + 2 * x for x in range(100)]
    assert backend(tasks_several.join3).map("ab", (1, 2), [None, True]) == ["a-1-None", "b-2-True"]


def test_the_shortest_input_ends_the_map(backend: Decorate) -> None:
    task = backend(tasks_several.add)
    assert task.map([1, 2, 3], [10, 20]) == [11, 22] == list(map(tasks_several.add, [1, 2, 3], [10, 20]))
    assert task.map(range(5), [10]) == [10]
    assert task.map([1, 2], []) == []
    assert task.map(itertools.count(), [5, 6, 7]) == [5, 7, 9]  # an endless input is fine


def test_generators_and_mixed_inputs(backend: Decorate) -> None:
    task = backend(tasks_several.add)
    assert task.map(numbers(50), range(10, 1000)) == [10 + 2 * x for x in range(50)]
    assert list(task.imap(numbers(5), numbers(3))) == [0, 2, 4]
    assert sorted(task.imap_unordered(Sized(1, 2, 3), numbers(10))) == [1, 3, 5]


def test_map_async_takes_several_inputs_and_keyword_callbacks(backend: Decorate) -> None:
    task = backend(tasks_several.add)
    received: list[list[int]] = []
    result = task.map_async([1, 2, 3], (10, 20, 30), callback=received.append)
    assert result.get(timeout=20) == [11, 22, 33]
    result.wait(timeout=20)
    assert received == [[11, 22, 33]]
    assert task.map_async(numbers(4), numbers(9)).get(timeout=20) == [0, 2, 4, 6]


def test_an_error_keeps_its_type_and_the_input_index(backend: Decorate) -> None:
    task = backend(tasks_several.fail_on_pair)
    with pytest.raises(tasks_several.PairError, match="bad pair 2, 20") as raised:
        task.map([0, 1, 2, 3], [0, 10, 20, 30])
    assert "parmap: raised by the item at input index 2" in getattr(raised.value, "__notes__", [])
    results = list(task.imap(numbers(4), [0, 10, 20, 30], return_exceptions=True))
    assert results[:2] == [0, 11]
    assert results[3] == 33
    assert isinstance(results[2], tasks_several.PairError)


def test_aimap_with_plain_and_async_inputs(backend: Decorate) -> None:
    task = backend(tasks_several.add)
    async_task = backend(tasks_several.add_async)

    async def main() -> tuple[list[int], list[int], list[int], list[int]]:
        plain = [value async for value in task.aimap([1, 2, 3], range(10, 20))]
        mixed = [value async for value in task.aimap(async_numbers(6), [100, 200, 300])]
        unordered = sorted([value async for value in async_task.aimap_unordered(async_numbers(4), async_numbers(9))])
        awaited = await async_task.map_async([1, 2], [3, 4])
        return plain, mixed, unordered, awaited

    assert asyncio.run(main()) == ([11, 13, 15], [100, 201, 302], [0, 2, 4, 6], [4, 6])


def test_a_checkpoint_knows_the_zipped_length(backend: Decorate, tmp_path: Path) -> None:
    checkpoint = tmp_path / "run.sqlite"
    task = backend(tasks_several.logged_add)
    directory = [str(tmp_path)] * 10
    assert task.map(directory, range(5), range(10, 100), checkpoint=checkpoint) == [10, 12, 14, 16, 18]
    assert task.map(directory, range(5), range(10, 100), checkpoint=checkpoint, stats=True).stats.resumed_items == 5
    assert sorted((tmp_path / "ran.log").read_text().split()) == [str(x) for x in range(5)]  # nothing ran twice
    with pytest.raises(CheckpointMismatchError, match="5 input items, this call has 6"):
        task.map(directory, range(6), range(10, 100), checkpoint=checkpoint)


def test_seeds_follow_the_input_index(backend: Decorate) -> None:
    task = backend(tasks_several.seeded, seed=7)
    zipped = task.map([1, 2, 3], [4, 5, 6, 7])
    assert zipped == task.starmap(list(zip([1, 2, 3], [4, 5, 6]))) == list(task.imap(iter([1, 2, 3]), [4, 5, 6]))
    assert len({draw for _, _, draw in zipped}) == 3


# ---------------------------------------------------------------------------- the parent's side


def test_progress_total_is_the_shortest_length(bars: list[RecordingBar]) -> None:
    task = parmap.parallel(tasks_several.add, backend="serial")
    task.map([1, 2, 3, 4, 5], range(3), progress=True)
    task.map(Sized(1, 2, 3, 4), [1, 2, 3, 4, 5, 6], progress=True)
    task.map(numbers(3), [1, 2, 3, 4], progress=True)
    assert [bar.total for bar in bars] == [3, 4, None]
    assert [sum(bar.received) for bar in bars] == [3, 4, 3]


def test_several_sequences_are_zipped_as_a_sliced_sequence() -> None:
    zipped = zip_inputs("add", ([1, 2, 3, 4], range(10, 13), (7, 8, 9, 10, 11)))
    assert type(zipped) is ZippedSequences
    assert type(zipped) in SLICED_TYPES
    assert len(zipped) == 3
    assert zipped[0:2] == [(1, 10, 7), (2, 11, 8)]
    assert zipped[2:10] == [(3, 12, 9)]
    assert zipped[5:9] == []
    assert zipped[1] == (2, 11, 8)
    assert zipped[-1] == (3, 12, 9)
    assert list(zipped) == list(zip([1, 2, 3, 4], range(10, 13), (7, 8, 9, 10, 11)))
    with pytest.raises(IndexError):
        zipped[3]
    assert type(zip_inputs("add", (Sized(1, 2), [1, 2, 3]))) is SizedZip
    assert type(zip_inputs("add", (numbers(2), [1, 2, 3]))) is zip
    assert type(zip_inputs("add", (async_numbers(2), [1]), allow_async=True)) is AsyncZip


def test_an_input_that_is_not_iterable_is_refused() -> None:
    task = parmap.parallel(tasks_several.add, backend="serial")
    with pytest.raises(TypeError, match="add\\(\\) needs an iterable for each input; input 2 is int"):
        task.map([1, 2], 5)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="input 2 is int"):
        task.aimap([1, 2], 5)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="input 3 is builtin_function_or_method; a callback is passed by keyword"):
        task.map_async([1], [2], print)  # type: ignore[call-overload]


def test_one_input_is_never_wrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    """The single-input hot path: no zip, no per-item call wrapper."""

    def refuse(*arguments: object, **options: object) -> None:
        raise AssertionError("zipped a single input")

    monkeypatch.setattr(_zipping, "zip_inputs", refuse)
    monkeypatch.setattr(parmap._decorator, "zip_inputs", refuse)
    task = parmap.parallel(abs, backend="serial")
    assert task.map([-1, -2]) == [1, 2]
    assert list(task.imap(range(-2, 0))) == [2, 1]
    assert task.map_async([-3]).get(timeout=20) == [3]
