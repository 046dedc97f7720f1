"""Options checked where they are given, and resources that run out or are held by others.

Issue 10: unknown ``progress=`` keys (28), ``timeout=`` of any size (17), checkpoints that
cannot be opened, are locked, or fail to commit (29).
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from parmap import CheckpointLockedError, CheckpointMismatchError, _checkpoint, parallel
from parmap._checkpoint import CheckpointStore, stored_results
from tests import tasks
from tests.conftest import mounted, wait_until

Decorate = Callable[..., Any]

# ---------------------------------------------------------------- progress= keys (28)

BAD_PROGRESS_OPTIONS = [
    pytest.param({"bogus": 1}, r"unknown tqdm keyword argument\(s\): 'bogus'", id="unknown-key"),
    pytest.param({"minterval": 1}, r"'minterval' \(did you mean 'mininterval'\?\)", id="misspelt-key"),
    pytest.param(
        {"desc": "x", "colr": "red", "zzz": 1}, r"'colr' \(did you mean 'colour'\?\), 'zzz'", id="several-keys"
    ),
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

    every = {name: None for name in tqdm_keywords() if name not in ("display", "tqdm_class")}
    task = parallel(tasks.square, backend="serial", progress=every)  # validation only: accepted
    assert task.map([2], progress={"disable": True, "display": False}) == [4]
    assert "mininterval" in tqdm_keywords()
    own = {"display", "tqdm_class"}
    assert tqdm_keywords() <= set(__import__("inspect").signature(tqdm.std.tqdm.__init__).parameters) | own


# ---------------------------------------------------------------- timeout= of any size (17)


@pytest.mark.parametrize("timeout", [math.inf, sys.float_info.max, 1e12, 10**30])
def test_any_timeout_validates(timeout: float) -> None:
    parallel(tasks.square, timeout=timeout)
    assert parallel(tasks.square, backend="serial").map([1], timeout=timeout) == [1]


@pytest.mark.parametrize("backend_name", ["serial", "thread"])
@pytest.mark.parametrize("timeout", [math.inf, sys.float_info.max])
def test_infinite_timeout_maps_inline_and_on_threads(backend_name: Any, timeout: float) -> None:
    task = parallel(tasks.square, backend=backend_name, workers=2, timeout=timeout)
    assert task.map(range(20)) == [x * x for x in range(20)]
    assert list(task.imap(range(5), timeout=timeout, chunksize=1)) == [0, 1, 4, 9, 16]


# ---------------------------------------------------------------- checkpoints that cannot be used (29)


def _checkpoint_of_five(path: Path) -> None:
    assert parallel(tasks.square, backend="serial").map(range(5), checkpoint=path) == [x * x for x in range(5)]


def _not_a_checkpoint_error(error: BaseException) -> None:
    assert isinstance(error, OSError), f"{type(error).__name__}: {error}"
    assert not isinstance(error, CheckpointMismatchError)
    assert "not a parmap checkpoint" not in str(error)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        pytest.param(lambda tmp: tmp, IsADirectoryError, "not a directory", id="a-directory"),
        pytest.param(
            lambda tmp: tmp / "missing" / "run.sqlite", FileNotFoundError, "does not exist", id="missing-directory"
        ),
    ],
)
def test_a_checkpoint_path_that_cannot_be_opened_is_an_os_error(
    tmp_path: Path, make: Callable[[Path], Path], error: type[OSError], match: str
) -> None:
    task = parallel(tasks.square, backend="serial")
    for call in (task.map, task.map_async):  # refused at call time, map_async included
        with pytest.raises(error, match=match) as info:
            call(range(3), checkpoint=make(tmp_path))
        _not_a_checkpoint_error(info.value)
    assert not (tmp_path / "missing").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes files whatever their permissions")
@pytest.mark.parametrize("mode", [0o000, 0o444], ids=["no-access", "read-only"])
def test_a_checkpoint_without_permission_is_a_permission_error(tmp_path: Path, mode: int) -> None:
    checkpoint = tmp_path / "run.sqlite"
    _checkpoint_of_five(checkpoint)
    checkpoint.chmod(mode)
    try:
        with pytest.raises(PermissionError, match="permission denied") as info:
            parallel(tasks.square, backend="serial").map(range(5), checkpoint=checkpoint)
        _not_a_checkpoint_error(info.value)
    finally:
        checkpoint.chmod(0o644)


@pytest.fixture
def read_only_copy(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path/ro``: a read-only bind mount of ``tmp_path/rw`` (skipped where mounting is not permitted)."""
    writable, read_only = tmp_path / "rw", tmp_path / "ro"
    writable.mkdir()
    read_only.mkdir()
    with mounted(["--bind", "-o", "ro", str(writable)], read_only, "bind-mount") as target:
        yield target


def test_a_checkpoint_on_a_read_only_filesystem_is_an_os_error(read_only_copy: Path) -> None:
    """What root meets instead of a permission error: SQLite cannot write the file."""
    with pytest.raises(OSError, match="read-only file system") as info:
        parallel(tasks.square, backend="serial").map(range(5), checkpoint=read_only_copy / "run.sqlite")
    _not_a_checkpoint_error(info.value)
    assert info.value.errno == errno.EROFS


@pytest.mark.parametrize(
    ("message", "code", "error", "match"),
    [
        ("database is locked", 5, CheckpointLockedError, "locked by another process"),
        ("database table is locked", 6, CheckpointLockedError, "locked by another process"),
        ("attempt to write a readonly database", 8, PermissionError, "permission denied"),
        ("access permission denied", 3, PermissionError, "permission denied"),
        ("database or disk is full", 13, OSError, "full"),
        ("disk I/O error", 10, OSError, "disk I/O error"),
        ("file is not a database", 26, CheckpointMismatchError, "not a parmap checkpoint"),
    ],
)
@pytest.mark.parametrize("has_code", [True, False], ids=["python3.11+", "message-only"])
def test_sqlite_errors_map_to_file_errors(
    message: str, code: int, error: type[Exception], match: str, has_code: bool
) -> None:
    failure = sqlite3.OperationalError(message)
    if has_code:
        failure.sqlite_errorcode = code  # type: ignore[attr-defined,unused-ignore]  # 3.11+ only
    raised = _checkpoint._file_error("/x/run.sqlite", failure, "cannot open")
    assert type(raised) is error
    assert re.search(match, str(raised))


_HOLD_LOCK = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
connection.execute("ROLLBACK")
"""


@contextlib.contextmanager
def _locked_by_another_process(path: Path) -> Iterator[None]:
    """A second process holds a write transaction (``BEGIN IMMEDIATE``) on ``path`` meanwhile."""
    with subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdin is not None
        assert holder.stdout.readline() == "locked\n"
        try:
            yield
        finally:
            holder.stdin.write("\n")
            holder.stdin.close()
            assert holder.wait(timeout=20) == 0


@pytest.mark.parametrize("existing", [True, False], ids=["a-checkpoint", "a-new-file"])
def test_a_locked_checkpoint_is_reported_as_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: bool
) -> None:
    monkeypatch.setattr(_checkpoint, "BUSY_TIMEOUT_SECONDS", 0.2)  # not the ten seconds a person gets
    checkpoint = tmp_path / "run.sqlite"
    if existing:
        _checkpoint_of_five(checkpoint)
    task = parallel(tasks.square, backend="serial")
    with _locked_by_another_process(checkpoint):
        with pytest.raises(CheckpointLockedError, match="locked by another process") as info:
            task.map(range(5), checkpoint=checkpoint)
        _not_a_checkpoint_error(info.value)
    assert task.map(range(5), checkpoint=checkpoint) == [x * x for x in range(5)]  # usable once released


def test_a_commit_that_waits_for_a_lock_in_vain_raises_and_keeps_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_checkpoint, "BUSY_TIMEOUT_SECONDS", 0.2)
    monkeypatch.setattr(_checkpoint, "COMMIT_ROWS", 3)
    monkeypatch.setattr(_checkpoint, "COMMIT_SECONDS", 3600.0)  # only the job's thread commits here
    checkpoint = tmp_path / "run.sqlite"
    store = CheckpointStore.open(checkpoint, function=tasks.square, length=10)
    try:
        with (
            _locked_by_another_process(checkpoint),
            pytest.raises(CheckpointLockedError, match="could not save 3 results to the checkpoint"),
        ):
            store.save([(0, 0), (1, 1), (2, 4)])
        store.save([(3, 9)])  # released: the retry commits the kept rows with the new one
        assert stored_results(checkpoint) == {0: 0, 1: 1, 2: 4, 3: 9}
    finally:
        store.close()


def _fill_the_file(store: CheckpointStore) -> None:
    """The file can grow no more: every commit that needs a new page fails with SQLITE_FULL."""
    connection = store._connection
    assert connection is not None
    (pages,) = connection.execute("PRAGMA page_count").fetchone()
    connection.execute(f"PRAGMA max_page_count = {pages}")


def _make_room(store: CheckpointStore) -> None:
    assert store._connection is not None
    store._connection.execute("PRAGMA max_page_count = 1073741823")


ROW = "r" * 20_000  # needs new pages whatever the file holds


def test_a_commit_on_a_full_disk_raises_and_keeps_its_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_checkpoint, "COMMIT_ROWS", 2)
    monkeypatch.setattr(_checkpoint, "COMMIT_SECONDS", 3600.0)
    checkpoint = tmp_path / "run.sqlite"
    store = CheckpointStore.open(checkpoint, function=tasks.square, length=10)
    try:
        _fill_the_file(store)
        with pytest.raises(OSError, match=r"could not save 2 results to the checkpoint.*full") as info:
            store.save([(0, ROW), (1, ROW)])
        assert info.value.errno == errno.ENOSPC
        _make_room(store)
        store.save([(2, ROW)])
        assert stored_results(checkpoint) == {0: ROW, 1: ROW, 2: ROW}
    finally:
        store.close()


def test_a_failed_timer_commit_is_retried_then_raised_in_the_jobs_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_checkpoint, "COMMIT_SECONDS", 0.01)
    checkpoint = tmp_path / "run.sqlite"
    store = CheckpointStore.open(checkpoint, function=tasks.square, length=10)
    try:
        _fill_the_file(store)
        store.save([(0, ROW)])
        wait_until(lambda: store._failure is not None)  # the timer's commit failed (in its thread, silently)
        with pytest.raises(OSError, match="full"):
            store.save([(1, ROW)])  # the job's next result retries at once, and raises
        _make_room(store)  # the disk has room again: the timer's next tick (or close) commits
    finally:
        store.close()
    assert stored_results(checkpoint) == {0: ROW, 1: ROW}


def test_close_raises_when_the_last_commit_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_checkpoint, "COMMIT_SECONDS", 3600.0)
    checkpoint = tmp_path / "run.sqlite"
    store = CheckpointStore.open(checkpoint, function=tasks.square, length=10)
    store.save([(0, ROW)])
    _fill_the_file(store)
    with pytest.raises(OSError, match="full"):
        store.close()
    assert repr(store).endswith("closed>")
    store.close()  # idempotent, and quiet once closed
    assert stored_results(checkpoint) == {}


@pytest.mark.parametrize("backend_name", ["serial", "thread"])
def test_a_map_whose_checkpoint_cannot_grow_raises_rather_than_drop_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend_name: Any
) -> None:
    real = _checkpoint._prepare_file

    def prepare_then_fill(connection: sqlite3.Connection, *args: Any, **kwargs: Any) -> bool:
        has_rows = real(connection, *args, **kwargs)
        (pages,) = connection.execute("PRAGMA page_count").fetchone()
        connection.execute(f"PRAGMA max_page_count = {pages}")
        return has_rows

    monkeypatch.setattr(_checkpoint, "_prepare_file", prepare_then_fill)
    task = parallel(tasks.identity, backend=backend_name, workers=2)
    with pytest.raises(OSError, match=r"could not save .* to the checkpoint.*full"):
        task.map([ROW] * 30, checkpoint=tmp_path / "run.sqlite")
    monkeypatch.undo()
    assert task.map([ROW] * 30, checkpoint=tmp_path / "run.sqlite") == [ROW] * 30  # all of it runs again


_FORK_WITH_A_STORE = """
import os, sys
import parmap._checkpoint as checkpoint
from tests import tasks

checkpoint.COMMIT_SECONDS = 3600.0  # nothing is committed unless close() commits it
store = checkpoint.CheckpointStore.open(sys.argv[1], function=tasks.square, length=10)
store.save([(0, 0), (1, 1)])
child = os.fork()
if child == 0:  # a child leaving a loop closes what it inherited, then exits normally
    store.save([(2, 4)])
    store.close()
    sys.exit(0)
_, status = os.waitpid(child, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
assert checkpoint.stored_results(sys.argv[1]) == {}, "the child committed the parent's rows"
store.save([(3, 9)])
store.close()
assert checkpoint.stored_results(sys.argv[1]) == {0: 0, 1: 1, 3: 9}, checkpoint.stored_results(sys.argv[1])
print("ok", flush=True)
"""


def _run_forking_script(script: str, path: Path) -> subprocess.CompletedProcess[str]:
    """Run `script` with `path` as its argument (it forks: 3.12's fork warning is not ours to see)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", script, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_forked_child_never_writes_or_closes_the_parents_checkpoint(tmp_path: Path) -> None:
    """Issue 10: 21, checkpoint side."""
    done = _run_forking_script(_FORK_WITH_A_STORE, tmp_path / "run.sqlite")
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", "")


_FORK_WITH_A_BAR = """
import os, sys
from parmap._progress import make_progress

with open(sys.argv[1], "w") as output:
    bar = make_progress({"file": output, "mininterval": 0, "ascii": True}, 10, "squares")
    bar.update(3)
    output.flush()
    drawn = os.path.getsize(sys.argv[1])
    child = os.fork()
    if child == 0:
        bar.update(1)
        bar.close()
        output.flush()
        os._exit(0)
    os.waitpid(child, 0)
    assert os.path.getsize(sys.argv[1]) == drawn, "the child drew on the parent's bar"
    bar.update(7)
    bar.close()
print("ok", flush=True)
"""


def test_a_forked_child_leaves_the_parents_progress_bar_alone(tmp_path: Path) -> None:
    """Issue 10: 21, progress side."""
    done = _run_forking_script(_FORK_WITH_A_BAR, tmp_path / "bar.txt")
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", "")
    assert "10/10" in (tmp_path / "bar.txt").read_text()
