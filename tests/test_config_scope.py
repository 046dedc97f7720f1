"""`parmap.config(...)` and the `PARMAP_*` variables: the caller decides how a library's maps run.

The order under test, each winning over the next: per-call keyword, innermost `config()`,
environment, decorator, built-in default. Which pool a map used is read from the registry
(one pool per configuration); which job options it ran with, from its stats and its bar.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import pytest

import parmap
from parmap import _registry, _scope
from parmap._config import default_workers
from tests import tasks
from tests.conftest import RecordingBar


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in _scope.ENVIRONMENT_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


def pools_used() -> set[tuple[str, int]]:
    """(backend, workers) of every pool the registry holds."""
    return {(config.backend, config.workers) for config in _registry._pools}


def thread_square(**settings: Any) -> parmap.ParallelFunction[[int], int]:
    return parmap.parallel(tasks.square, backend="thread", **settings)


# ---------------------------------------------------------------- the order of the layers


def test_the_decorator_wins_over_the_default() -> None:
    assert thread_square().map(range(3)) == [0, 1, 4]
    assert thread_square(workers=3).map(range(3)) == [0, 1, 4]
    assert pools_used() == {("thread", default_workers()), ("thread", 3)}


def test_the_environment_wins_over_the_decorator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARMAP_WORKERS", "2")
    monkeypatch.setenv("PARMAP_BACKEND", "thread")
    assert parmap.parallel(tasks.square, workers=5).map(range(4)) == [0, 1, 4, 9]
    assert pools_used() == {("thread", 2)}


def test_config_wins_over_the_environment_and_the_innermost_scope_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARMAP_WORKERS", "2")
    square = thread_square(workers=5)
    with parmap.config(workers=3):
        square.map(range(4))
        with parmap.config(workers=4):
            square.map(range(4))
        square.map(range(4))  # the outer scope again
    square.map(range(4))  # the environment again
    assert pools_used() == {("thread", 3), ("thread", 4), ("thread", 2)}


def test_a_scope_inherits_what_it_does_not_set() -> None:
    with parmap.config(backend="thread"), parmap.config(workers=3):
        assert parmap.parallel(tasks.square).map(range(3)) == [0, 1, 4]
    assert pools_used() == {("thread", 3)}


def chunk_sizes_of(square: parmap.ParallelFunction[[int], int], **overrides: Any) -> set[int]:
    square.map(range(8), stats=True, **overrides)
    stats = square.last_stats()
    assert stats is not None
    return set(stats.chunk_sizes)


def test_a_per_call_keyword_wins_over_config() -> None:
    square = thread_square(workers=2, chunksize=1)
    with parmap.config(chunksize=4):
        assert chunk_sizes_of(square) == {4}
        assert chunk_sizes_of(square, chunksize=2) == {2}
    assert chunk_sizes_of(square) == {1}  # the decorator's, outside


def test_config_sets_job_options_for_every_function(bars: list[RecordingBar]) -> None:
    with parmap.config(progress=True, retries=2):
        thread_square().map(range(5))
        assert parmap.parallel(tasks.add, backend="serial").starmap([(1, 2), (3, 4)]) == [3, 7]
    thread_square().map(range(5))
    assert [bar.total for bar in bars] == [5, 2]


def test_config_switches_a_library_function_to_serial() -> None:
    """A library decorated for a Dask cluster runs serially under `config(backend="serial")`:
    the decorator's `address=` belongs to Dask and is dropped, never connected to."""
    library_function = parmap.parallel(tasks.pid_of, backend="dask", address="tcp://127.0.0.1:9")
    with parmap.config(backend="serial"):
        assert library_function.map(range(3)) == [os.getpid()] * 3
    assert pools_used() == {("serial", default_workers())}


def test_the_options_of_another_backend_are_dropped_not_refused() -> None:
    limited = parmap.parallel(tasks.square, max_worker_memory="4GB", start_method="spawn")
    with parmap.config(backend="thread", workers=2):
        assert limited.map(range(3)) == [0, 1, 4]
    (config,) = _registry._pools
    assert (config.backend, config.start_method, config.max_worker_memory) == ("thread", None, None)


def test_address_or_client_in_config_selects_dask() -> None:
    layer = parmap.config(address="tcp://127.0.0.1:9")._layer
    assert layer.settings["backend"] == "dask"
    merged = _scope.merge({"backend": "thread", "workers": 2}, (layer,))
    assert merged == {"backend": "dask", "workers": 2, "address": "tcp://127.0.0.1:9"}


# ---------------------------------------------------------------- scoping


def test_a_new_thread_starts_with_no_scope() -> None:
    seen: list[set[tuple[str, int]]] = []

    def in_a_thread() -> None:
        thread_square(workers=2).map(range(3))
        seen.append(pools_used())

    with parmap.config(workers=3):
        thread = threading.Thread(target=in_a_thread)
        thread.start()
        thread.join()
        thread_square(workers=2).map(range(3))
    assert seen == [{("thread", 2)}]
    assert pools_used() == {("thread", 2), ("thread", 3)}


def test_asyncio_tasks_each_see_their_own_scope() -> None:
    square = thread_square(workers=2)

    async def scoped(workers: int, entered: asyncio.Event, proceed: asyncio.Event) -> list[int]:
        with parmap.config(workers=workers):
            entered.set()
            await proceed.wait()  # the other task enters its own scope meanwhile
            return [result async for result in square.aimap(range(3))]

    async def unscoped(proceed: asyncio.Event) -> list[int]:
        await proceed.wait()
        return [result async for result in square.aimap(range(3))]

    async def main() -> None:
        entered = [asyncio.Event(), asyncio.Event()]
        proceed = asyncio.Event()
        runs = [
            asyncio.create_task(scoped(3, entered[0], proceed)),
            asyncio.create_task(scoped(4, entered[1], proceed)),
            asyncio.create_task(unscoped(proceed)),
        ]
        for event in entered:
            await event.wait()
        proceed.set()
        assert await asyncio.gather(*runs) == [[0, 1, 4]] * 3

    asyncio.run(main())
    assert pools_used() == {("thread", 2), ("thread", 3), ("thread", 4)}


def test_a_task_created_in_a_scope_inherits_it() -> None:
    square = thread_square(workers=2)

    async def child() -> list[int]:
        return [result async for result in square.aimap(range(3))]

    async def parent() -> list[int]:
        with parmap.config(workers=3):
            task = asyncio.create_task(child())
        return await task  # the scope has ended here; the task copied it when created

    assert asyncio.run(parent()) == [0, 1, 4]
    assert pools_used() == {("thread", 3)}


def test_map_async_and_imap_take_the_scope_of_their_call() -> None:
    square = thread_square(workers=2)
    with parmap.config(workers=3):
        pending = square.map_async(range(4))
    with parmap.config(workers=4):
        lazy = square.imap(range(4))
    assert pending.get(timeout=30) == [0, 1, 4, 9]
    assert list(lazy) == [0, 1, 4, 9]
    assert pools_used() == {("thread", 3), ("thread", 4)}


def test_config_as_a_decorator_of_plain_and_async_functions() -> None:
    square = thread_square(workers=2)

    @parmap.config(workers=3)
    def plain() -> list[int]:
        return square.map(range(3))

    @parmap.config(workers=4)
    async def coroutine() -> list[int]:
        await asyncio.sleep(0)  # the scope lasts across awaits
        return [result async for result in square.aimap(range(3))]

    assert plain() == [0, 1, 4]
    assert asyncio.run(coroutine()) == [0, 1, 4]
    assert plain.__name__ == "plain"
    assert coroutine.__name__ == "coroutine"
    assert asyncio.iscoroutinefunction(coroutine)
    assert pools_used() == {("thread", 3), ("thread", 4)}


def test_one_config_entered_twice_and_left_out_of_order() -> None:
    outer, inner = parmap.config(workers=3), parmap.config(workers=4)
    outer.__enter__()
    inner.__enter__()
    outer.__enter__()
    outer.__exit__(None, None, None)  # leaves the last entry of `outer` only
    assert [layer.settings["workers"] for layer in _scope._scopes.get()] == [3, 4]
    outer.__exit__(None, None, None)  # leaves `outer` under `inner`
    assert [layer.settings["workers"] for layer in _scope._scopes.get()] == [4]
    inner.__exit__(None, None, None)
    assert _scope._scopes.get() == ()


def test_many_scopes_resolve_right_past_the_cache() -> None:
    square = thread_square(workers=2)
    for workers in [1, 2, 3] * (_scope.RESOLVED_KEPT + 1):
        with parmap.config(workers=workers):
            config, _, _ = square._self_resolver.resolve()
            assert config.workers == workers
    assert len(square._self_resolver._resolved) <= _scope.RESOLVED_KEPT


# ---------------------------------------------------------------- the environment


def test_progress_zero_turns_every_bar_off(monkeypatch: pytest.MonkeyPatch, bars: list[RecordingBar]) -> None:
    monkeypatch.setenv("PARMAP_PROGRESS", "0")
    square = thread_square(workers=2, progress=True)
    square.map(range(3))
    square.map(range(3), progress=True)
    with parmap.config(progress={"desc": "x"}):
        list(square.imap(range(3)))
    assert bars == []


def test_progress_one_turns_bars_on(monkeypatch: pytest.MonkeyPatch, bars: list[RecordingBar]) -> None:
    monkeypatch.setenv("PARMAP_PROGRESS", "1")
    thread_square(workers=2).map(range(3))
    thread_square(workers=2).map(range(3), progress=False)  # a per-call keyword still wins
    assert [bar.total for bar in bars] == [3]


def test_start_method_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARMAP_START_METHOD", "spawn")
    assert parmap.parallel(tasks.square, workers=1).map(range(3)) == [0, 1, 4]
    assert {config.start_method for config in _registry._pools} == {"spawn"}


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("PARMAP_WORKERS", "two", "PARMAP_WORKERS must be an int >= 1, got 'two'"),
        ("PARMAP_WORKERS", "0", "PARMAP_WORKERS='0' is not usable: workers must be an int >= 1"),
        ("PARMAP_BACKEND", "gpu", "PARMAP_BACKEND='gpu' is not usable: backend must be one of"),
        ("PARMAP_START_METHOD", "vfork", "PARMAP_START_METHOD='vfork' is not usable: start_method must be"),
        ("PARMAP_PROGRESS", "maybe", "PARMAP_PROGRESS must be 0 (every bar off) or 1 (bars on), got 'maybe'"),
    ],
)
def test_a_bad_variable_is_a_clear_error_and_the_pool_stays_usable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    square = thread_square(workers=2)
    assert square.map(range(2)) == [0, 1]
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match="^" + expected.replace("(", r"\(").replace(")", r"\)")):
        square.map(range(2))
    monkeypatch.delenv(variable)
    assert square.map(range(3)) == [0, 1, 4]


def test_empty_variables_are_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in _scope.ENVIRONMENT_VARIABLES:
        monkeypatch.setenv(variable, " ")
    assert thread_square(workers=2).map(range(3)) == [0, 1, 4]
    assert pools_used() == {("thread", 2)}


# ---------------------------------------------------------------- validation


def test_an_unknown_option_is_refused_with_a_suggestion() -> None:
    expected = r"config\(\) got unexpected option 'wrokers' \(did you mean 'workers'\?\)"
    with pytest.raises(TypeError, match=expected):
        parmap.config(wrokers=2)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"workers": 0}, ValueError),
        ({"workers": "2"}, TypeError),
        ({"backend": "gpu"}, ValueError),
        ({"progress": "yes"}, TypeError),
        ({"chunksize": -1}, ValueError),
        ({"backend": "thread", "max_worker_memory": "1GB"}, ValueError),
        ({"backend": "thread", "address": "tcp://127.0.0.1:9"}, ValueError),
    ],
)
def test_bad_values_are_refused_when_the_scope_is_made(settings: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        parmap.config(**settings)
    assert _scope._scopes.get() == ()


def test_the_repr_shows_the_settings() -> None:
    assert repr(parmap.config(workers=2, progress=False)) == "parmap.config(workers=2, progress=False)"
