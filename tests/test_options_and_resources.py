"""Options checked where they are given, and resources that run out or are held by others.

Issue 10: unknown ``progress=`` keys (28), ``timeout=`` of any size (17), checkpoints that
cannot be opened, are locked, or fail to commit (29).
"""

from __future__ import annotations

import math
import sys
from typing import Any, Callable

import pytest

from parmap import parallel
from tests import tasks

Decorate = Callable[..., Any]

# ---------------------------------------------------------------- progress= keys (28)

BAD_PROGRESS_OPTIONS = [
    pytest.param({"bogus": 1}, r"unknown tqdm keyword argument\(s\): 'bogus'", id="unknown-key"),
    pytest.param({"minterval": 1}, r"'minterval' \(did you mean 'mininterval'\?\)", id="misspelt-key"),
    pytest.param({"desc": "x", "colr": "red", "zzz": 1}, r"'colr' \(did you mean 'colour'\?\), 'zzz'",
                 id="several-keys"),
    pytest.param({"iterable": [1, 2]}, r"'iterable'", id="iterable-is-parmaps-own"),
    pytest.param({1: "x"}, "str keys", id="non-str-key"),
]


@pytest.mark.parametrize(("progress", "match"), BAD_PROGRESS_OPTIONS)
def test_unknown_progress_key_fails_at_decoration(progress: dict[Any, Any], match: str) -> None:
    with pytest.raises(TypeError, match=match):
        parallel(tasks.square, progress=progress)
    with pytest.raises(TypeError, match=match):
        parallel(progress=progress)


@pytest.mark.parametrize("call", ["map", "imap", "imap_unordered", "map_async", "starmap"])
@pytest.mark.parametrize(("progress", "match"), BAD_PROGRESS_OPTIONS)
def test_unknown_progress_key_fails_at_call_time(call: str, progress: dict[Any, Any], match: str) -> None:
    """Raised by the call itself, before any work: ``map_async`` included (not in its thread)."""
    task = parallel(tasks.add if call == "starmap" else tasks.square, backend="thread", workers=2)
    items = [(1, 2)] if call == "starmap" else [1, 2]
    with pytest.raises(TypeError, match=match):
        getattr(task, call)(items, progress=progress)
    usable = task.starmap([(1, 2)], progress={"disable": True}) if call == "starmap" else task.map([3])
    assert usable == ([3] if call == "starmap" else [9])


def test_every_tqdm_keyword_is_accepted() -> None:
    import tqdm.std

    from parmap._config import tqdm_keywords

    every = {name: None for name in tqdm_keywords() if name != "display"}
    task = parallel(tasks.square, backend="serial", progress=every)  # validation only: accepted
    assert task.map([2], progress={"disable": True, "display": False}) == [4]
    assert "mininterval" in tqdm_keywords()
    assert tqdm_keywords() <= set(__import__("inspect").signature(tqdm.std.tqdm.__init__).parameters) | {"display"}


# ---------------------------------------------------------------- timeout= of any size (17)


@pytest.mark.parametrize("timeout", [math.inf, sys.float_info.max, 1e12, 10**30])
def test_any_timeout_validates(timeout: float) -> None:
    parallel(tasks.square, timeout=timeout)
    assert parallel(tasks.square, backend="serial").map([1], timeout=timeout) == [1]


@pytest.mark.parametrize("backend_name", ["serial", "thread"])
@pytest.mark.parametrize("timeout", [math.inf, sys.float_info.max])
def test_infinite_timeout_maps_inline_and_on_threads(backend_name: str, timeout: float) -> None:
    task = parallel(tasks.square, backend=backend_name, workers=2, timeout=timeout)
    assert task.map(range(20)) == [x * x for x in range(20)]
    assert list(task.imap(range(5), timeout=timeout, chunksize=1)) == [0, 1, 4, 9, 16]
