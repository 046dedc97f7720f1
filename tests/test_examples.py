"""Every ``examples/*.py`` runs as ``python examples/NAME.py`` and exits cleanly.

The examples that simulate work with ``sleep`` read ``PARMAP_EXAMPLE_SLEEP_SCALE``; the
tests shorten their sleeps with it, which changes the timings, not what the examples do.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))

#: Seconds one example may run (the slowest takes a few seconds with shortened sleeps).
EXAMPLE_TIMEOUT = 120

#: Examples that need an optional dependency, and the module that must be importable.
REQUIRES = {"dask_cluster.py": "distributed"}

SLEEP_SCALE = "0.02"


def _run(example: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PARMAP_EXAMPLE_SLEEP_SCALE": SLEEP_SCALE,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        [sys.executable, str(example)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT,
        check=False,
    )


def test_the_examples_are_there() -> None:
    names = {example.name for example in EXAMPLES}
    assert {
        "quickstart.py",
        "seed_map_with_results.py",
        "seed_map_no_results.py",
        "seed_chunksize.py",
        "progress_batch_loop.py",
        "decorate_library_function.py",
        "methods.py",
        "reproducible_randomness.py",
        "resumable_map.py",
        "progress_from_tasks.py",
        "run_insights.py",
    } <= names


@pytest.mark.timeout(EXAMPLE_TIMEOUT + 30)
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_example_runs(example: Path, tmp_path: Path) -> None:
    module = REQUIRES.get(example.name)
    if module is not None and importlib.util.find_spec(module) is None:
        pytest.skip(f"{example.name} needs {module}, which is not installed")
    process = _run(example, tmp_path)
    assert process.returncode == 0, (
        f"{example.name} exited with {process.returncode}\n--- stdout (tail)\n{process.stdout[-3000:]}\n"
        f"--- stderr (tail)\n{process.stderr[-5000:]}"
    )
    assert "Traceback" not in process.stderr, process.stderr[-5000:]
    assert process.stdout.strip(), f"{example.name} printed nothing"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_example_is_guarded_and_documented(example: Path) -> None:
    """A docstring says what the example shows and how to run it; work starts under the main guard."""
    tree = ast.parse(example.read_text(encoding="utf-8"))
    docstring = ast.get_docstring(tree)
    assert docstring, f"{example.name} has no module docstring"
    assert f"examples/{example.name}" in docstring, f"{example.name}'s docstring does not say how to run it"
    guards = [node for node in tree.body if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)]
    assert guards, f"{example.name} has no 'if __name__ == \"__main__\":' guard"


@pytest.mark.timeout(EXAMPLE_TIMEOUT + 30)
def test_chunksize_example_compares_three_chunk_sizes(tmp_path: Path) -> None:
    process = _run(ROOT / "examples" / "seed_chunksize.py", tmp_path)
    assert process.returncode == 0, process.stderr[-5000:]
    assert process.stdout.count("executing with") == 3 * 40
    for label in ("chunksize=     1:", "chunksize=    10:", "chunksize='auto':"):
        assert label in process.stdout
