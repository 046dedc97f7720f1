"""The public API of issue 2 on every backend and start method."""

from __future__ import annotations

import functools
import inspect
import math
import pickle
import threading
from typing import Any, Callable

import cloudpickle
import pytest

import parmap
from parmap import AsyncResult, ParallelFunction, _transport, parallel
from tests import tasks
from tests.conftest import wait_until
from tests.tasks_nested import inner_square

Decorate = Callable[..., Any]


def test_plain_call_runs_here_unchanged() -> None:
    calls = []

    @parallel
    def record(x: int) -> int:
        calls.append(x)
        return x + 1

    assert record(1) == 2
    assert calls == [1]


def test_map_in_input_order(backend: Decorate) -> None:
    assert backend(tasks.square).map(range(40)) == [x * x for x in range(40)]


def test_imap_is_lazy_and_ordered(backend: Decorate) -> None:
    task = backend(tasks.square)
    assert list(task.imap(iter(range(50)))) == [x * x for x in range(50)]


def test_imap_unordered_gives_every_result_once(backend: Decorate) -> None:
    task = backend(tasks.square)
    assert sorted(task.imap_unordered(range(50), chunksize=3)) == [x * x for x in range(50)]


def test_starmap(backend: Decorate) -> None:
    assert backend(tasks.add).starmap([(1, 2), (3, 4)]) == [3, 7]


def test_map_async_callbacks_and_get(backend: Decorate) -> None:
    received: list[Any] = []
    result = backend(tasks.square).map_async(range(10), callback=received.append)
    assert isinstance(result, AsyncResult)
    assert result.get(timeout=20) == [x * x for x in range(10)]
    assert received == [[x * x for x in range(10)]]
    assert result.ready()
    assert result.successful()


def test_map_async_error_callback(backend: Decorate) -> None:
    errors: list[BaseException] = []
    result = backend(tasks.fail_on_three).map_async(range(6), error_callback=errors.append)
    result.wait(20)
    assert result.ready()
    assert not result.successful()
    with pytest.raises(ValueError, match="bad item 3"):
        result.get(0)
    assert len(errors) == 1
    assert isinstance(errors[0], ValueError)


def test_map_async_get_timeout_raises_timeout_error(tmp_path: Any) -> None:
    task = parallel(tasks.wait_for_file, workers=1)
    result = task.map_async([(str(tmp_path), 0)])
    with pytest.raises(TimeoutError):
        result.get(timeout=0.05)
    with pytest.raises(ValueError, match="not ready"):
        result.successful()
    (tmp_path / "go").write_text("")
    assert result.get(timeout=20) == [0]


def test_empty_input_starts_nothing() -> None:
    task = parallel(tasks.square, workers=2)
    assert task.map([]) == []
    assert list(task.imap(())) == []
    assert parmap._registry._pools == {}


@pytest.mark.parametrize("chunksize", [1, 2, 7, 100, "auto"])
def test_chunksize_values(backend: Decorate, chunksize: Any) -> None:
    task = backend(tasks.square, chunksize=chunksize)
    assert task.map(range(23)) == [x * x for x in range(23)]
    assert task.map(range(23), chunksize=5) == [x * x for x in range(23)]


def test_one_pool_shared_by_functions_decorated_alike() -> None:
    first = parallel(tasks.pid_of, workers=2)
    second = parallel(tasks.square, workers=2)
    pids = set(first.map(range(20), chunksize=1))
    second.map(range(4))
    assert len(parmap._registry._pools) == 1
    assert pids <= set(parallel(tasks.pid_of, workers=2).map(range(40), chunksize=1)) | pids
    assert len(set(first.map(range(40), chunksize=1)) | pids) <= 2


def test_distinct_configurations_get_distinct_pools() -> None:
    parallel(tasks.square, workers=1).map([1])
    parallel(tasks.square, workers=2).map([1])
    parallel(tasks.square, workers=2, backend="thread").map([1])
    assert len(parmap._registry._pools) == 3


def test_safe_from_several_threads(backend: Decorate) -> None:
    task = backend(tasks.square)
    results: dict[int, list[int]] = {}

    def run(n: int) -> None:
        results[n] = task.map(range(n, n + 30))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {n: [x * x for x in range(n, n + 30)] for n in range(6)}


def test_lambdas_closures_partials_and_methods(backend: Decorate) -> None:
    offset = 10

    def nested(x: int) -> int:
        return x + offset

    class Scaler:
        def __init__(self, factor: int) -> None:
            self.factor = factor

        def scale(self, x: int) -> int:
            return x * self.factor

    assert backend(lambda x: x * 2).map([1, 2]) == [2, 4]
    assert backend(nested).map([1, 2]) == [11, 12]
    assert backend(functools.partial(tasks.add, 100)).map([1, 2]) == [101, 102]
    assert backend(Scaler(3).scale).map([1, 2]) == [3, 6]


def test_builtin_function(backend: Decorate) -> None:
    assert backend(math.sqrt).map([4, 9]) == [2.0, 3.0]


class Shape:
    def __init__(self, scale: int) -> None:
        self.scale = scale

    @parallel(workers=2)
    def area(self, side: int) -> int:
        return side * side * self.scale

    @parallel(workers=2)
    @staticmethod
    def static_double(x: int) -> int:
        return 2 * x

    @parallel(workers=2)
    @classmethod
    def class_name(cls, x: int) -> str:
        return f"{cls.__name__}{x}"

    @staticmethod
    @parallel(workers=2)
    def outer_static(x: int) -> int:
        return 3 * x


def test_methods_staticmethods_classmethods() -> None:
    shape = Shape(2)
    assert shape.area(3) == 18
    assert shape.area.map([1, 2]) == [2, 8]
    assert Shape.static_double.map([1, 2]) == [2, 4]
    assert shape.static_double.map([3]) == [6]
    assert Shape.class_name.map([1]) == ["Shape1"]
    assert Shape.outer_static.map([1, 2]) == [3, 6]


def test_metadata_is_kept() -> None:
    def documented(item: int, scale: float = 1.0) -> float:
        """Scale an item."""
        return item * scale

    task = parallel(documented)
    assert isinstance(task, ParallelFunction)
    assert task.__name__ == "documented"
    assert task.__doc__ == "Scale an item."
    assert task.__wrapped__ is documented
    assert inspect.signature(task) == inspect.signature(documented)


def test_decorated_module_function_pickles_and_still_works() -> None:
    restored = pickle.loads(pickle.dumps(inner_square))
    assert restored is inner_square
    assert restored.map([1, 2, 3]) == [1, 4, 9]
    assert cloudpickle.loads(cloudpickle.dumps(inner_square)) is inner_square
    # A decorated lambda has no importable name: it travels by value, still decorated.
    by_value = _transport.decode(_transport.encode(parallel(lambda x: x - 1, workers=2), "parmap-test-"))
    assert isinstance(by_value, ParallelFunction)
    assert by_value(3) == 2
    assert by_value.map([1, 2]) == [0, 1]


def test_decorated_closure_given_to_cloudpickle_directly_still_computes() -> None:
    # Outside parmap's transport, cloudpickle takes the decorated object for the function it
    # wraps (it asks isinstance(obj, FunctionType)) and copies that function.
    offset = 5
    task = parallel(lambda x: x + offset, workers=2)
    task.__dict__["marker"] = "kept"  # the function's own attributes, as for a function
    copied = cloudpickle.loads(cloudpickle.dumps(task))
    assert copied(1) == 6
    assert copied.marker == "kept"


def test_copying_a_decorated_function_gives_the_same_object() -> None:
    import copy

    assert copy.copy(inner_square) is inner_square  # as copy.copy does for any function
    assert copy.deepcopy(inner_square) is inner_square


def test_inner_decorated_function_defined_in_the_caller_travels_decorated(backend: Decorate) -> None:
    @parallel(workers=2)
    def inner(x: int) -> int:
        return x + 1

    def outer(n: int) -> list[int]:
        return inner.map(range(n))  # `inner` reaches the worker by value, map methods intact

    assert backend(outer).map([2, 3]) == [[1, 2], [1, 2, 3]]


def test_global_random_generator_is_the_workers_own() -> None:
    import random

    draw = random.random  # what `from random import random` binds: a method of random._inst
    values = parallel(draw, workers=2).starmap([()] * 40, chunksize=1)
    assert len(set(values)) == 40  # a copy of the caller's generator would repeat its draws


def test_decorated_function_sent_to_another_process_still_works() -> None:
    # The decorated object itself travels to a worker and maps there (nested: serially).
    assert parallel(tasks.identity, workers=2).map([inner_square])[0].map([3]) == [9]


def test_parallel_of_existing_function_equals_decorator_form() -> None:
    direct = parallel(tasks.square, workers=2)
    via = parallel(workers=2)(tasks.square)
    assert direct.map(range(5)) == via.map(range(5))


def test_initializer_runs_once_per_worker(tmp_path: Any) -> None:
    log = tmp_path / "init.log"
    task = parallel(tasks.pid_of, workers=2, initializer=tasks.count_init, initargs=(str(log),))
    pids = set(task.map(range(20), chunksize=1))
    # The map may finish before the second worker is ready: wait for its line, not a time.
    wait_until(lambda: len(log.read_text().split()) >= 2)
    lines = log.read_text().split()
    assert len(lines) == len(set(lines)) == 2
    assert pids <= {int(line) for line in lines}


def test_initializer_failure_is_a_clear_error() -> None:
    def broken() -> None:
        raise RuntimeError("no database")

    task = parallel(tasks.square, workers=2, initializer=broken)
    with pytest.raises(parmap.InitializerError) as info:
        task.map(range(4))
    assert "no database" in str(info.value.__cause__)
    assert parallel(tasks.square, workers=2).map([2]) == [4]


def test_progress_counts_items(capsys: pytest.CaptureFixture[str]) -> None:
    task = parallel(tasks.square, workers=2)
    assert task.map(range(30), progress=True) == [x * x for x in range(30)]
    err = capsys.readouterr().err
    assert "30/30" in err
    assert list(task.imap(range(12), progress={"desc": "squares"})) == [x * x for x in range(12)]
    err = capsys.readouterr().err
    assert "squares" in err
    assert "12/12" in err


def test_progress_closed_on_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    from parmap import _progress

    closed: list[bool] = []
    original = _progress.TqdmProgress.close

    def close(self: Any) -> None:
        closed.append(True)
        original(self)

    monkeypatch.setattr(_progress.TqdmProgress, "close", close)
    with pytest.raises(ValueError):
        parallel(tasks.fail_on_three, workers=2).map(range(10), progress={"disable": True})
    assert closed == [True]


def test_shutdown_then_reuse() -> None:
    task = parallel(tasks.square, workers=2)
    assert task.map([3]) == [9]
    parmap.shutdown()
    assert task.map([4]) == [16]


def test_version_and_public_surface() -> None:
    assert isinstance(parmap.__version__, str)
    assert sorted(parmap.__all__) == parmap.__all__
    for name in parmap.__all__:
        assert getattr(parmap, name).__module__ == "parmap", name
    assert issubclass(parmap.WorkerLostError, parmap.ParmapError)
    assert issubclass(parmap.TaskTimeoutError, TimeoutError)
    assert issubclass(parmap.WorkerLostError, RuntimeError)  # as BrokenProcessPool and mpire's error


def test_async_result_timeout_is_caught_by_both_timeout_clauses(tmp_path: Any) -> None:
    import multiprocessing

    pending = parallel(tasks.wait_for_file, workers=1).map_async([(str(tmp_path), 0)])
    for clause in (TimeoutError, multiprocessing.TimeoutError, parmap.ResultTimeoutError):
        with pytest.raises(clause):
            pending.get(timeout=0.01)
    (tmp_path / "go").write_text("")
    assert pending.get(timeout=20) == [0]


BAD_DECORATOR_OPTIONS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"workers": 0}, ValueError, "workers must be an int >= 1"),
    ({"workers": "4"}, TypeError, "workers must be an int >= 1"),
    ({"workers": True}, TypeError, "workers must be an int >= 1"),
    ({"chunksize": 0}, ValueError, "chunksize"),
    ({"chunksize": "fast"}, ValueError, "chunksize"),
    ({"chunksize": 2.5}, TypeError, "chunksize"),
    ({"backend": "gpu"}, ValueError, "backend must be one of"),
    ({"backend": 3}, TypeError, "backend must be one of"),
    ({"start_method": "vfork"}, ValueError, "start_method"),
    ({"initializer": 42}, TypeError, "initializer must be callable"),
    ({"initargs": 5}, TypeError, "initargs must be a tuple"),
    ({"timeout": -1}, ValueError, "timeout must be > 0"),
    ({"timeout": "1"}, TypeError, "timeout"),
    ({"retries": -1}, ValueError, "retries must be an int >= 0"),
    ({"retry_on": "ValueError"}, TypeError, "retry_on"),
    ({"return_exceptions": 1}, TypeError, "return_exceptions must be True or False"),
    ({"progress": "yes"}, TypeError, "progress must be a bool or a dict"),
    ({"max_tasks_per_worker": 0}, ValueError, "max_tasks_per_worker"),
    ({"max_in_flight": 0}, ValueError, "max_in_flight"),
    ({"address": "tcp://x:1"}, ValueError, "only apply to backend='dask'"),
    ({"no_such_option": 1}, TypeError, "unexpected option"),
]


@pytest.mark.parametrize(("options", "error", "match"), BAD_DECORATOR_OPTIONS)
def test_bad_options_fail_at_decoration(options: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        parallel(tasks.square, **options)
    with pytest.raises(error, match=match):
        parallel(**options)  # the decorator form fails before it is applied


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [case for case in BAD_DECORATOR_OPTIONS if set(case[0]) <= set(parmap._decorator.MapOverrides.__annotations__)],
)
def test_bad_per_call_options_fail_at_call_time_and_the_pool_stays_usable(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    task = parallel(tasks.square, workers=2)
    assert task.map([1]) == [1]
    with pytest.raises(error, match=match):
        task.map([1, 2], **options)
    assert task.map([2, 3]) == [4, 9]


@pytest.mark.parametrize("call", ["map", "imap", "imap_unordered", "map_async", "starmap"])
def test_non_iterable_input_is_a_type_error(call: str) -> None:
    task = parallel(tasks.square, workers=2)
    with pytest.raises(TypeError, match="needs an iterable of items, got int"):
        getattr(task, call)(5)
    assert task.map([3]) == [9]


def test_decorating_a_non_callable_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="needs a callable"):
        parallel(42)  # type: ignore[call-overload]
