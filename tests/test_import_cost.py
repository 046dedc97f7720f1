"""`import parmap` imports only what a plain map needs; the rest comes with the feature using it.

Each check runs in a fresh interpreter (this one has imported everything long ago). No
timings are checked: which modules are loaded is what decides a cold start's cost, and it
does not depend on the machine's load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]

#: Modules `import parmap` must leave alone: each is needed by some features only, and each
#: cost a cold start milliseconds (`python -X importtime -c "import parmap"`).
NOT_AT_IMPORT = (
    "asyncio",  # aimap, async functions; wrapt 2's package __init__ imports it
    "importlib.metadata",  # wrapt 2's package __init__ (wrapt.importer)
    "wrapt.importer",  # the rest of wrapt's package: see parmap._wrapt
    "html",  # RunStats._repr_html_
    "tqdm",  # progress bars
    "sqlite3",  # checkpoints
    "parmap._checkpoint",
    "dask",
    "distributed",
    "numpy",
    "threadpoolctl",
    # Functions importable by name travel with the standard pickler (see parmap._transport),
    # and parmap.CancelledError, whose base is concurrent.futures', is made on first use.
    "cloudpickle",
    "concurrent.futures",
    "logging",
)


def _loaded_after(program: str) -> list[str]:
    """`sorted(sys.modules)` at the end of `program`, run in a fresh interpreter."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(part for part in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if part)
    completed = subprocess.run(
        [sys.executable, "-c", program + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=20,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    modules: list[str] = json.loads(completed.stdout.splitlines()[-1])
    return modules


def test_import_parmap_leaves_the_optional_modules_alone() -> None:
    loaded = set(_loaded_after("import parmap"))
    assert "parmap" in loaded
    assert sorted(loaded.intersection(NOT_AT_IMPORT)) == []


def test_a_first_map_on_processes_needs_none_of_them_either() -> None:
    program = (
        "import parmap\n"
        "from tests.tasks import square\n"
        "assert parmap.parallel(square, workers=2).map(range(4)) == [0, 1, 4, 9]\n"
        "parmap.shutdown()\n"
    )
    assert sorted(set(_loaded_after(program)).intersection(NOT_AT_IMPORT)) == []


@pytest.mark.parametrize(
    ("program", "module"),
    [
        (
            "import parmap\nfrom tests.tasks import square\n"
            "parmap.parallel(square, backend='serial').map([1], progress=True)",
            "tqdm",
        ),
        (
            "import parmap\nfrom tests.tasks import square\n"
            "parmap.parallel(square, backend='serial').map([1], stats=True).stats._repr_html_()",
            "html",
        ),
        (
            "import parmap\n"
            "assert parmap.parallel(lambda x: x + 1, workers=2).map([1, 2]) == [2, 3]\n"
            "parmap.shutdown()",
            "cloudpickle",
        ),
        ("import parmap\nparmap.CancelledError", "concurrent.futures"),
    ],
)
def test_a_feature_imports_what_it_needs_when_used(program: str, module: str) -> None:
    assert module in _loaded_after(program)


def test_wrapt_used_after_parmap_is_the_whole_package() -> None:
    program = (
        "import parmap\n"
        "import wrapt\n"
        "assert issubclass(parmap.ParallelFunction, wrapt.FunctionWrapper)\n"
        "assert wrapt.decorator and wrapt.ObjectProxy and wrapt.__version__\n"
        "from wrapt import when_imported\n"
        "import wrapt.wrappers\n"
        "assert wrapt.wrappers is not None\n"
    )
    assert "wrapt.importer" in _loaded_after(program)


def test_wrapt_imported_before_parmap_is_used_as_it_is() -> None:
    program = "import wrapt\nimport parmap\nassert issubclass(parmap.ParallelFunction, wrapt.FunctionWrapper)\n"
    assert "wrapt.importer" in _loaded_after(program)


def test_a_map_after_cloudpickle_was_needed_uses_it_for_everything() -> None:
    program = (
        "import pickle, sys\n"
        "import parmap\n"
        "from parmap import _transport\n"
        "from tests.tasks import square\n"
        "by_name = _transport.dumps(square)\n"
        "assert 'cloudpickle' not in sys.modules and pickle.loads(by_name) is square\n"
        "lam = pickle.loads(_transport.dumps([1, lambda x: x * 3]))\n"
        "assert lam[0] == 1 and lam[1](2) == 6 and 'cloudpickle' in sys.modules\n"
        "assert pickle.loads(_transport.dumps(square)) is square\n"
        "f = parmap.parallel(square, workers=2)\n"
        "assert f.map(range(3)) == [0, 1, 4] and parmap.parallel(lambda x: -x, workers=2).map([1]) == [-1]\n"
        "assert f.map(range(3)) == [0, 1, 4]\n"
        "parmap.shutdown()\n"
    )
    assert "cloudpickle" in _loaded_after(program)


def test_cancelled_error_made_on_first_use_is_the_declared_class() -> None:
    program = (
        "import ast, concurrent.futures, inspect, pickle, threading\n"
        "import parmap, parmap.errors\n"
        "seen = []\n"
        "threads = [threading.Thread(target=lambda: seen.append(parmap.errors.CancelledError)) for _ in range(4)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "assert len(set(seen)) == 1 and seen[0] is parmap.CancelledError\n"
        "error = parmap.CancelledError\n"
        "assert issubclass(error, parmap.ParmapError) and issubclass(error, concurrent.futures.CancelledError)\n"
        "assert repr(error) == \"<class 'parmap.CancelledError'>\"\n"
        "assert type(pickle.loads(pickle.dumps(error('x')))) is error\n"
        "from parmap import CancelledError\n"
        "assert CancelledError is error\n"
        "tree = ast.parse(inspect.getsource(parmap.errors))\n"
        "declared = [node for node in ast.walk(tree)\n"
        "            if isinstance(node, ast.ClassDef) and node.name == 'CancelledError']\n"
        "assert len(declared) == 2, declared\n"
        "assert ast.get_docstring(declared[0]) == ast.get_docstring(declared[1]) == inspect.getdoc(error)\n"
        "try:\n"
        "    parmap.errors.NoSuchError\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError\n"
    )
    _loaded_after(program)
