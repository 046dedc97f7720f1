"""Which modules travel by value to a cluster, and how they are loaded there (issue 15).

The cluster itself is in `test_dask.py`; here the policy ([parmap._shipping][]) and the
pickles ([parmap._transport.shipping][]) are checked in one process.
"""

from __future__ import annotations

import importlib
import json
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import pytest

import parmap
from parmap import _shipping, _transport, parallel
from tests import tasks


@pytest.fixture
def fake_modules(tmp_path: Path) -> Iterator[Path]:
    """A directory on `sys.path`, whose modules are forgotten afterwards."""
    sys.path.insert(0, str(tmp_path))
    before = set(sys.modules)
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in set(sys.modules) - before:
            del sys.modules[name]


def test_own_modules_under_the_current_directory_are_shipped_installed_ones_never(
    fake_modules: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (fake_modules / "site-packages").mkdir()
    (fake_modules / "site-packages" / "fake_installed.py").write_text("VALUE = 1\n")
    (fake_modules / "own_helper.py").write_text("VALUE = 2\n")
    sys.path.insert(0, str(fake_modules / "site-packages"))
    try:
        importlib.import_module("fake_installed")
        importlib.import_module("own_helper")
        monkeypatch.chdir(fake_modules)
        shipped = _shipping.modules_to_ship()
    finally:
        sys.path.remove(str(fake_modules / "site-packages"))
    assert "own_helper" in shipped
    assert "fake_installed" not in shipped  # under a site-packages directory: installed
    for name in ("json", "pickle", "cloudpickle", "pytest", "parmap", "parmap._shipping", "__main__"):
        assert name not in shipped
    assert "tests.tasks" not in shipped  # not under this current directory, nor the script's


def test_the_repository_as_current_directory_ships_its_tests_but_not_parmap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(tasks.__file__).resolve().parent.parent)
    shipped = _shipping.modules_to_ship()
    assert "tests.tasks" in shipped
    assert not any(name == "parmap" or name.startswith("parmap.") for name in shipped)
    assert _shipping.installed(json)
    assert _shipping.installed(cloudpickle)
    assert not _shipping.installed(tasks)


def test_ship_modules_are_validated() -> None:
    assert _shipping.validate_ship_modules([tasks, "tests.tasks_state"]) == ("tests.tasks", "tests.tasks_state")
    assert _shipping.modules_to_ship(["tests"]) >= {"tests", "tests.tasks"}  # a package covers its submodules
    with pytest.raises(TypeError, match="list or tuple"):
        _shipping.validate_ship_modules("tests.tasks")
    with pytest.raises(TypeError, match="modules or module names"):
        _shipping.validate_ship_modules([3])
    with pytest.raises(ValueError, match="cannot import 'no_such_module_here'"):
        _shipping.validate_ship_modules(["no_such_module_here"])
    with pytest.raises(ValueError, match="workers run parmap"):
        _shipping.validate_ship_modules([parmap])
    with pytest.raises(ValueError, match="installed packages are never shipped"):
        _shipping.validate_ship_modules([json])


def test_ship_modules_is_a_dask_option_the_other_backends_ignore() -> None:
    assert parallel(tasks.square, ship_modules=[tasks]).map([1, 2]) == [1, 4]
    with parmap.config(ship_modules=["tests.tasks"]):
        assert parallel(tasks.square, backend="thread").map([3]) == [9]
    with pytest.raises(TypeError, match="list or tuple"):
        parallel(tasks.square, ship_modules="tests.tasks").map([1])  # a str is a Sequence: refused at run time
    with pytest.raises(TypeError, match="list or tuple"):
        parallel(tasks.square, backend="dask", ship_modules=tasks).map([1])  # type: ignore[call-overload]


def test_a_shipped_function_is_the_receivers_own_when_its_file_is_the_same() -> None:
    with _transport.shipping(frozenset({"tests.tasks"})):
        payload = _transport.dumps((tasks.square, tasks.pid_of))
    assert b"_shipping" in payload  # it did travel as a shipped function
    assert pickle.loads(payload) == (tasks.square, tasks.pid_of)  # the very same objects here


def test_a_shipped_function_is_rebuilt_by_value_where_the_file_differs() -> None:
    with _transport.shipping(frozenset({"tests.tasks"})):
        (_, (module, qualname, digest, by_value)) = _transport._shipped_reduction(tasks.square)
    assert (module, qualname, digest) == ("tests.tasks", "square", _shipping.module_digest(tasks))
    other_version = _shipping.load(module, qualname, bytes(16), by_value)
    assert other_version is not tasks.square
    assert other_version(7) == 49
    missing = _shipping.load("no_such_module_here", qualname, digest, by_value)
    assert missing(5) == 25


def test_without_shipping_functions_travel_by_name() -> None:
    payload = _transport.dumps(tasks.square)
    assert b"_shipping" not in payload
    assert pickle.loads(payload) is tasks.square
