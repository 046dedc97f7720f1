"""Errors that teach (issue 13, point 7): each says what went wrong and the change that fixes it.

* a map call given an argument of the function (`factor=3`) says to bind it with
  `functools.partial`, or to put per-item arguments in the items (`starmap`);
* a map call given a pool option (`workers=4`) says to set it at decoration or with
  `parmap.config(...)`;
* a misspelt option names the close match (`chunk_size` -> `chunksize`);
* a generator function is refused at decoration, in every form;
* no message a user can cause names a private part of parmap (a class or module that is
  not public): a table of user errors drives one test that checks every message.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import parmap
from parmap._config import POOL_OPTIONS, MapOptions
from parmap._decorator import MapOverrides, ParallelOptions

from . import tasks

#: `parmap.parallel` untyped: these tests pass wrong options and values on purpose.
parallel: Any = parmap.parallel


def scale(x: int, factor: int = 1) -> int:
    return x * factor


def only_x(x: int) -> int:
    return x


def numbers(n: int) -> Iterator[int]:
    yield from range(n)


async def async_numbers(n: int) -> AsyncIterator[int]:
    for value in range(n):
        yield value


class Holder:
    @staticmethod
    def static_numbers(n: int) -> Iterator[int]:
        yield from range(n)

    @classmethod
    def class_numbers(cls, n: int) -> Iterator[int]:
        yield from range(n)


def raise_error(call: Callable[[], object]) -> BaseException:
    """The error `call` raises (the test fails if it raises none)."""
    try:
        call()
    except BaseException as error:
        return error
    raise AssertionError(f"{call} raised nothing")


# --------------------------------------------------------------------- misplaced keywords


def test_argument_of_the_function_says_to_bind_it_with_partial() -> None:
    task = parallel(scale, backend="serial")
    error = raise_error(lambda: task.map([1, 2], factor=3))
    assert isinstance(error, TypeError)
    message = str(error)
    assert "unexpected keyword argument 'factor'" in message
    assert "`parallel(functools.partial(scale, factor=3)).map(items)`" in message
    assert "starmap" in message
    assert "chunksize" in message  # what a map call's keywords are
    # The fix it shows works.
    assert parallel(functools.partial(task, factor=3), backend="serial").map([1, 2]) == [3, 6]


def test_keyword_the_function_does_not_take_is_named_as_neither() -> None:
    task = parallel(only_x, backend="serial")
    message = str(raise_error(lambda: task.imap([1], factor=3)))
    assert "neither a parameter of only_x nor one of parmap's options" in message
    assert "partial" not in message


@pytest.mark.parametrize("option", POOL_OPTIONS)
def test_pool_option_in_a_map_call_says_where_it_goes(option: str) -> None:
    task = parallel(scale, backend="serial")
    error = raise_error(lambda: task.map([1], **{option: 4}))
    assert isinstance(error, TypeError)
    message = str(error)
    assert f"`@parallel({option}=4)`" in message
    assert f"`with parmap.config({option}=4):`" in message
    assert "pool option" in message


@pytest.mark.parametrize(
    ("given", "meant"),
    [
        ("chunk_size", "chunksize"),
        ("progres", "progress"),
        ("time_out", "timeout"),
        ("retry", "retries"),
        ("returnexceptions", "return_exceptions"),
    ],
)
def test_misspelt_option_names_the_close_match(given: str, meant: str) -> None:
    task = parallel(scale, backend="serial")
    message = str(raise_error(lambda: task.map([1], **{given: 2})))
    assert re.search(rf"did you mean [^?]*{meant!r}", message), message


@pytest.mark.parametrize("given", ["processes", "n_jobs", "max_workers", "worker", "num_workers"])
def test_other_libraries_names_for_workers_point_to_workers(given: str) -> None:
    task = parallel(scale, backend="serial")
    message = str(raise_error(lambda: task.map([1], **{given: 2})))
    assert "parmap calls it 'workers'" in message or given == "worker"
    assert "`@parallel(workers=2)`" in message


def test_several_mistakes_in_one_call_are_each_explained() -> None:
    task = parallel(scale, backend="serial")
    message = str(raise_error(lambda: task.map([1], workers=2, chunk_size=3, factor=4)))
    assert "unexpected keyword arguments 'chunk_size', 'factor', 'workers'" in message
    assert "`@parallel(workers=2)`" in message
    assert "did you mean 'chunksize'?" in message
    assert "functools.partial(scale, factor=4)" in message


def test_misspelt_decorator_option_names_the_close_match() -> None:
    error = raise_error(lambda: parallel(worker=4))
    assert isinstance(error, TypeError)
    assert "unexpected option 'worker' (did you mean 'workers'?)" in str(error)


def test_every_pool_option_of_the_decorator_is_known_to_the_advice() -> None:
    pool_options = set(ParallelOptions.__annotations__) - set(MapOverrides.__annotations__)
    assert pool_options <= set(POOL_OPTIONS)
    assert not set(POOL_OPTIONS) & set(MapOptions.__dataclass_fields__)


# --------------------------------------------------------------------- generators


@pytest.mark.parametrize(
    ("function", "kind"),
    [
        pytest.param(numbers, "a generator function", id="plain"),
        pytest.param(async_numbers, "an async generator function", id="async"),
        pytest.param(Holder.__dict__["static_numbers"], "a generator function", id="staticmethod"),
        pytest.param(Holder.__dict__["class_numbers"], "a generator function", id="classmethod"),
        pytest.param(functools.partial(numbers), "a generator function", id="partial"),
        pytest.param(functools.partial(async_numbers), "an async generator function", id="partial-async"),
    ],
)
def test_generator_functions_are_refused_at_decoration(function: Any, kind: str) -> None:
    error = raise_error(lambda: parallel(function))
    assert isinstance(error, TypeError)
    assert f"parallel() cannot run {kind}" in str(error)
    error = raise_error(lambda: parallel(workers=2)(function))
    assert f"parallel() cannot run {kind}" in str(error)


def test_generator_method_is_refused_in_the_class_body() -> None:
    def define() -> type:
        class Numbers:
            @parmap.parallel
            def values(self, n: int) -> Iterator[int]:
                yield from range(n)

        return Numbers

    assert "cannot run a generator function" in str(raise_error(define))


# --------------------------------------------------------------------- no private names


def _private_names() -> set[str]:
    """Every class parmap defines that is not public, and every private module's dotted name."""
    names: set[str] = set()
    public = set(parmap.__all__)
    for module_info in pkgutil.walk_packages(parmap.__path__, "parmap."):
        if module_info.name.endswith(".dask"):
            continue  # needs dask; its classes are checked by the pattern below all the same
        module = importlib.import_module(module_info.name)
        if module_info.name.rsplit(".", 1)[-1].startswith("_"):
            names.add(module_info.name)
        for name, value in vars(module).items():
            if isinstance(value, type) and value.__module__.startswith("parmap") and name not in public:
                names.add(name)
    return names


#: A parmap module path with a private part (`parmap.backends._worker`), or an identifier
#: with one leading underscore (`_Decorator`; dunders such as `__main__` are not private).
PRIVATE = re.compile(r"parmap(\.\w+)*\._\w+|(?<![\w.])_[A-Za-z]\w*")

#: Names of Python's own that messages quote from the errors they pass on.
NOT_OURS = {"_thread"}


def lock_closure() -> Callable[[int], int]:
    lock = threading.Lock()

    def uses_lock(x: int) -> int:
        with lock:
            return x

    return uses_lock


def async_lock_closure() -> Callable[[int], Any]:
    lock = threading.Lock()

    async def uses_lock(x: int) -> int:
        with lock:
            return x

    return uses_lock


def _user_errors(tmp_path: Path) -> list[tuple[str, Callable[[], object]]]:
    """(description, call) for a broad set of mistakes a user can make."""
    serial = parallel(scale, backend="serial")
    fork = functools.partial(parallel, workers=1, start_method="fork")
    checkpoint = str(tmp_path / "job.sqlite")
    parallel(tasks.square, backend="serial", checkpoint=checkpoint).map(range(3))
    return [
        ("not callable", lambda: parallel(42)),
        ("generator", lambda: parallel(numbers)),
        ("unknown decorator option", lambda: parallel(scale, worker=2)),
        ("workers 0", lambda: parallel(scale, workers=0)),
        ("workers str", lambda: parallel(scale, workers="4")),
        ("backend", lambda: parallel(scale, backend="gpu")),
        ("start method", lambda: parallel(scale, start_method="thread")),
        ("initializer", lambda: parallel(scale, initializer=3)),
        ("initargs", lambda: parallel(scale, initargs=3)),
        ("memory", lambda: parallel(scale, max_worker_memory="lots")),
        ("memory on threads", lambda: parallel(scale, backend="thread", max_worker_memory="1GB")),
        ("address off dask", lambda: parallel(scale, address="tcp://x:1")),
        ("concurrency", lambda: parallel(scale, concurrency=2)),
        ("progress key", lambda: parallel(scale, progress={"colour2": "red"})),
        ("progress type", lambda: parallel(scale, progress=3)),
        ("argument per call", lambda: serial.map([1], factor=3)),
        ("pool option per call", lambda: serial.map([1], workers=3)),
        ("typo per call", lambda: serial.map([1], chunk_size=3)),
        ("chunksize", lambda: serial.map([1], chunksize=0)),
        ("chunksize str", lambda: serial.map([1], chunksize="big")),
        ("timeout", lambda: serial.map([1], timeout=-1)),
        ("retries", lambda: serial.map([1], retries=-1)),
        ("retry_on", lambda: serial.map([1], retry_on=3)),
        ("seed", lambda: serial.map([1], seed="x")),
        ("checkpoint", lambda: serial.map([1], checkpoint=3)),
        ("checkpoint mode", lambda: serial.map([1], checkpoint_mode="x")),
        ("return_exceptions", lambda: serial.map([1], return_exceptions="yes")),
        ("not iterable", lambda: serial.map(42)),
        ("not iterable imap", lambda: serial.imap(42)),
        ("not iterable aimap", lambda: serial.aimap(42)),
        ("not iterable starmap", lambda: serial.starmap(42)),
        ("callback", lambda: serial.map_async([1], callback=3)),
        ("task error", lambda: parallel(tasks.fail_on_three, backend="serial").map(range(5))),
        ("stop iteration", lambda: list(parallel(tasks.raise_stop_iteration_on_two, backend="serial").imap(range(4)))),
        ("checkpoint mismatch", lambda: parallel(tasks.add, backend="serial", checkpoint=checkpoint).map(range(3))),
        ("unpicklable item", lambda: fork(tasks.identity).map([threading.Lock()])),
        ("unpicklable result", lambda: fork(tasks.return_unpicklable).map(range(6))),
        ("unpicklable error", lambda: fork(tasks.raise_unpicklable).map(range(3))),
        ("unpicklable function", lambda: fork(lock_closure()).map(range(3))),
        ("unpicklable function starmap", lambda: fork(lock_closure()).starmap([(1,)])),
        ("unpicklable async function", lambda: fork(async_lock_closure()).map(range(3))),
        ("function unloadable in a worker", lambda: fork(tasks.UnloadableInWorker()).map(range(3))),
        ("function unloadable starmap", lambda: fork(tasks.UnloadableInWorker()).starmap([(1,)])),
        ("unpicklable shared", lambda: fork(tasks.identity).map(range(3), shared=threading.Lock())),
        ("worker lost", lambda: fork(tasks.exit_on_seven).map(range(9))),
        ("initializer failed", lambda: fork(tasks.identity, initializer=tasks.exit_in_initializer).map(range(2))),
        ("timeout", lambda: fork(tasks.sleep_on, timeout=0.05).map([0.0, 30.0])),
    ]


def _messages(error: BaseException) -> list[str]:
    """The error's own message and notes, and those of the errors it is chained to."""
    texts = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and not isinstance(current, parmap.RemoteTraceback):
        seen.add(id(current))
        texts.append(str(current))
        texts.extend(getattr(current, "__notes__", []))
        current = current.__cause__
    return texts


def test_no_user_error_names_a_private_part_of_parmap(tmp_path: Path) -> None:
    private = _private_names()
    word = re.compile(r"\b(" + "|".join(sorted(map(re.escape, private), key=len, reverse=True)) + r")\b")
    offending = []
    for description, call in _user_errors(tmp_path):
        error = raise_error(call)
        assert isinstance(error, Exception), (description, error)
        for text in _messages(error):
            found = [m.group(0) for m in PRIVATE.finditer(text) if m.group(0) not in NOT_OURS]
            found += [m.group(0) for m in word.finditer(text)]
            if found:
                offending.append(f"{description}: {found} in {text!r}")
    assert not offending, "\n".join(offending)
