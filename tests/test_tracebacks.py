"""A task's traceback shows the user's code, as `Pool`'s does (issue 12).

* The worker's part names the task's file, line and source line, for a function in a
  script (pickled by value), in an importable module and in a notebook cell (a real
  IPython kernel), and starts at the task, not at parmap's `run_chunk`.
* The caller's part holds at most two parmap frames (the map call and the re-raise).
"""

from __future__ import annotations

import asyncio
import os
import textwrap
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import parmap

from . import tasks_pickling
from .conftest import StartMethod, run_script_file

START_METHODS: list[StartMethod] = ["fork", "spawn", "forkserver"]
REPO = Path(__file__).resolve().parents[1]
PACKAGE = str(Path(parmap.__file__).resolve().parent) + os.sep

#: The raising statement of both tasks below (its line is found by the test).
RAISING_LINE = 'raise ValueError(f"bad item {x}")'

MODULE = f"""
def fail_on(x):
    if x == 2:
        {RAISING_LINE}
    return x
"""

SCRIPT = f"""
import json, sys, traceback
from parmap import parallel
import helpers

@parallel(workers=2, start_method=sys.argv[1])
def fail_on(x):
    if x == 2:
        {RAISING_LINE}
    return x

def formatted(task):
    try:
        task.map(range(4))
    except ValueError as error:
        return "".join(traceback.format_exception(type(error), error, error.__traceback__))
    raise AssertionError("no error")

if __name__ == "__main__":
    module_task = parallel(helpers.fail_on, workers=2, start_method=sys.argv[1])
    print(json.dumps({{"script": formatted(fail_on), "module": formatted(module_task)}}))
"""


def line_of(path: Path, text: str) -> int:
    return next(number for number, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def assert_shows_source(formatted: str, path: Path) -> None:
    """`formatted` names `path`, the raising line's number and its source line."""
    assert f'File "{path}", line {line_of(path, RAISING_LINE)}, in fail_on' in formatted, formatted
    assert RAISING_LINE in formatted, formatted
    assert "<dynamic-code>" not in formatted
    assert "run_chunk" not in formatted  # the worker's part starts at the task


@pytest.mark.parametrize("start_method", START_METHODS)
def test_a_scripts_task_shows_its_file_line_and_source(tmp_path: Path, start_method: str) -> None:
    shown = run_script_file(tmp_path, {"script.py": SCRIPT, "helpers.py": MODULE}, start_method)
    script = tmp_path / "script.py"
    assert_shows_source(shown["script"], script)
    assert_shows_source(shown["module"], tmp_path / "helpers.py")


# ------------------------------------------------------------------- the caller's frames


def _collect(run: Callable[[], object]) -> BaseException:
    try:
        run()
    except ValueError as error:
        return error
    raise AssertionError("no error")


async def _aimap(task: Any) -> None:
    async for _ in task.aimap(range(4)):
        pass


async def _await(task: Any) -> None:
    await task.map_async(range(4))


def _every_method(task: Any, pairs: Any) -> dict[str, Callable[[], object]]:
    return {
        "map": lambda: task.map(range(4)),
        "starmap": lambda: pairs.starmap([(0, 0), (0, 1), (1, 1), (0, 3)]),
        "imap": lambda: list(task.imap(range(4))),
        "imap_unordered": lambda: list(task.imap_unordered(range(4))),
        "map_async.get": lambda: task.map_async(range(4)).get(timeout=20),
        "await map_async": lambda: asyncio.run(_await(task)),
        "aimap": lambda: asyncio.run(_aimap(task)),
    }


def test_the_callers_traceback_has_at_most_two_parmap_frames(backend: Callable[..., Any]) -> None:
    task = backend(tasks_pickling.fail_on)
    pairs = backend(tasks_pickling.fail_on_pair)
    for name, run in _every_method(task, pairs).items():
        error = _collect(run)
        frames = traceback.extract_tb(error.__traceback__)
        ours = [frame for frame in frames if frame.filename.startswith(PACKAGE)]
        assert len(ours) <= 2, (name, ours)
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        assert RAISING_LINE in text, (name, text)  # here or in the remote traceback
        assert "index 2" in text, (name, text)  # the item's note stays
        assert "run_chunk" not in text, (name, text)
        assert "<dynamic-code>" not in text, (name, text)


def test_an_error_before_any_task_shows_the_map_call_and_the_raise() -> None:
    task = parmap.parallel(tasks_pickling.fail_on, backend="serial")
    with pytest.raises(TypeError) as caught:
        task.map(5)  # type: ignore[call-overload]
    frames = traceback.extract_tb(caught.value.__traceback__)
    ours = [frame.name for frame in frames if frame.filename.startswith(PACKAGE)]
    assert ours[0] == "map"
    assert len(ours) <= 2


def test_a_remote_traceback_keeps_parmap_frames_after_the_users_code() -> None:
    from parmap.backends._protocol import format_traceback, frame, run_chunk

    def user(x: Any) -> None:
        frame(x)  # parmap's own code, called by the task, raises

    _, errors, _, _ = run_chunk(user, [0], [None])
    text = errors[0][1]
    assert text.index("in user") < text.index("in frame")
    assert "in run_chunk" not in text
    assert format_traceback(errors[0][0]) == text


# ------------------------------------------------------------------- a notebook cell

CELL = f"""
import parmap

@parmap.parallel(workers=2, start_method=START_METHOD)
def fail_in_cell(x):
    if x == 2:
        {RAISING_LINE}
    return x

fail_in_cell.map(range(4))
"""

#: Longest wait for the kernel to start, or for one cell to run (spawned workers included).
KERNEL_SECONDS = 40


@pytest.mark.timeout(120)
@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_a_notebook_cells_task_shows_the_cells_source(tmp_path: Path, start_method: str) -> None:
    pytest.importorskip("ipykernel")
    manager_module = pytest.importorskip("jupyter_client.manager")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    manager, client = manager_module.start_new_kernel(
        startup_timeout=KERNEL_SECONDS, kernel_name="python3", env=env, cwd=str(tmp_path)
    )
    try:
        reply = client.execute_interactive(
            textwrap.dedent(CELL).replace("START_METHOD", repr(start_method)),
            timeout=KERNEL_SECONDS,
            output_hook=lambda message: None,
        )
        content = reply["content"]
        assert content["status"] == "error", content
        shown = "\n".join(content["traceback"])
        assert RAISING_LINE in _plain(shown), _plain(shown)
        assert "<dynamic-code>" not in shown
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def _plain(text: str) -> str:
    """`text` without its terminal colour codes."""
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)
