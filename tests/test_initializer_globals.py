"""A global set by the initializer is the one the task reads (issue 12, `parmap._reducers`).

The `__main__` cases run a real script in a subprocess (a task in the main script is
pickled by value; under spawn and forkserver the worker re-imports the script as
`__mp_main__`), printing what the tasks saw as JSON. The thread and serial backends
pickle nothing: they are checked in-process, with functions of `tests.tasks_pickling`.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any, Literal

import pytest

import parmap
from parmap import _reducers, _transport

from . import tasks_pickling
from .conftest import StartMethod, run_script_file

START_METHODS: list[StartMethod] = ["fork", "spawn", "forkserver"]

#: A module next to the script: a task of an importable module, its global set by its initializer.
MODULE = """
model = None

def load(value):
    global model
    model = value

def predict(x):
    return (model, x)
"""

#: The script: every scenario of the issue, under the start method given as argv[1].
SCRIPT = """
import json, os, sys
import parmap
from parmap import parallel
import helpers

model = None
threshold = 5
seen = []

def load(value):
    global model
    model = value

@parallel(workers=2, initializer=load, initargs=("loaded",), start_method=sys.argv[1], chunksize=1)
def predict(x):
    return model

# A task that sets a global: a later map in the same (single) worker sees it.
@parallel(workers=1, start_method=sys.argv[1])
def remember(x):
    seen.append(x)
    return list(seen)

# The notebook idiom: a global and a closure's variable change between maps.
@parallel(workers=1, start_method=sys.argv[1])
def compare(x):
    return (x > threshold, os.getpid())

def make_scaler(factor):
    return lambda x: (x * factor, os.getpid())

if __name__ == "__main__":
    out = {}
    out["main"] = predict.map(range(4))
    module_task = parallel(helpers.predict, workers=2, initializer=helpers.load, initargs=("module",),
                           start_method=sys.argv[1])
    out["module"] = module_task.map(range(4))
    out["persist"] = [remember.map([1]), remember.map([2])]
    first = compare.map([7])
    threshold = 10
    second = compare.map([7])
    out["changed_global"] = [first[0][0], second[0][0]]
    out["same_pool"] = first[0][1] == second[0][1]
    factor = 2
    scaled = parallel(make_scaler(factor), workers=1, start_method=sys.argv[1]).map([3])
    factor = 3
    rescaled = parallel(make_scaler(factor), workers=1, start_method=sys.argv[1]).map([3])
    out["closure"] = [scaled[0][0], rescaled[0][0]]
    out["closure_same_pool"] = scaled[0][1] == rescaled[0][1] == first[0][1]
    out["caller_model"] = model  # unpickling in the caller never writes its globals
    print(json.dumps(out))
"""


def run_scenarios(tmp_path: Path, start_method: str) -> dict[str, Any]:
    """Run [SCRIPT][] under `start_method`; what its tasks saw."""
    seen: dict[str, Any] = run_script_file(tmp_path, {"script.py": SCRIPT, "helpers.py": MODULE}, start_method)
    return seen


@pytest.mark.parametrize("start_method", START_METHODS)
def test_tasks_read_the_globals_their_initializer_set(tmp_path: Path, start_method: str) -> None:
    seen = run_scenarios(tmp_path, start_method)
    assert seen["main"] == ["loaded"] * 4  # a __main__ task, a __main__ initializer
    assert seen["module"] == [["module", x] for x in range(4)]  # an importable module's
    assert seen["persist"] == [[[1]], [[1, 2]]]  # a global a task set stays in its worker
    assert seen["changed_global"] == [True, False]  # a changed global reaches the worker
    assert seen["same_pool"]  # ... of the same pool
    assert seen["closure"] == [6, 9]  # a closure's changed variable too
    assert seen["closure_same_pool"]
    assert seen["caller_model"] is None


# ------------------------------------------------------------------- in-process backends


@pytest.mark.parametrize("backend", ["thread", "serial"])
def test_in_process_backends_read_the_initializers_global(backend: Literal["thread", "serial"]) -> None:
    task = parmap.parallel(
        tasks_pickling.read_model, backend=backend, workers=2, initializer=tasks_pickling.load, initargs=(backend,)
    )
    assert task.map(range(3)) == [backend] * 3
    offset = 1
    assert parmap.parallel(lambda x: x + offset, backend=backend, workers=2).map([1]) == [2]
    offset = 5
    assert parmap.parallel(lambda x: x + offset, backend=backend, workers=2).map([1]) == [6]


# ------------------------------------------------------------------- the rule, unit by unit


def test_carried_globals_never_undo_what_the_worker_set(monkeypatch: pytest.MonkeyPatch) -> None:
    namespace: dict[str, Any] = {"model": None, "threshold": 5, "__builtins__": "mine"}
    monkeypatch.setattr(_reducers, "_started_with", dict(namespace))
    monkeypatch.setattr(_reducers, "_carried", {})
    namespace["model"] = "loaded"  # the initializer rebinds it
    _reducers.apply_carried_globals(namespace, {"model": None, "threshold": 10, "new": 1, "__builtins__": {}})
    assert namespace == {"model": "loaded", "threshold": 10, "new": 1, "__builtins__": "mine"}
    again = object()
    _reducers.apply_carried_globals(namespace, {"threshold": again})  # what parmap carried is replaced
    assert namespace["threshold"] is again
    namespace["threshold"] = "set by a task"
    _reducers.apply_carried_globals(namespace, {"threshold": 20})
    assert namespace["threshold"] == "set by a task"


def test_unpickling_in_a_process_that_does_not_bind_leaves_main_alone() -> None:
    main = sys.modules["__main__"]
    code = compile("def probe():\n    return marker\n", getattr(main, "__file__", "<main>"), "exec")
    exec(code, main.__dict__)  # a function whose globals are __main__'s
    try:
        main.__dict__["marker"] = "caller"
        payload = _transport.dumps(main.__dict__["probe"])
        main.__dict__["marker"] = "changed"
        rebuilt = pickle.loads(payload)
        assert rebuilt() == "caller"  # cloudpickle's own fresh globals
        assert rebuilt.__globals__ is not main.__dict__
        assert main.__dict__["marker"] == "changed"
    finally:
        main.__dict__.pop("probe", None)
        main.__dict__.pop("marker", None)
