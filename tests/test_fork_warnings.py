"""Under fork, parmap never forks a multi-threaded process (Python 3.12+ warns on each such fork).

Every worker of a fork pool is forked by a one-thread fork server (`parmap.backends._zygote`),
so replacing a worker, starting a second pool or mapping again after a crash, with the
pool's manager thread running, forks nothing from the caller. Each case is a real script
run twice: under `-W always::DeprecationWarning`, which prints every such warning (asserted
absent from stderr), and under `-W error::DeprecationWarning`, as a user who turns
warnings into errors runs it (asserted to give the right results). Below 3.12 there is no
warning to check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

#: The warning exists from Python 3.12 on.
needs_the_warning = pytest.mark.skipif(sys.version_info < (3, 12), reason="Python 3.12+ warns on a multi-threaded fork")

#: What CPython prints for a fork of a multi-threaded process.
WARNING = "is multi-threaded, use of fork() may lead to deadlocks"

#: The tasks every script defines (in `__main__`: pickled by value, run by forked workers).
PRELUDE = """
import json, os, sys
import parmap

def square(x):
    return x * x

def crash_on_three(x):
    if x == 3:
        os._exit(1)
    return x + 1

def pid_of(_):
    return os.getpid()

SEEN = "at start"

def seen(_):
    return SEEN

def remember(value):
    global SEEN
    SEEN = value
"""

CASES = {
    "replaced_workers": """
        task = parmap.parallel(pid_of, workers=2, start_method="fork")
        pids = task.map(range(8), chunksize=1, max_tasks_per_worker=1)
        squares = parmap.parallel(square, workers=2, start_method="fork")
        squares = squares.map(range(8), chunksize=1, max_tasks_per_worker=1)
        print(json.dumps({"distinct_pids": len(set(pids)), "squares": squares}))
    """,
    "two_pools": """
        first = parmap.parallel(square, workers=2, start_method="fork")
        one = first.map(range(5))
        second = parmap.parallel(seen, workers=1, start_method="fork", initializer=remember, initargs=("set",))
        two = second.map(range(2))
        print(json.dumps({"one": one, "two": two, "again": first.map(range(3))}))
    """,
    "after_a_crash": """
        task = parmap.parallel(crash_on_three, workers=2, start_method="fork", return_exceptions=True)
        first = [type(r).__name__ if isinstance(r, BaseException) else r for r in task.map(range(5), chunksize=1)]
        print(json.dumps({"first": first, "then": task.map([0, 1, 2, 4], chunksize=1)}))
    """,
    # Each of these starts its pool from a thread of parmap's (map_async, aimap) or hashes the
    # shared object on helper threads first: the server is made before any of them runs.
    "first_map_is_map_async": """
        print(json.dumps(parmap.parallel(square, workers=2, start_method="fork").map_async(range(3)).get(timeout=20)))
    """,
    "first_map_is_aimap": """
        import asyncio

        async def collect():
            return [r async for r in parmap.parallel(square, workers=2, start_method="fork").aimap(range(3))]

        print(json.dumps(asyncio.run(collect())))
    """,
    "first_map_hashes_a_shared_object": """
        task = parmap.parallel(square, workers=2, start_method="fork", initializer=remember, initargs=("x",))
        print(json.dumps(task.map(range(3), shared=bytes(10_000_000))))
    """,
    "replacements_keep_the_pool_start_state": """
        import forkstate  # an importable module: its functions travel by reference, its globals stay

        forkstate.VALUE = "when the pool started"
        task = parmap.parallel(forkstate.seen, workers=1, start_method="fork")
        before = task.map(range(2))
        forkstate.VALUE = "changed later"
        after = task.map(range(3), chunksize=1, max_tasks_per_worker=1)  # every item on a new worker
        print(json.dumps({"before": before, "after": after}))
    """,
}

EXPECTED: dict[str, Any] = {
    "replaced_workers": {"distinct_pids": 8, "squares": [x * x for x in range(8)]},
    "two_pools": {"one": [0, 1, 4, 9, 16], "two": ["set", "set"], "again": [0, 1, 4]},
    "after_a_crash": {"first": [1, 2, 3, "WorkerLostError", 5], "then": [1, 2, 3, 5]},
    "first_map_is_map_async": [0, 1, 4],
    "first_map_is_aimap": [0, 1, 4],
    "first_map_hashes_a_shared_object": [0, 1, 4],
    "replacements_keep_the_pool_start_state": {
        "before": ["when the pool started"] * 2,
        "after": ["when the pool started"] * 3,
    },
}


#: A module next to each script: what a worker reads of it is the state the worker inherited.
MODULE = """
VALUE = "as imported"

def seen(_):
    return VALUE
"""


def _run(tmp_path: Path, case: str, warnings: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "forkstate.py").write_text(MODULE)
    script = tmp_path / f"{case}.py"
    body = textwrap.indent(textwrap.dedent(CASES[case]), "    ")
    script.write_text(PRELUDE + "\nif __name__ == '__main__':\n" + body)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONWARNINGS"}  # only -W decides
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    return subprocess.run(
        [sys.executable, "-W", warnings, str(script)],
        capture_output=True,
        text=True,
        timeout=50,
        env=env,
        cwd=tmp_path,
        check=False,
    )


@needs_the_warning
@pytest.mark.parametrize("case", sorted(CASES))
def test_no_fork_of_a_multithreaded_process(tmp_path: Path, case: str) -> None:
    completed = _run(tmp_path, case, "always::DeprecationWarning")
    assert completed.returncode == 0, completed.stderr
    assert WARNING not in completed.stderr
    assert json.loads(completed.stdout.splitlines()[-1]) == EXPECTED[case]


@needs_the_warning
@pytest.mark.parametrize("case", sorted(CASES))
def test_warnings_as_errors_leave_the_results_right(tmp_path: Path, case: str) -> None:
    completed = _run(tmp_path, case, "error::DeprecationWarning")
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout.splitlines()[-1]) == EXPECTED[case]


@needs_the_warning
def test_the_check_sees_a_fork_of_a_multithreaded_process(tmp_path: Path) -> None:
    """The control: the same run does print the warning for a fork that has a thread beside it."""
    script = tmp_path / "control.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, threading
            release = threading.Event()
            thread = threading.Thread(target=release.wait)
            thread.start()
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
            release.set()
            thread.join()
            """
        )
    )
    completed = subprocess.run(
        [sys.executable, "-W", "always::DeprecationWarning", str(script)],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert WARNING in completed.stderr


def _fork_servers() -> list[int]:
    from .conftest import _children, _is_fork_server

    return [pid for pid in _children(os.getpid()) if _is_fork_server(pid)]


def test_one_fork_server_serves_every_fork_pool_until_shutdown() -> None:
    """One server for every fork pool; `parmap.shutdown()` reaps it, so the next pool copies the caller afresh."""
    import parmap

    from . import tasks
    from .conftest import shutdown_promptly, wait_until

    first = parmap.parallel(tasks.square, workers=1, start_method="fork")
    second = parmap.parallel(tasks.square, workers=2, start_method="fork")
    assert first.map(range(3)) == [0, 1, 4]
    assert second.map(range(3)) == [0, 1, 4]
    assert len(_fork_servers()) == 1
    shutdown_promptly()
    wait_until(lambda: not _fork_servers())


def test_a_killed_fork_server_leaves_the_pool_working() -> None:
    """The server's workers die with it; the pool replaces them, forking them itself from then on."""
    import signal

    import parmap

    from . import tasks
    from .conftest import process_pool_of, wait_until

    task = parmap.parallel(tasks.square, workers=2, start_method="fork")
    assert task.map(range(4)) == [0, 1, 4, 9]
    pool = process_pool_of(task)
    before = set(pool.ready_worker_pids)
    (server,) = _fork_servers()
    os.kill(server, signal.SIGKILL)
    wait_until(lambda: len(pool.ready_worker_pids) == 2 and not set(pool.ready_worker_pids) & before)
    assert task.map(range(4)) == [0, 1, 4, 9]
    assert server not in _fork_servers()  # reaped, not left a zombie


def test_the_fork_server_leaves_sigterm_and_ctrl_c_to_the_caller() -> None:
    """A SIGTERM or SIGINT sent to the whole process group does not take the server (and the
    workers it would fork) down while the caller, which handles them, carries on."""
    import signal

    import parmap

    from . import tasks

    task = parmap.parallel(tasks.square, workers=1, start_method="fork")
    assert task.map(range(2)) == [0, 1]
    (server,) = _fork_servers()
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        os.kill(server, number)
    assert task.map(range(3), chunksize=1, max_tasks_per_worker=1) == [0, 1, 4]  # new workers, from it
    assert _fork_servers() == [server]


def test_a_worker_that_closes_its_sentinel_is_still_reported_and_the_server_carries_on() -> None:
    """The server never waits on a worker: one that closed its sentinel is watched by polling."""
    import parmap

    from . import tasks_fork

    task = parmap.parallel(tasks_fork.close_every_descriptor_on_one, workers=1, start_method="fork")
    results = task.map(range(3), chunksize=1, return_exceptions=True)
    assert [results[0], type(results[1]), results[2]] == [0, parmap.WorkerLostError, 2]
    assert task.map([0, 2, 3]) == [0, 2, 3]
    assert len(_fork_servers()) == 1
