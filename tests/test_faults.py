"""Failures end in a clear, typed outcome and the pool heals (issues 2 and 3).

Faults come from the input (``if x == 7: os._exit(1)``), from pickling bombs, or from a
signal sent to a pid the task reported while it waits on a file: never from timing.
"""

from __future__ import annotations

import functools
import gc
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable, Literal

import pytest

import parmap
from parmap import RemoteTraceback, SerializationError, TaskTimeoutError, WorkerLostError, parallel
from tests import tasks
from tests.conftest import process_pool_of, run_script, wait_until

Decorate = Callable[..., Any]

CRASH_CASES = [
    pytest.param(tasks.exit_on_seven, 7, "exit code 1", id="os._exit"),
    pytest.param(tasks.segfault_on_five, 5, "SIGSEGV", id="segfault"),
    pytest.param(tasks.sigkill_self_on_two, 2, "SIGKILL", id="sigkill"),
]


@pytest.mark.parametrize(("function", "culprit", "cause"), CRASH_CASES)
@pytest.mark.parametrize("chunksize", [1, 4, "auto"])
def test_dead_worker_fails_the_job_and_the_pool_heals(
    process_backend: Decorate, function: Any, culprit: int, cause: str, chunksize: Any
) -> None:
    task = process_backend(function)
    with pytest.raises(WorkerLostError, match=cause) as info:
        task.map(range(10), chunksize=chunksize)
    assert info.value.indices == [culprit]
    assert f"item {culprit}" in str(info.value)
    assert task.map([0, 1]) == [0, 1]  # the next call works
    pool = process_pool_of(task)
    wait_until(lambda: len(pool.ready_worker_pids) == 2)  # full strength again


@pytest.mark.parametrize(("function", "culprit", "cause"), CRASH_CASES)
def test_dead_worker_with_return_exceptions_keeps_other_results(
    process_backend: Decorate, function: Any, culprit: int, cause: str
) -> None:
    results = process_backend(function).map(range(10), chunksize=3, return_exceptions=True)
    assert isinstance(results[culprit], WorkerLostError)
    assert [r for i, r in enumerate(results) if i != culprit] == [i for i in range(10) if i != culprit]


def test_dead_worker_is_retried_on_a_fresh_worker(tmp_path: Path) -> None:
    marker = tmp_path / "died-once"

    def die_once(x: int) -> int:
        if x == 3 and not marker.exists():
            marker.write_text("")
            os._exit(1)
        return x * 10

    assert parallel(die_once, workers=2).map(range(6), retries=1) == [0, 10, 20, 30, 40, 50]


def test_retries_exhausted_raise_the_last_error() -> None:
    attempts_dir = Path(os.environ.get("TMPDIR", "/tmp"))
    del attempts_dir
    with pytest.raises(ValueError, match="bad item 3"):
        parallel(tasks.fail_on_three, workers=2).map(range(5), retries=2)


def test_retry_on_narrows_what_is_retried(tmp_path: Path) -> None:
    log = tmp_path / "attempts"

    def flaky(x: int) -> int:
        with log.open("a") as handle:
            handle.write(f"{x}\n")
        if x == 1:
            raise KeyError(x)
        return x

    with pytest.raises(KeyError):
        parallel(flaky, workers=2).map([0, 1], retries=3, retry_on=ValueError)
    assert log.read_text().split().count("1") == 1
    log.unlink()
    with pytest.raises(KeyError):
        parallel(flaky, workers=2).map([0, 1], retries=3, retry_on=(KeyError,))
    assert log.read_text().split().count("1") == 4


def test_task_error_keeps_type_traceback_and_index(backend: Decorate) -> None:
    with pytest.raises(ValueError, match="bad item 3") as info:
        backend(tasks.fail_on_three).map(range(8))
    assert any("input index 3" in note for note in getattr(info.value, "__notes__", []))
    if isinstance(info.value.__cause__, RemoteTraceback):
        assert "fail_on_three" in str(info.value.__cause__)
        assert "Traceback" in str(info.value.__cause__)


def test_failure_stops_the_job_promptly(tmp_path: Path) -> None:
    ran = tmp_path / "ran"

    def fail_first(x: int) -> int:
        if x == 0:
            raise ValueError("first")
        with ran.open("a") as handle:
            handle.write(f"{x}\n")
        return x

    with pytest.raises(ValueError):
        parallel(fail_first, workers=1).map(range(1000), chunksize=1)
    assert len(ran.read_text().split()) < 100 if ran.exists() else True


def test_return_exceptions_puts_errors_in_their_slots(backend: Decorate) -> None:
    results = backend(tasks.fail_on_three).map(range(6), return_exceptions=True)
    assert results[:3] == [0, 1, 2]
    assert isinstance(results[3], ValueError)
    assert results[4:] == [4, 5]
    assert list(backend(tasks.fail_on_three).imap(range(5), return_exceptions=True))[3].args == ("bad item 3",)


@pytest.mark.parametrize("function", [tasks.raise_system_exit, tasks.raise_keyboard_interrupt])
def test_system_exit_and_keyboard_interrupt_in_a_task_are_item_errors(process_backend: Decorate, function: Any) -> None:
    results = process_backend(function).map(range(3), return_exceptions=True)
    assert results[0] == 0
    assert results[2] == 2
    assert isinstance(results[1], (SystemExit, KeyboardInterrupt))
    assert process_backend(tasks.square).map([2]) == [4]


def test_timeout_kills_only_the_overrunning_worker(process_backend: Decorate) -> None:
    task = process_backend(tasks.sleep_on, timeout=0.5)
    results = task.map([0.0, 30.0, 0.0, 0.01], chunksize=1, return_exceptions=True)
    assert isinstance(results[1], TaskTimeoutError)
    assert isinstance(results[1], TimeoutError)
    assert results[1].index == 1
    assert [results[0], results[2], results[3]] == [0.0, 0.0, 0.01]
    with pytest.raises(TaskTimeoutError):
        task.map([30.0])
    assert task.map([0.0]) == [0.0]


def test_timeout_with_retries_then_failure(process_backend: Decorate) -> None:
    with pytest.raises(TaskTimeoutError):
        process_backend(tasks.sleep_on).map([30.0], timeout=0.3, retries=1)


@pytest.mark.parametrize("backend_name", ["thread", "serial"])
def test_timeout_reported_after_the_fact_without_processes(backend_name: Literal["thread", "serial"]) -> None:
    results = parallel(tasks.sleep_on, backend=backend_name, workers=2, timeout=0.05).map(
        [0.0, 0.2], return_exceptions=True
    )
    assert results[0] == 0.0
    assert isinstance(results[1], TaskTimeoutError)


def test_max_tasks_per_worker_recycles_without_losing_or_rerunning(tmp_path: Path) -> None:
    log = tmp_path / "runs"

    def record(x: int) -> int:
        with log.open("a") as handle:
            handle.write(f"{os.getpid()} {x}\n")
        return x

    assert parallel(record, workers=2).map(range(25), max_tasks_per_worker=3, chunksize=2) == list(range(25))
    runs = [line.split() for line in log.read_text().splitlines()]
    assert sorted(int(x) for _, x in runs) == list(range(25))  # each item exactly once
    per_pid: dict[str, int] = {}
    for pid, _ in runs:
        per_pid[pid] = per_pid.get(pid, 0) + 1
    assert max(per_pid.values()) <= 3
    assert len(per_pid) >= 9


def test_unpicklable_item_names_its_index(process_backend: Decorate) -> None:
    items: list[Any] = [1, 2, lambda: None, 4]
    items[2] = threading.Lock()
    task = process_backend(tasks.identity)
    with pytest.raises(SerializationError, match="item 2"):
        task.map(items)
    results = task.map(items, return_exceptions=True)
    assert results[:2] == [1, 2]
    assert isinstance(results[2], SerializationError)
    assert results[3] == 4
    assert task.map([5]) == [5]


def test_unpicklable_result_names_its_index(process_backend: Decorate) -> None:
    task = process_backend(tasks.return_unpicklable)
    with pytest.raises(SerializationError, match="item 4"):
        task.map(range(6))
    results = task.map(range(6), return_exceptions=True)
    assert results[:4] == [0, 1, 2, 3]
    assert isinstance(results[4], SerializationError)
    assert task.map([1]) == [1]


@pytest.mark.parametrize("function", [tasks.raise_unpicklable, tasks.raise_odd])
def test_exception_that_cannot_travel_is_described(process_backend: Decorate, function: Any) -> None:
    with pytest.raises(Exception) as info:
        process_backend(function).map(range(4))
    error = info.value
    if isinstance(error, SerializationError):
        assert re.search(r"item \d raised", str(error))
    else:
        # Where the parent's pickling was extended (tblib, as installed by some libraries,
        # teaches pickle every exception), the original travels: same type, index noted.
        assert type(error).__name__ in ("UnpicklableError", "OddError")
        assert any("input index" in note for note in getattr(error, "__notes__", []))
    assert "Traceback" in str(error.__cause__)
    assert process_backend(tasks.square).map([3]) == [9]


def test_unpicklable_function_is_a_clear_error() -> None:
    lock = threading.Lock()

    def uses_lock(x: int) -> int:
        with lock:
            return x

    with pytest.raises(SerializationError, match="could not be pickled"):
        parallel(uses_lock, workers=2).map([1])


def test_worker_killed_while_unpickling_its_chunk(process_backend: Decorate) -> None:
    items: list[Any] = [0, 1, tasks.ExitAtUnpickle(), 3]
    results = process_backend(tasks.identity).map(items, chunksize=4, return_exceptions=True)
    assert results[0:2] == [0, 1]
    assert isinstance(results[2], WorkerLostError)
    assert results[2].indices == [2]
    assert results[3] == 3


def test_sigkill_from_outside_while_task_waits(process_backend: Decorate, tmp_path: Path) -> None:
    task = process_backend(tasks.wait_for_file)
    result = task.map_async([(str(tmp_path), i) for i in range(4)], chunksize=1)
    wait_until((tmp_path / "started-0").exists)
    os.kill(int((tmp_path / "started-0").read_text()), signal.SIGKILL)
    (tmp_path / "go").write_text("")
    with pytest.raises(WorkerLostError, match="SIGKILL") as info:
        result.get(timeout=20)
    assert info.value.indices == [0]
    assert task.map([(str(tmp_path), 9)]) == [9]


def test_nested_map_runs_inside_the_worker(backend: Decorate) -> None:
    assert backend(tasks.inner_sum).map([3, 4]) == [0 + 1 + 4, 0 + 1 + 4 + 9]


def test_forked_child_gets_fresh_pools() -> None:
    task = parallel(tasks.pid_of, workers=2, start_method="fork")
    parent_workers = set(task.map(range(10), chunksize=1))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: must build its own pool, never use the parent's workers
        try:
            os.close(read)
            child_workers = set(task.map(range(10), chunksize=1))
            ok = not (child_workers & parent_workers) and parmap.parallel(tasks.square).map([3]) == [9]
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"1"
    pool = process_pool_of(task)
    assert pool.usable  # the child never touched the parent's pool
    assert set(task.map(range(20), chunksize=1)) <= set(pool.ready_worker_pids)


def test_fork_pool_created_while_a_thread_is_busy() -> None:
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            sum(range(1000))
            print(end="", flush=True)

    thread = threading.Thread(target=busy, daemon=True)
    thread.start()
    try:
        for _ in range(5):
            assert parallel(tasks.square, workers=2, start_method="fork").map(range(20)) == [x * x for x in range(20)]
            parmap.shutdown()
    finally:
        stop.set()
        thread.join(5)


@pytest.mark.parametrize("start_method", ["fork", "spawn", "forkserver"])
@pytest.mark.parametrize("ending", ["pending map_async", "sys.exit", "unhandled exception"])
def test_interpreter_exit_with_work_running_is_prompt_and_quiet(start_method: str, ending: str, tmp_path: Path) -> None:
    finish = {
        "pending map_async": "",
        "sys.exit": "sys.exit(0)",
        "unhandled exception": "raise RuntimeError('user error')",
    }[ending]
    code = f"""
        import os, sys, time
        from pathlib import Path
        from parmap import parallel
        from tests import tasks
        if __name__ == "__main__":
            task = parallel(tasks.wait_for_file, workers=2, start_method={start_method!r})
            result = task.map_async([({str(tmp_path)!r}, i) for i in range(4)], chunksize=1)
            while not Path({str(tmp_path)!r}, "started-0").exists():
                time.sleep(0.01)
            print("started", flush=True)
            {finish}
    """
    script = tmp_path / "main.py"
    script.write_text(textwrap.dedent(code))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "started"  # work is running from here on
        exiting = time.monotonic()
        _, stderr = process.communicate(timeout=30)
        elapsed = time.monotonic() - exiting
    worker_pids = [int(p.read_text()) for p in tmp_path.glob("started-*")]
    if ending == "unhandled exception":
        assert "RuntimeError: user error" in stderr
        assert stderr.count("Traceback") == 1
    else:
        assert stderr == ""
    assert elapsed < 2.0, f"exit took {elapsed:.2f} s with work still running"
    for pid in worker_pids:
        wait_until(functools.partial(_gone, pid), timeout=5)


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie, dead but not yet reaped, counts as gone)."""
    return not Path(f"/proc/{pid}").exists() or _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return True


@pytest.mark.parametrize("method", ["map", "imap", "progress"])
def test_ctrl_c_reaches_the_caller_within_a_second(method: str, tmp_path: Path) -> None:
    call = {
        "map": "task.map(items, chunksize=1)",
        "imap": "list(task.imap(items, chunksize=1))",
        "progress": "task.map(items, chunksize=1, progress=True)",
    }[method]
    code = f"""
        import os, signal, sys, threading, time
        from pathlib import Path
        from parmap import parallel
        from tests import tasks
        if __name__ == "__main__":
            directory = {str(tmp_path)!r}
            task = parallel(tasks.wait_for_file, workers=2)
            items = [(directory, i) for i in range(6)]
            def interrupt():
                while not Path(directory, "started-0").exists():
                    time.sleep(0.01)
                global sent
                sent = time.monotonic()
                os.kill(os.getpid(), signal.SIGINT)
            threading.Thread(target=interrupt, daemon=True).start()
            try:
                {call}
            except KeyboardInterrupt:
                print("interrupted after", time.monotonic() - sent, flush=True)
            running = [int(p.read_text()) for p in Path(directory).glob("started-*")]
            Path(directory, "go").write_text("")
            print("next call", task.map([(directory, 7)]), flush=True)
            # The workers that ran the interrupted tasks were stopped, not left to finish.
            print("running tasks stopped", tasks.processes_gone(running, within=5), flush=True)
    """
    process = run_script(code, timeout=30)
    assert "interrupted after" in process.stdout, process.stderr
    delay = float(process.stdout.split("interrupted after")[1].split()[0])
    assert delay < 1.0
    assert "next call [7]" in process.stdout
    assert "running tasks stopped True" in process.stdout
    if method == "progress":
        assert "0/6" in process.stderr or "1/6" in process.stderr


def _open_files() -> dict[str, str]:
    """This process's open file descriptors and what each points at."""
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            found[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile, or the directory's own descriptor
            pass
    return found


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_soak_kills_and_timeouts_leak_nothing(tmp_path: Path) -> None:
    def fault(x: int) -> int:
        if x % 1000 == 1:
            os._exit(1)
        if x % 1000 == 2:
            time.sleep(30)
        return x + 1

    task = parallel(fault, workers=2, timeout=0.3)
    task.map([0])
    gc.collect()
    fds_before = _open_files()
    kills = timeouts = 0
    for round_number in range(2000):
        base = round_number * 1000 + 10
        items = [base, base + 1, base + 2]
        if round_number % 40 == 0 and kills < 50:
            items.append(round_number * 1000 + 1)
            kills += 1
        elif round_number % 40 == 20 and timeouts < 50:
            items.append(round_number * 1000 + 2)
            timeouts += 1
        results = task.map(items, return_exceptions=True)
        for item, result in zip(items, results):
            expected = {1: WorkerLostError, 2: TaskTimeoutError}.get(item % 1000)
            if expected is None:
                assert result == item + 1, f"round {round_number}: item {item} gave {result!r}"
            else:
                assert isinstance(result, expected), f"round {round_number}: item {item} gave {result!r}"
    assert kills == 50
    assert timeouts == 50
    pool = process_pool_of(task)
    wait_until(lambda: len(pool.ready_worker_pids) == 2)
    # Each replaced worker's pipe and sentinel are closed: the process holds no more files
    # than before the 100 faults. (Fewer is fine: earlier tests' objects may close theirs.)
    gc.collect()
    fds_after = _open_files()
    new = {fd: target for fd, target in fds_after.items() if fds_before.get(fd) != target}
    assert len(fds_after) <= len(fds_before), f"more files open than before; new or changed: {new}"
    from tests.conftest import worker_processes

    assert len([p for p in worker_processes() if not _zombie(p)]) == 2


def test_map_inside_a_daemonic_process_runs_serially() -> None:
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.map(tasks.map_inside, [3]) == [[0, 1, 4]]
