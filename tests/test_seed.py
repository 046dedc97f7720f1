"""Reproducible randomness (issue 6, part 1): ``seed=`` and the per-item generators.

The same seed must give the same results whatever the worker count, chunk size, backend,
start method or completion order; without a seed, workers must never share random state.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Callable

import numpy
import pytest

import parmap
from parmap import parallel
from tests import tasks, tasks_insights
from tests.conftest import wait_until

Decorate = Callable[..., Any]

ITEMS = range(40)
SEED = 20240611


def _reference(function: Callable[..., Any], seed: int = SEED) -> list[Any]:
    """The results of one worker, one item per chunk, inline: what every other run must match."""
    results: list[Any] = parallel(function, backend="serial", chunksize=1, seed=seed).map(ITEMS)
    return results


def _task_for(backend: Decorate) -> Callable[..., Any]:
    # Threads share one ``random`` module and one NumPy global generator: seeding those per
    # item cannot be reproducible there, so the thread backend is checked through item_rng().
    is_thread = backend.args[0] == "thread"  # type: ignore[attr-defined]
    return tasks_insights.item_rng_draws if is_thread else tasks_insights.seeded_draws


def test_reference_draws_differ_per_item_and_per_seed() -> None:
    """Guards the tests below against passing vacuously (e.g. every draw the same)."""
    reference = _reference(tasks_insights.seeded_draws)
    assert len({row[1:] for row in reference}) == len(ITEMS)
    for column in range(1, 5):
        assert len({row[column] for row in reference}) == len(ITEMS)
    assert _reference(tasks_insights.seeded_draws, seed=SEED + 1) != reference
    assert _reference(tasks_insights.seeded_draws) == reference


def test_same_seed_same_results_for_any_workers_and_chunksize(backend: Decorate) -> None:
    function = _task_for(backend)
    expected = _reference(function)
    for workers in (1, 2, 3):
        for chunksize in (1, 7, "auto"):
            task = backend(function, workers=workers, seed=SEED)
            assert task.map(ITEMS, chunksize=chunksize) == expected, (workers, chunksize)


def test_same_seed_same_results_in_any_completion_order(backend: Decorate) -> None:
    function = _task_for(backend)
    expected = _reference(function)
    task = backend(function, workers=3)
    for chunksize in (1, 7):
        unordered = list(task.imap_unordered(ITEMS, chunksize=chunksize, seed=SEED))
        assert sorted(unordered) == expected
        assert list(task.imap(ITEMS, chunksize=chunksize, seed=SEED)) == expected


def test_per_call_seed_overrides_the_decorator(backend: Decorate) -> None:
    function = _task_for(backend)
    task = backend(function, seed=SEED + 1)
    assert task.map(ITEMS, seed=SEED) == _reference(function)
    assert task.map(ITEMS) == _reference(function, seed=SEED + 1)


@pytest.mark.parametrize("backend_name", ["serial", "process"])
def test_global_random_and_numpy_are_seeded_per_item(backend_name: Any) -> None:
    """The same item index draws the same numbers from ``random`` and ``numpy.random``,
    whatever ran before it in that worker."""
    task = parallel(tasks_insights.seeded_draws, backend=backend_name, workers=2, seed=SEED)
    forward = task.map(ITEMS, chunksize=40)  # one worker runs every item, in order
    assert task.map(ITEMS, chunksize=1) == forward  # each item first in its chunk, on either worker
    assert task.map(ITEMS, chunksize=6) == forward
    assert len({row[1] for row in forward}) == len({row[2] for row in forward}) == len(ITEMS)


def test_item_rng_gives_fresh_reproducible_generators() -> None:
    task = parallel(tasks_insights.item_rng_draws, backend="serial", seed=SEED)
    first, second = task.map([5]), task.map([5])
    assert first == second
    assert isinstance(first[0][1], float)
    assert isinstance(first[0][2], float)


def test_item_rng_outside_a_seeded_task_raises() -> None:
    with pytest.raises(RuntimeError, match="seed"):
        parmap.item_rng()
    with pytest.raises(RuntimeError, match="seed"):
        parmap.item_numpy_rng()


def test_item_rng_in_an_unseeded_task_raises(backend: Decorate) -> None:
    with pytest.raises(RuntimeError, match="seed"):
        backend(tasks_insights.call_item_rng).map(range(3))


def test_seeded_job_leaves_no_seed_behind(backend: Decorate) -> None:
    """After a seeded job, an unseeded one on the same pool (and the caller) has no item seed."""
    task = backend(tasks_insights.call_item_rng, workers=1)
    assert len(task.map(range(3), seed=SEED)) == 3
    with pytest.raises(RuntimeError, match="seed"):
        task.map(range(3))
    with pytest.raises(RuntimeError, match="seed"):
        parmap.item_rng()


@pytest.mark.parametrize("generator", ["numpy", "random"])
def test_forked_workers_never_share_random_state(tmp_path: Path, generator: str) -> None:
    """The parent seeds its global generators, then forks three workers that each draw once
    (in their initializer, so each surely draws): every draw differs from the others and
    from the parent's own next draw."""
    numpy.random.seed(1234)
    random.seed(1234)
    saved = numpy.random.get_state(), random.getstate()
    parent_next = {"numpy": float(numpy.random.random()), "random": random.random()}
    numpy.random.set_state(saved[0])
    random.setstate(saved[1])

    task = parallel(
        tasks.square,
        workers=3,
        start_method="fork",
        initializer=tasks_insights.record_first_draws,
        initargs=(str(tmp_path),),
    )
    assert task.map([2]) == [4]  # starts the pool: three workers forked from this state
    wait_until(lambda: len(list(tmp_path.glob("draws-*[0-9]"))) == 3)

    column = 0 if generator == "numpy" else 1
    draws = [float(path.read_text().split()[column]) for path in tmp_path.glob("draws-*[0-9]")]
    assert len(set(draws)) == 3, f"workers share {generator} state: {draws}"
    assert parent_next[generator] not in draws, f"workers inherited the parent's {generator} state"


@pytest.mark.parametrize("bad", ["42", 4.2, True])
def test_bad_seed_is_a_type_error(bad: Any) -> None:
    with pytest.raises(TypeError, match="seed"):
        parallel(tasks_insights.seeded_draws, seed=bad)
    with pytest.raises(TypeError, match="seed"):
        parallel(tasks_insights.seeded_draws).map([1], seed=bad)
