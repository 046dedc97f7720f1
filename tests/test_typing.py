"""Type checkers see through the decorator: snapshot tests of what mypy and pyright report.

`tests/typing/map_types.py` reveals the types of the decorated objects, their calls and
their maps, and holds deliberate errors. mypy (`--strict`) and pyright (standard and strict
modes, `tests/typing/pyrightconfig*.json`) each report on it; what they report must match
the snapshot next to it. A checker that is not installed skips its test (both are in the
dev extra). A changed snapshot is rewritten by running the checker as the test does.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest

import parmap
from parmap._options import MAP_METHODS

HERE = Path(__file__).parent / "typing"
ROOT = HERE.parent.parent

#: Lines of `map_types.py` marked "an error": each checker, in each mode, reports each.
ERROR_LINES = [
    number for number, line in enumerate((HERE / "map_types.py").read_text().splitlines(), 1) if "# an error" in line
]


def _environment() -> dict[str, str]:
    """The checkers import the parmap under test, not one installed elsewhere."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _reported_lines(snapshot: list[str], kind: str) -> set[int]:
    return {int(line.split(":")[1]) for line in snapshot if f": {kind}" in line}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["map_types"])
def test_mypy_reveals_the_snapshot(name: str) -> None:
    pytest.importorskip("mypy", reason="mypy is in the dev extra")
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--hide-error-context",
            "--no-incremental",
            f"{name}.py",
        ],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
        env=_environment(),
    )
    reported = process.stdout.splitlines()
    assert reported == (HERE / f"{name}.out").read_text().splitlines(), process.stderr
    assert set(ERROR_LINES) <= _reported_lines(reported, "error")


def _pyright() -> list[str]:
    """The command that runs pyright (the `pyright` package's wrapper), or a skip."""
    executable = shutil.which("pyright", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    if executable is None:
        pytest.skip("pyright is in the dev extra")
    return [executable]


def pyright_report(config: str) -> list[str]:
    """What pyright reports on `tests/typing` under `config`, one line per diagnostic:
    `file:line: severity: first line of the message [rule]` (the rest of a message is
    detail that varies between pyright releases)."""
    process = subprocess.run(
        [*_pyright(), "--outputjson", "--pythonpath", sys.executable, "-p", config],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
        env=_environment(),
    )
    try:
        report = json.loads(process.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"pyright gave no report: {process.stdout[-2000:]}{process.stderr[-2000:]}")
    lines = []
    for diagnostic in report["generalDiagnostics"]:
        rule = f" [{diagnostic['rule']}]" if diagnostic.get("rule") else ""
        message = diagnostic["message"].splitlines()[0]
        line = diagnostic["range"]["start"]["line"] + 1
        lines.append(f"{Path(diagnostic['file']).name}:{line}: {diagnostic['severity']}: {message}{rule}")
    return lines


@pytest.mark.timeout(180)
@pytest.mark.parametrize("config", ["pyrightconfig.json", "pyrightconfig.strict.json"], ids=["standard", "strict"])
def test_pyright_reveals_the_snapshot(config: str) -> None:
    """Both modes report the same: strict mode finds nothing unknown in parmap's types."""
    reported = pyright_report(config)
    assert reported == (HERE / "map_types.pyright.out").read_text().splitlines()
    assert _reported_lines(reported, "error") == set(ERROR_LINES), "pyright reports exactly the marked errors"


#: The map methods (from the option schema, which the reference renders) and `last_stats`.
PUBLIC_METHODS = [*MAP_METHODS, "last_stats"]


def test_annotations_evaluate_at_run_time() -> None:
    """`typing.get_type_hints` works on `parallel` and the map methods on every Python: no
    annotation names something only a type checker imports (`Unpack` before 3.11, a
    `ParamSpec` on 3.9, a `X | None` union on 3.9)."""
    hints = typing.get_type_hints(parmap.parallel)
    assert set(hints) == {"function", "settings", "return"}
    for name in PUBLIC_METHODS:
        assert "return" in typing.get_type_hints(getattr(parmap.ParallelFunction, name)), name
    assert typing.get_origin(typing.get_type_hints(parmap.ParallelFunction.map)["return"]) is list


def test_the_decorated_object_keeps_the_signature_at_run_time() -> None:
    @parmap.parallel
    def scale(value: int, factor: float = 1.0) -> float:
        return value * factor

    assert str(inspect.signature(scale)) == "(value: 'int', factor: 'float' = 1.0) -> 'float'"
    assert scale.__annotations__ == {"value": "int", "factor": "float", "return": "float"}  # the function's
    assert typing.get_type_hints(scale) == {"value": int, "factor": float, "return": float}


def test_reading_the_class_annotations_leaves_the_functions_visible() -> None:
    """Regression: reading `ParallelFunction.__annotations__` (as typing, IPython and doc tools
    do) stored an empty dict in the class on 3.10+, and every task's annotations read `{}`."""
    assert parmap.ParallelFunction.__annotations__ == {}

    @parmap.parallel
    def scale(value: int) -> float:
        return value / 2

    class Shape:
        @parmap.parallel
        def area(self, side: int) -> int:
            return side * side

    assert scale.__annotations__ == {"value": "int", "return": "float"}
    bound = Shape().area
    assert type(bound).__annotations__ == {}
    assert bound.__annotations__ == {"side": "int", "return": "int"}
