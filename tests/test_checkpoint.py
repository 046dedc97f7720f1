"""Resumable maps (issue 6, part 2): ``checkpoint=`` and ``checkpoint_mode=``.

Each item's run is logged to a file, so a test knows exactly which items ran in which
run; a failure comes from the input (item ``k`` fails the first time, through a marker
file). The kill loop SIGKILLs a process running a checkpointed map at random moments:
any moment must be safe, so the random delays decide only *where* it dies, never whether
the test passes.
"""

from __future__ import annotations

import concurrent.futures
import io
import os
import random
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, ClassVar

import cloudpickle
import pytest

import parmap
from parmap import CheckpointMismatchError, ParmapError, SerializationError, parallel
from parmap._checkpoint import CheckpointStore, function_fingerprint, stored_results
from tests import tasks, tasks_insights

Decorate = Callable[..., Any]

N_ITEMS = 30
FAIL_AT = 12
METHODS = ["map", "imap", "imap_unordered", "starmap", "map_async"]
REPO = Path(__file__).resolve().parents[1]


def _run(task: Any, method: str, directory: Path, run: int, **options: Any) -> list[Any]:
    """Run ``method`` over the standard items (``logged_square`` or, for starmap, ``logged_add``)."""
    items = [(str(directory), x, FAIL_AT, run) for x in range(N_ITEMS)]
    if method == "map":
        return list(task.map(items, **options))
    if method == "imap":
        return list(task.imap(items, **options))
    if method == "imap_unordered":
        return sorted(task.imap_unordered(items, **options))
    if method == "starmap":
        return list(task.starmap(items, **options))
    assert method == "map_async"
    return list(task.map_async(items, **options).get(timeout=20))


def _task(backend: Decorate, method: str, **options: Any) -> Any:
    function = tasks_insights.logged_add if method == "starmap" else tasks_insights.logged_square
    return backend(function, **options)


def _resume_after_an_error(task: Any, method: str, tmp_path: Path, **options: Any) -> set[int]:
    """First run fails at FAIL_AT; second run completes, running only what was not stored."""
    checkpoint = tmp_path / "run.sqlite"
    with pytest.raises(ValueError, match="first attempt"):
        _run(task, method, tmp_path, 1, checkpoint=checkpoint, **options)
    stored = stored_results(checkpoint)
    assert stored, "nothing was stored before the failure"
    assert FAIL_AT not in stored
    assert all(stored[index] == index * index for index in stored)
    assert set(stored) <= set(tasks_insights.run_log(str(tmp_path), 1))

    assert _run(task, method, tmp_path, 2, checkpoint=checkpoint, **options) == [x * x for x in range(N_ITEMS)]
    second_run = tasks_insights.run_log(str(tmp_path), 2)
    assert sorted(second_run) == sorted(set(range(N_ITEMS)) - set(stored))  # each missing item once, no more
    stats = task.last_stats()
    assert stats is not None
    assert stats.resumed_items == len(stored)
    assert stats.items == N_ITEMS - len(stored)
    assert stored_results(checkpoint) == {x: x * x for x in range(N_ITEMS)}
    return set(stored)


def test_resume_after_an_error_on_every_backend(backend: Decorate, tmp_path: Path) -> None:
    stored = _resume_after_an_error(_task(backend, "map"), "map", tmp_path, chunksize=1)
    if backend.args[0] == "serial":  # type: ignore[attr-defined]
        assert stored == set(range(FAIL_AT))  # inline: exactly the items before the failure


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("backend_name", ["serial", "process"])
def test_resume_with_every_method(method: str, backend_name: Any, tmp_path: Path) -> None:
    start_method: Any = "fork" if backend_name == "process" else None

    def decorate(function: Any, **options: Any) -> Any:
        return parallel(function, backend=backend_name, workers=2, start_method=start_method, **options)

    _resume_after_an_error(_task(decorate, method), method, tmp_path, chunksize=3)


def test_resume_a_generator_input(tmp_path: Path) -> None:
    """An input of unknown length resumes too (its length is simply not compared)."""
    task = parallel(tasks_insights.logged_square, backend="serial")
    checkpoint = tmp_path / "run.sqlite"

    def items(run: int) -> Any:
        return ((str(tmp_path), x, FAIL_AT, run) for x in range(N_ITEMS))

    with pytest.raises(ValueError, match="first attempt"):
        task.map(items(1), checkpoint=checkpoint)
    stored = stored_results(checkpoint)
    assert stored
    assert task.map(items(2), checkpoint=checkpoint) == [x * x for x in range(N_ITEMS)]
    assert sorted(tasks_insights.run_log(str(tmp_path), 2)) == sorted(set(range(N_ITEMS)) - set(stored))


@pytest.mark.parametrize("backend_name", ["serial", "process"])
def test_successes_in_the_failing_chunk_are_stored(backend_name: Any, tmp_path: Path) -> None:
    """The chunk holding the failing item also ran its other items: they are kept, not rerun."""
    task = parallel(tasks_insights.logged_square, backend=backend_name, workers=1)
    checkpoint = tmp_path / "run.sqlite"
    with pytest.raises(ValueError, match="first attempt"):
        _run(task, "map", tmp_path, 1, checkpoint=checkpoint, chunksize=5, max_in_flight=1)
    assert set(stored_results(checkpoint)) == set(range(15)) - {FAIL_AT}  # chunks 0-4, 5-9 and 10-14
    assert _run(task, "map", tmp_path, 2, checkpoint=checkpoint, chunksize=5) == [x * x for x in range(N_ITEMS)]
    assert tasks_insights.run_log(str(tmp_path), 2) == [FAIL_AT, *range(15, N_ITEMS)]


class _SpyBar:
    """Stands in for ``tqdm.auto.tqdm``: records each update with how many items had run by then."""

    instances: ClassVar[list[_SpyBar]] = []
    log_directory: ClassVar[str] = ""

    def __init__(self, **settings: Any) -> None:
        self.total = settings.get("total")
        self.n = 0.0
        self.updates: list[tuple[float, int]] = []
        _SpyBar.instances.append(self)

    def update(self, n: float) -> None:
        self.n += n
        self.updates.append((n, len(tasks_insights.run_log(self.log_directory, 2))))

    def close(self) -> None:
        pass


def test_progress_bar_starts_at_the_done_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tqdm.auto

    monkeypatch.setattr(tqdm.auto, "tqdm", _SpyBar)
    monkeypatch.setattr(_SpyBar, "instances", [])
    monkeypatch.setattr(_SpyBar, "log_directory", str(tmp_path))
    task = parallel(tasks_insights.logged_square, backend="serial")
    checkpoint = tmp_path / "run.sqlite"
    with pytest.raises(ValueError, match="first attempt"):
        _run(task, "map", tmp_path, 1, checkpoint=checkpoint, chunksize=1)
    _run(task, "map", tmp_path, 2, checkpoint=checkpoint, chunksize=1, progress=True)
    bar = _SpyBar.instances[-1]
    assert bar.total == N_ITEMS
    before_any_run = [n for n, items_run in bar.updates if items_run == 0]
    assert sum(before_any_run) == FAIL_AT  # the bar stood at the done count before the first new item
    assert bar.n == N_ITEMS


def test_progress_text_shows_the_resumed_count(tmp_path: Path) -> None:
    checkpoint = tmp_path / "run.sqlite"
    task = parallel(tasks.square, backend="serial")
    task.map(range(8), checkpoint=checkpoint)
    output = io.StringIO()
    assert task.map(range(8), checkpoint=checkpoint, progress={"file": output, "mininterval": 0}) == [
        x * x for x in range(8)
    ]
    assert "8/8" in output.getvalue()


# ---------------------------------------------------------------- one checkpoint, one job


def test_a_different_function_is_refused(tmp_path: Path) -> None:
    checkpoint = tmp_path / "run.sqlite"
    parallel(tasks.square, backend="serial").map(range(5), checkpoint=checkpoint)
    with pytest.raises(CheckpointMismatchError, match=r"tests\.tasks\.square.*tests\.tasks_insights\.cube") as info:
        parallel(tasks_insights.cube, backend="serial").map(range(5), checkpoint=checkpoint)
    assert "checkpoint_mode='overwrite'" in str(info.value)
    assert isinstance(info.value, ParmapError)
    assert stored_results(checkpoint) == {x: x * x for x in range(5)}  # untouched


def test_changed_code_is_refused(tmp_path: Path) -> None:
    checkpoint = tmp_path / "run.sqlite"

    def make(offset: int) -> Callable[[int], int]:
        def shifted(x: int) -> int:
            return x + offset

        return shifted

    parallel(make(1), backend="serial").map(range(5), checkpoint=checkpoint)
    assert parallel(make(1), backend="serial").map(range(5), checkpoint=checkpoint) == [1, 2, 3, 4, 5]
    with pytest.raises(CheckpointMismatchError, match="has changed"):
        parallel(make(2), backend="serial").map(range(5), checkpoint=checkpoint)


def test_a_different_length_is_refused(tmp_path: Path) -> None:
    checkpoint = tmp_path / "run.sqlite"
    task = parallel(tasks.square, backend="serial")
    task.map(range(5), checkpoint=checkpoint)
    with pytest.raises(CheckpointMismatchError, match="written for 5 input items, this call has 6"):
        task.map(range(6), checkpoint=checkpoint)
    with pytest.raises(CheckpointMismatchError, match="written for 5 input items"):
        task.map_async(range(6), checkpoint=checkpoint)  # refused at call time, not in the background


def test_map_and_starmap_of_one_function_are_different_jobs(tmp_path: Path) -> None:
    checkpoint = tmp_path / "run.sqlite"
    task = parallel(tasks.add, backend="serial")
    task.starmap([(1, 2)], checkpoint=checkpoint)
    with pytest.raises(CheckpointMismatchError):
        task.map([(1, 2)], checkpoint=checkpoint)  # type: ignore[call-overload]  # map, deliberately


def test_fingerprint_is_stable_across_processes() -> None:
    code = (
        "from parmap._checkpoint import function_fingerprint; from tests import tasks, tasks_insights; "
        "import functools; print(function_fingerprint(tasks_insights.logged_square)[1], "
        "function_fingerprint(functools.partial(tasks.add, 2))[1], "
        "function_fingerprint(lambda x: x in {'a', 'b', 'c'})[1])"
    )
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": hash_seed}
        outputs.add(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, cwd=REPO, timeout=30
            ).stdout
        )
    assert len(outputs) == 1
    assert function_fingerprint(tasks_insights.logged_square)[1] in outputs.pop()


def test_overwrite_discards_what_was_stored(tmp_path: Path) -> None:
    checkpoint = tmp_path / "run.sqlite"
    parallel(tasks.square, backend="serial").map(range(5), checkpoint=checkpoint)
    cube = parallel(tasks_insights.cube, backend="serial")
    assert cube.map(range(7), checkpoint=checkpoint, checkpoint_mode="overwrite") == [x**3 for x in range(7)]
    assert stored_results(checkpoint) == {x: x**3 for x in range(7)}
    assert cube.map(range(7), checkpoint=checkpoint) == [x**3 for x in range(7)]  # resumes the new job

    task = parallel(tasks_insights.logged_square, backend="serial")
    items = [(str(tmp_path), x, -1, 0) for x in range(4)]
    task.map(items, checkpoint=tmp_path / "again.sqlite")
    task.map(items, checkpoint=tmp_path / "again.sqlite", checkpoint_mode="overwrite")
    assert tasks_insights.run_log(str(tmp_path)) == [0, 1, 2, 3, 0, 1, 2, 3]  # overwrite reruns everything


@pytest.mark.parametrize(
    ("checkpoint", "mode", "error", "match"),
    [
        pytest.param(123, "resume", TypeError, "checkpoint must be", id="path-int"),
        pytest.param(["run.sqlite"], "resume", TypeError, "checkpoint must be", id="path-list"),
        pytest.param("", "resume", ValueError, "path of a file", id="path-empty"),
        pytest.param(":memory:", "resume", ValueError, "path of a file", id="path-memory"),
        pytest.param(
            ".", "resume", IsADirectoryError, "not a directory", id="path-directory"
        ),  # an OSError (issue 10: 29)
        pytest.param("run.sqlite", "bogus", ValueError, "checkpoint_mode", id="mode-unknown"),
        pytest.param("run.sqlite", 1, TypeError, "checkpoint_mode", id="mode-int"),
    ],
)
def test_bad_checkpoint_arguments(
    tmp_path: Path, checkpoint: Any, mode: Any, error: type[Exception], match: str
) -> None:
    if checkpoint == ".":
        checkpoint = tmp_path
    elif checkpoint == "run.sqlite":
        checkpoint = tmp_path / checkpoint
    task = parallel(tasks.square, backend="serial")
    with pytest.raises(error, match=match):
        task.map(range(3), checkpoint=checkpoint, checkpoint_mode=mode)
    with pytest.raises(error, match=match):
        parallel(tasks.square, checkpoint=checkpoint, checkpoint_mode=mode).map(range(3))


def test_a_file_that_is_not_a_checkpoint_is_refused_and_kept(tmp_path: Path) -> None:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a database, " * 100)
    foreign = tmp_path / "app.sqlite"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE users (name TEXT)")
    connection.close()
    task = parallel(tasks.square, backend="serial")
    for path in (text_file, foreign):
        for mode in ("resume", "overwrite"):
            with pytest.raises(CheckpointMismatchError, match="not a parmap checkpoint"):
                task.map(range(3), checkpoint=path, checkpoint_mode=mode)
    assert text_file.read_text() == "not a database, " * 100
    with sqlite3.connect(foreign) as connection:
        assert connection.execute("SELECT name FROM sqlite_master").fetchall() == [("users",)]
    connection.close()


def test_a_result_that_cannot_be_stored_names_its_index(tmp_path: Path) -> None:
    task = parallel(tasks.return_unpicklable, backend="thread", workers=2)
    with pytest.raises(SerializationError, match="item 4 could not be pickled into the checkpoint"):
        task.map(range(6), checkpoint=tmp_path / "run.sqlite", chunksize=1)


# ---------------------------------------------------------------- nothing corrupt is ever read back


def test_a_corrupt_row_is_not_read_back(tmp_path: Path) -> None:
    checkpoint = tmp_path / "run.sqlite"
    task = parallel(tasks_insights.logged_square, backend="serial")
    items = [(str(tmp_path), x, -1, 0) for x in range(6)]
    task.map(items, checkpoint=checkpoint)
    with sqlite3.connect(checkpoint) as connection:  # flip bits in one payload, truncate another
        connection.execute("UPDATE parmap_results SET payload = CAST(? AS BLOB) WHERE idx = 2", (b"\x80\x05garbage",))
        connection.execute("UPDATE parmap_results SET payload = substr(payload, 1, 3) WHERE idx = 4")
    connection.close()
    (tmp_path / "log").unlink()
    assert task.map(items, checkpoint=checkpoint) == [x * x for x in range(6)]
    assert tasks_insights.run_log(str(tmp_path)) == [2, 4]  # exactly the damaged rows ran again
    assert stored_results(checkpoint) == {x: x * x for x in range(6)}


def test_store_commits_in_batches_and_on_close(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows are buffered until a batch is full (or the timer fires), and close() commits the rest."""
    monkeypatch.setattr(parmap._checkpoint, "COMMIT_ROWS", 10)
    monkeypatch.setattr(parmap._checkpoint, "COMMIT_SECONDS", 3600.0)  # the timer never fires here
    checkpoint = tmp_path / "run.sqlite"
    store = CheckpointStore.open(checkpoint, function=tasks.square, length=25)
    try:
        store.save([(index, index) for index in range(9)])
        assert stored_results(checkpoint) == {}
        store.save([(9, 9)])
        assert len(stored_results(checkpoint)) == 10
        store.save([(index, index) for index in range(10, 15)])
        assert len(stored_results(checkpoint)) == 10
    finally:
        store.close()
    assert stored_results(checkpoint) == {index: index for index in range(15)}
    store.close()  # idempotent


def test_store_timer_commits_while_the_job_waits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parmap._checkpoint, "COMMIT_SECONDS", 0.01)
    checkpoint = tmp_path / "run.sqlite"
    store = CheckpointStore.open(checkpoint, function=tasks.square, length=5)
    try:
        store.save([(0, "first")])
        from tests.conftest import wait_until

        wait_until(lambda: stored_results(checkpoint) == {0: "first"})
    finally:
        store.close()


# ---------------------------------------------------------------- kill -9 at random moments

KILL_ITEMS = 300
KILL_RUNS_PER_CHAIN = 13
#: (backend, start method, chunksize, rows per commit, seconds per commit) for each chain.
KILL_CHAINS = [
    ("serial", None, 1, 7, 0.02),
    ("thread", None, "auto", 1000, 0.1),
    ("process", "fork", 3, 5, 0.01),
    ("process", "fork", "auto", 50, 0.05),
]

_KILL_CHILD = """
    import sys
    import parmap._checkpoint
    from parmap import parallel
    from tests import tasks_insights

    if __name__ == "__main__":
        path, backend, start_method, chunksize, rows, seconds, n, mode = sys.argv[1:]
        parmap._checkpoint.COMMIT_ROWS = int(rows)
        parmap._checkpoint.COMMIT_SECONDS = float(seconds)
        task = parallel(tasks_insights.checkpoint_value, backend=backend, workers=2,
                        start_method=None if start_method == "None" else start_method)
        print("ready", flush=True)
        results = task.map(range(int(n)), checkpoint=path, checkpoint_mode=mode,
                           chunksize=chunksize if chunksize == "auto" else int(chunksize))
        assert results == [(x, "v" * (x % 700)) for x in range(int(n))], "wrong results"
        print("done", flush=True)
"""


def _kill_chain(number: int, directory: Path) -> tuple[int, int]:
    """Start the child again and again, SIGKILLing each at a random moment; return (killed, completed).

    Each run resumes what the killed runs before it left; after a run completes, the next
    one overwrites the checkpoint, so later kills land in real work (and in the overwrite).
    """
    backend, start_method, chunksize, rows, seconds = KILL_CHAINS[number]
    path = directory / f"chain-{number}.sqlite"
    delays = random.Random(number)  # where each run dies; every moment must be safe
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = completed = 0
    mode = "resume"
    errors = directory / f"chain-{number}.stderr"
    for _ in range(KILL_RUNS_PER_CHAIN):
        with errors.open("w") as stderr:
            child = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    textwrap.dedent(_KILL_CHILD),
                    str(path),
                    backend,
                    str(start_method),
                    str(chunksize),
                    str(rows),
                    str(seconds),
                    str(KILL_ITEMS),
                    mode,
                ],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=env,
                cwd=REPO,
            )
        try:
            assert child.stdout is not None
            output = child.stdout.readline()
            if output == "ready\n":
                try:
                    child.wait(timeout=delays.uniform(0.0, 0.7))
                except subprocess.TimeoutExpired:
                    child.kill()  # SIGKILL
            output += child.stdout.read()
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            if child.stdout is not None:
                child.stdout.close()
        if child.returncode == -9:
            killed += 1
            mode = "resume"
        else:
            assert child.returncode == 0, f"chain {number}: the child failed:\n{errors.read_text()}"
            assert output == "ready\ndone\n"
            completed += 1
            mode = "overwrite"  # start the job afresh, so the next kills land in real work again
    return killed, completed


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_sigkill_at_random_moments_never_corrupts_the_checkpoint(tmp_path: Path) -> None:
    with concurrent.futures.ThreadPoolExecutor(len(KILL_CHAINS)) as pool:
        outcomes = list(pool.map(lambda number: _kill_chain(number, tmp_path), range(len(KILL_CHAINS))))
    assert sum(killed + completed for killed, completed in outcomes) >= 50
    assert sum(killed for killed, _ in outcomes) >= 1, "no run was ever killed: the loop tested nothing"

    expected = [(x, "v" * (x % 700)) for x in range(KILL_ITEMS)]
    for number in range(len(KILL_CHAINS)):
        path = tmp_path / f"chain-{number}.sqlite"
        with sqlite3.connect(path) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            rows = connection.execute("SELECT idx, digest, payload FROM parmap_results").fetchall()
        connection.close()
        for index, _, payload in rows:  # every stored row decodes to exactly the right result
            assert cloudpickle.loads(payload) == expected[index]
        assert len(stored_results(path)) == len(rows)
        # This process resumes what the killed ones left: same results, no mismatch.
        final = parallel(tasks_insights.checkpoint_value, backend="serial")
        assert final.map(range(KILL_ITEMS), checkpoint=path) == expected
        assert stored_results(path) == dict(enumerate(expected))
