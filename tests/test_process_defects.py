"""Regression tests for the backend defects of issue 10 (process, serial and thread backends).

Faults come from the input (bombs that fire at pickle time, tasks that fork or exit), and
every wait is for a state (a file a task wrote, a pid gone), never a race of sleeps.
"""

from __future__ import annotations

import concurrent.futures
import math
import multiprocessing
import os
import queue
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Literal

import pytest

import parmap
from parmap import InitializerError, SerializationError, TaskTimeoutError, parallel
from parmap._config import PoolConfig
from parmap.backends import ChunkArrived, ChunkDone, ChunkTask, JobSpec, Outcome
from parmap.backends.process import ProcessBackend
from tests import tasks
from tests.conftest import PROCESS_BACKENDS, StartMethod, process_pool_of, wait_until

Decorate = Callable[..., Any]

#: Generous bound for "promptly": far above what each step takes, far below a hang.
PROMPT_SECONDS = 20.0


def _pool_of(task: Any) -> Any:
    return parmap._registry._pools[task._self_config]


def _ready_pids(task: Any, workers: int = 2) -> set[int]:
    """The pids of the pool's workers, once all of them are ready."""
    pool = _pool_of(task)
    wait_until(lambda: len(pool.ready_worker_pids) == workers)
    return set(pool.ready_worker_pids)


def _script_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not reaped, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


# --------------------------------------------------------------------------- defect 1


def test_big_function_to_a_busy_worker_while_another_sends_a_big_result(tmp_path: Path) -> None:
    """A 2 MB closure sent towards a busy worker never stops the manager: the other job's
    300 kB result arrives, a timeout still fires, and every job finishes."""
    big = os.urandom(2_000_000)

    def big_closure(x: int) -> int:
        return len(big) + x

    waiter = parallel(tasks.wait_then_big_result, workers=2)
    timed, sender = tmp_path / "timed", tmp_path / "sender"
    timed.mkdir()
    sender.mkdir()
    with concurrent.futures.ThreadPoolExecutor(3) as executor:
        overrun = executor.submit(waiter.map, [(str(timed), 0)], timeout=3.0)
        result = executor.submit(waiter.map, [(str(sender), 0)])
        wait_until(lambda: (timed / "started-0").exists() and (sender / "started-0").exists())
        pool = _pool_of(waiter)
        closure = executor.submit(parallel(big_closure, workers=2).map, [1])
        wait_until(lambda: not pool._flags.pending)  # the manager has taken it: sent ahead
        (sender / "go").write_text("")
        assert result.result(timeout=PROMPT_SECONDS) == [b"r" * 300_000]
        with pytest.raises(TaskTimeoutError):
            overrun.result(timeout=PROMPT_SECONDS)
        assert closure.result(timeout=PROMPT_SECONDS) == [2_000_001]


# --------------------------------------------------------------------------- defect 2

STOP_ITERATION_PATHS = [
    pytest.param({}, id="plain"),
    pytest.param({"timeout": 30.0}, id="timeout"),
    pytest.param({"seed": 1}, id="seed"),
    pytest.param({"stats": True}, id="stats"),
]


@pytest.mark.parametrize("options", STOP_ITERATION_PATHS)
def test_stop_iteration_in_a_task_fails_its_item(backend: Decorate, options: dict[str, Any]) -> None:
    task = backend(tasks.raise_stop_iteration_on_two)
    results = list(task.map(range(6), chunksize=3, return_exceptions=True, **options))
    assert results[:2] == [0, 1]
    assert results[3:] == [3, 4, 5]
    error = results[2]
    assert type(error) is StopIteration
    assert any("index 2" in note for note in getattr(error, "__notes__", []))
    cause = error.__cause__ if error.__cause__ is not None else error
    text = str(cause) + "".join(traceback.format_tb(error.__traceback__))
    assert "raise_stop_iteration_on_two" in text


@pytest.mark.parametrize("options", STOP_ITERATION_PATHS)
def test_stop_iteration_raised_by_map_keeps_its_type(backend: Decorate, options: dict[str, Any]) -> None:
    task = backend(tasks.raise_stop_iteration_on_two)
    runs: tuple[Callable[[], object], ...] = (
        lambda: task.map(range(6), chunksize=3, **options),
        lambda: task.map_async(range(6), chunksize=3, **options).get(timeout=20),
    )
    for run in runs:
        with pytest.raises(StopIteration) as info:
            run()
        assert type(info.value) is StopIteration  # never "RuntimeError: generator raised StopIteration"
        assert any("index 2" in note for note in getattr(info.value, "__notes__", []))
    assert task.map([0, 1]) == [0, 1]  # the pool stays usable


def test_stop_iteration_in_imap_is_raised_after_the_results_before_it(backend: Decorate) -> None:
    # An iterator cannot raise StopIteration (a for loop would end silently and lose the rest):
    # imap raises TaskStopIteration, caused by the task's own StopIteration.
    got: list[int] = []
    with pytest.raises(parmap.TaskStopIteration) as info:
        got.extend(backend(tasks.raise_stop_iteration_on_two).imap(range(6), chunksize=1))
    assert got == [0, 1]
    assert type(info.value.__cause__) is StopIteration
    assert any("index 2" in note for note in getattr(info.value, "__notes__", []))


# --------------------------------------------------------------------------- defect 3


def test_function_that_cannot_be_unpickled_in_a_worker(process_backend: Decorate) -> None:
    task = process_backend(tasks.UnloadableInWorker())
    square = process_backend(tasks.square)
    assert square.map([3]) == [9]
    before = _ready_pids(square)
    started = time.monotonic()
    with pytest.raises(SerializationError, match=r"UnloadableInWorker.*could not be unpickled") as info:
        task.map(range(4))
    assert time.monotonic() - started < PROMPT_SECONDS
    assert len(str(info.value)) < 300  # one short message, not a flood of tracebacks
    assert "only_in_the_caller" in str(info.value)
    assert square.map([3]) == [9]
    assert _ready_pids(square) == before  # the same workers: none died


# --------------------------------------------------------------------------- defect 4


@pytest.mark.parametrize("chunksize", [1, 3, "auto"])
def test_result_whose_unpickling_raises_system_exit_fails_its_item(process_backend: Decorate, chunksize: Any) -> None:
    # In a chunk of several items the whole message cannot be unpickled: the engine runs the
    # chunk again careful, each result pickled on its own, and only item 1 fails (defect 7).
    task = process_backend(tasks.return_exit_in_caller_on_one)
    results = task.map(range(3), chunksize=chunksize, return_exceptions=True)
    assert results[0] == 0
    assert results[2] == 2
    assert isinstance(results[1], SerializationError)
    assert "item 1" in str(results[1])
    assert "SystemExit" in str(results[1])
    with pytest.raises(SerializationError, match="item 1"):
        task.map(range(3), chunksize=chunksize)
    assert task.map([0, 2]) == [0, 2]  # the pool stays usable


# --------------------------------------------------------------------------- defect 5


def test_a_forked_child_returning_into_the_worker_loop_never_answers(process_backend: Decorate) -> None:
    task = process_backend(tasks.fork_and_return)
    assert task.map(range(6), chunksize=1) == [("parent", x) for x in range(6)]
    assert task.map(range(6), chunksize=3) == [("parent", x) for x in range(6)]


# --------------------------------------------------------------------------- defects 8 and 10


def _backend_job(job_id: int, function: Callable[[Any], Any], outcomes: queue.Queue[Outcome]) -> JobSpec:
    def deliver(outcome: Outcome) -> None:  # results arrive pickled: decoded as the engine does
        outcomes.put(outcome.decode() if isinstance(outcome, ChunkArrived) else outcome)

    return JobSpec(job_id=job_id, function=function, deliver=deliver)


def _chunk(chunk_id: int, job: JobSpec, directory: Path, x: int) -> ChunkTask:
    return ChunkTask(chunk_id=chunk_id, job=job, indices=[x], items=[(str(directory), x)])


def test_cancelling_a_job_never_kills_a_worker_running_another_jobs_chunk(tmp_path: Path) -> None:
    """Job 2's chunk waits behind job 1's running chunk on one worker: stopping job 2 kills
    the worker running job 2, withdraws the waiting chunk, and job 1 finishes untouched."""
    backend = ProcessBackend(
        PoolConfig.build(backend="process", workers=2, start_method=None, initializer=None, initargs=())
    )
    try:
        wait_until(lambda: len(backend.ready_worker_pids) == 2)
        first, second = tmp_path / "one", tmp_path / "two"
        first.mkdir()
        second.mkdir()
        outcomes: queue.Queue[Outcome] = queue.Queue()
        job_one = _backend_job(1, tasks.wait_for_file, outcomes)
        job_two = _backend_job(2, tasks.wait_for_file, outcomes)
        backend.submit(_chunk(1, job_one, first, 0))
        backend.submit(_chunk(2, job_two, second, 0))
        wait_until(lambda: (first / "started-0").exists() and (second / "started-0").exists())
        backend.submit(_chunk(3, job_two, second, 1))  # both busy: sent ahead, behind job 1's
        backend.submit(_chunk(4, job_one, first, 1))
        wait_until(lambda: not backend._flags.pending)
        runner = int((first / "started-0").read_text())
        backend.cancel(2, stop_running=True)
        wait_until(lambda: not _alive(int((second / "started-0").read_text())))
        (first / "go").write_text("")
        done: dict[int, list[Any]] = {}
        while len(done) < 2:
            outcome = outcomes.get(timeout=PROMPT_SECONDS)
            assert outcome.task.job is job_one, outcome
            assert isinstance(outcome, ChunkDone), outcome
            done[outcome.task.chunk_id] = outcome.values
        assert done == {1: [0], 4: [1]}
        assert _alive(runner)
        assert not (second / "started-1").exists()  # withdrawn: it never started
    finally:
        backend.shutdown()


def test_leaving_an_imap_loop_withdraws_chunks_sent_ahead(process_backend: Decorate, tmp_path: Path) -> None:
    """Item 0 waits until each worker holds two chunks (one running, one sent ahead); once
    it is done, the caller leaves the loop: the chunks sent ahead that have not started
    are withdrawn and never start."""
    first, rest = tmp_path / "first", tmp_path / "rest"
    first.mkdir()
    rest.mkdir()
    task = process_backend(tasks.wait_for_file)
    items = [(str(first), 0)] + [(str(rest), x) for x in range(1, 10)]

    def release_item_zero() -> None:
        wait_until(lambda: task._self_config in parmap._registry._pools)
        pool = _pool_of(task)
        wait_until(lambda: sum(len(w.held) for w in list(pool._manager._workers.values())) == 4)
        (first / "go").write_text("")

    results = task.imap(items, chunksize=1)
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        releaser = executor.submit(release_item_zero)
        assert next(results) == 0
        releaser.result()
    results.close()  # leaving the loop, as `break` does
    (rest / "go").write_text("")
    # Both workers run the next map's chunks; a chunk left in a worker would have run first.
    assert process_backend(tasks.square).map([1, 2], chunksize=1) == [1, 4]
    started = sorted(path.name for path in rest.glob("started-*"))
    # At most one chunk per worker had started when the loop was left; nothing else may
    # start (each worker held one more, and more were queued).
    assert len(started) <= 2, started


def test_cancel_withdraws_chunks_sent_ahead_that_have_not_started(tmp_path: Path) -> None:
    """The backend's side of leaving a loop: `cancel` without stopping the running chunks
    withdraws the chunks sent ahead; they never start and get no outcome."""
    backend = ProcessBackend(
        PoolConfig.build(backend="process", workers=2, start_method=None, initializer=None, initargs=())
    )
    try:
        wait_until(lambda: len(backend.ready_worker_pids) == 2)
        outcomes: queue.Queue[Outcome] = queue.Queue()
        job = _backend_job(1, tasks.wait_for_file, outcomes)
        backend.submit(_chunk(1, job, tmp_path, 0))
        backend.submit(_chunk(2, job, tmp_path, 1))
        wait_until(lambda: (tmp_path / "started-0").exists() and (tmp_path / "started-1").exists())
        backend.submit(_chunk(3, job, tmp_path, 2))
        backend.submit(_chunk(4, job, tmp_path, 3))
        workers = backend._manager._workers
        wait_until(lambda: sum(len(w.held) for w in list(workers.values())) == 4)
        backend.cancel(1, stop_running=False)
        (tmp_path / "go").write_text("")
        wait_until(lambda: sum(len(w.held) for w in list(workers.values())) == 0)
        finished = sorted(outcomes.get(timeout=PROMPT_SECONDS).task.chunk_id for _ in range(2))
        assert finished == [1, 2]
        assert outcomes.empty()
        assert not (tmp_path / "started-2").exists()
        assert not (tmp_path / "started-3").exists()
    finally:
        backend.shutdown()


# --------------------------------------------------------------------------- defect 11


#: The long items of the load-balance tests. Spread over both workers they take ~LONG s; one
#: worker running both takes 2 * LONG or more. The margin between the two absorbs a pool start
#: and a machine loaded by another test run.
LONG = 2.5


def test_fresh_pool_spreads_two_long_items_over_two_workers() -> None:
    task = parallel(tasks.sleep_on, workers=2)
    started = time.monotonic()
    assert task.map([LONG, LONG]) == [LONG, LONG]
    assert time.monotonic() - started < 1.6 * LONG


def test_warm_pool_never_queues_a_long_item_behind_a_busy_worker() -> None:
    task = parallel(tasks.sleep_on, workers=2)
    task.map([0.0, 0.0], chunksize=1)
    wait_until(lambda: len(_pool_of(task).ready_worker_pids) == 2)
    started = time.monotonic()
    assert task.map([LONG, 0.05, LONG, 0.05], chunksize=1) == [LONG, 0.05, LONG, 0.05]
    assert time.monotonic() - started < 1.6 * LONG


# --------------------------------------------------------------------------- defect 15


@pytest.mark.parametrize("initializer", [tasks.exit_in_initializer, tasks.system_exit_in_initializer])
def test_initializer_that_ends_its_process_is_an_initializer_error(process_backend: Decorate, initializer: Any) -> None:
    task = process_backend(tasks.square, initializer=initializer)
    with pytest.raises(InitializerError):
        task.map(range(4))


# --------------------------------------------------------------------------- defect 16


def test_shutdown_stops_busy_workers_at_once(
    process_backend: Decorate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Idle workers get this long to exit when asked; a busy worker waited for like an idle
    # one would make shutdown take all of it.
    monkeypatch.setattr("parmap.backends.process.STOP_GRACE_SECONDS", 30.0)
    task = process_backend(tasks.wait_for_file)
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        running = executor.submit(task.map, [(str(tmp_path), 0)])
        wait_until((tmp_path / "started-0").exists)
        pid = int((tmp_path / "started-0").read_text())
        started = time.monotonic()
        parmap.shutdown()
        assert time.monotonic() - started < 10  # not the 30 s grace of an idle worker
        assert not _alive(pid)
        with pytest.raises(parmap.PoolClosedError):
            running.result(timeout=PROMPT_SECONDS)


# --------------------------------------------------------------------------- defect 17


@pytest.mark.parametrize("timeout", [math.inf, 1e300, sys.float_info.max, 1e9])
def test_any_timeout_works_and_never_breaks_the_pool(process_backend: Decorate, timeout: float) -> None:
    task = process_backend(tasks.square)
    assert task.map(range(5), timeout=timeout, chunksize=1) == [0, 1, 4, 9, 16]
    assert task.map(range(3)) == [0, 1, 4]


# --------------------------------------------------------------------------- defect 20

_ORPHAN_SCRIPT = """
import sys
from parmap import parallel
from tests import tasks
if __name__ == "__main__":
    parallel(tasks.pid_then_hold_the_gil, workers=1, start_method=sys.argv[2]).map([sys.argv[1]])
"""


@pytest.mark.parametrize("start_method", ["fork", "spawn", "forkserver"])
def test_workers_die_with_their_caller_even_in_a_long_c_call(tmp_path: Path, start_method: str) -> None:
    script = tmp_path / "caller.py"
    script.write_text(textwrap.dedent(_ORPHAN_SCRIPT))
    marker = tmp_path / "worker-pid"
    caller = subprocess.Popen([sys.executable, str(script), str(marker), start_method], env=_script_env())
    pid = 0
    try:
        wait_until(marker.exists)
        pid = int(marker.read_text())
        time.sleep(0.2)  # the task is now inside re.findall (no state to wait for there)
        caller.send_signal(signal.SIGKILL)
        caller.wait(timeout=PROMPT_SECONDS)
        wait_until(lambda: not _alive(pid), timeout=3.0)
    finally:
        if pid and _alive(pid):
            os.kill(pid, signal.SIGKILL)  # never leave a runaway regex burning a core
        if caller.poll() is None:
            caller.kill()


# --------------------------------------------------------------------------- defect 22

_NOFILE_SCRIPT = """
import os, resource, sys
from pathlib import Path
from parmap import PoolStartError, parallel
from tests import tasks
if __name__ == "__main__":
    open_now = len(os.listdir("/proc/self/fd"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_now + 24, hard))
    try:
        parallel(tasks.square, workers=40, start_method=sys.argv[1]).map([1])
    except PoolStartError as error:
        children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
        workers = [pid for pid in children if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()]
        print("PoolStartError", "files" in str(error), len(workers))
    else:
        print("started")
"""


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_pool_that_cannot_start_all_its_workers_stops_them_and_says_why(tmp_path: Path, start_method: str) -> None:
    script = tmp_path / "nofile.py"
    script.write_text(textwrap.dedent(_NOFILE_SCRIPT))
    done = subprocess.run(
        [sys.executable, str(script), start_method],
        capture_output=True,
        text=True,
        timeout=PROMPT_SECONDS * 2,
        env=_script_env(),
        check=False,
    )
    assert done.stdout.split() == ["PoolStartError", "True", "0"], done.stdout + done.stderr


# --------------------------------------------------------------------------- defect 27


@pytest.mark.parametrize("start_method", [p.values[0][1] for p in PROCESS_BACKENDS])  # type: ignore[index]
def test_initargs_may_carry_multiprocessing_synchronisation_objects(start_method: StartMethod) -> None:
    context = multiprocessing.get_context(start_method)
    value, lock, event, results = context.Value("i", 0), context.Lock(), context.Event(), context.Queue()
    event.set()
    task = parallel(
        tasks.use_sync_objects,
        workers=2,
        start_method=start_method,
        initializer=tasks.keep_sync_objects,
        initargs=(value, lock, event, results),
    )
    assert task.map(range(6), chunksize=1) == [100 + x for x in range(6)]
    assert value.value == 6
    assert sorted(results.get(timeout=PROMPT_SECONDS) for _ in range(6)) == list(range(6))


# --------------------------------------------------------------------------- defect 30


def test_unpicklable_exception_whose_str_raises_is_a_serialization_error(process_backend: Decorate) -> None:
    task = process_backend(tasks.raise_bad_str_on_one)
    assert task.map([0]) == [0]
    pids = _ready_pids(task)
    results = task.map(range(3), chunksize=1, return_exceptions=True)
    assert results[0] == 0
    assert results[2] == 2
    assert isinstance(results[1], SerializationError)
    assert "BadStrUnpicklableError" in str(results[1])
    assert _ready_pids(task) == pids  # the worker lived


# --------------------------------------------------------------------------- defect 31


def test_ctrl_c_in_a_serial_chunk_restores_the_seed_and_progress_contexts() -> None:
    task = parallel(tasks.raise_keyboard_interrupt, backend="serial", seed=7)
    with pytest.raises(KeyboardInterrupt):
        task.map(range(3), chunksize=3)
    with pytest.raises(RuntimeError, match="seed"):
        parmap.item_rng()  # the interrupted chunk's item seed is gone
    from parmap import _reporting

    assert getattr(_reporting._current, "reporter", None) is None


@pytest.mark.parametrize("backend_name", ["serial", "thread"])
def test_seeded_maps_leave_the_callers_random_alone(backend_name: Literal["serial", "thread"]) -> None:
    random.seed(5)
    expected = random.Random(5).random()
    assert parallel(tasks.square, backend=backend_name, seed=1).map(range(4)) == [0, 1, 4, 9]
    assert random.random() == expected


# --------------------------------------------------------------------------- defect 23


def test_a_worker_drops_a_finished_chunks_items_at_once(process_backend: Decorate, tmp_path: Path) -> None:
    marker = tmp_path / "collected"
    task = process_backend(tasks.zero, workers=1)
    assert task.map([tasks.DropMarker(str(marker))]) == [0]
    wait_until(marker.exists, timeout=5.0)  # while the worker idles, not at its next chunk


def test_a_result_from_a_stranger_on_the_pipe_fails_loudly(process_backend: Decorate) -> None:
    """The manager checks the chunk id and the pid of every result: a frame written by
    another process (a task's forked child) stops the worker, and the item fails."""
    task = process_backend(tasks.forge_a_result)
    with pytest.raises(parmap.WorkerLostError, match="wrote to its pipe"):
        task.map([0])
    assert process_backend(tasks.square).map([3]) == [9]  # the pool healed


def test_function_whose_unpickling_kills_the_worker_fails_once(process_backend: Decorate) -> None:
    """Not a respawn loop: the job fails with SerializationError and the pool heals."""
    task = process_backend(tasks.KillsTheWorkerThatLoadsIt())
    with pytest.raises(SerializationError, match="died unpickling it"):
        task.map(range(4))
    assert process_backend(tasks.square).map([3]) == [9]


def test_the_manager_thread_shadows_nothing_of_threading_thread() -> None:
    # Python 3.13's Thread keeps its OS handle in `self._handle`: a manager method of that
    # name made every pool's manager fail. Only `run` is meant to override Thread.
    from parmap.backends.process import _Manager

    inherited = set(dir(threading.Thread()))
    own = {name for name in vars(_Manager) if not (name.startswith("__") and name.endswith("__"))}
    assert own & inherited == {"run"}


def test_a_function_left_loading_in_a_workers_inbox_is_not_blamed_on_the_next_job(tmp_path: Path) -> None:
    """Found under load. The one worker is busy; a job whose function kills its loader is
    queued behind, then cancelled (its chunk is withdrawn, its function stays in the inbox);
    the next job's chunk follows. The worker dies loading the first job's function: the
    next job must not be charged with it, and runs on the replacement."""
    waiting = parallel(tasks.wait_for_file, workers=1)
    busy = waiting.map_async([(str(tmp_path), 0)])
    wait_until((tmp_path / "started-0").exists)
    doomed = parallel(tasks.KillsTheWorkerThatLoadsIt(), workers=1).map_async([1])
    wait_until(lambda: any(w.held for w in process_pool_of(waiting)._manager._workers.values() if len(w.held) > 1))
    doomed.cancel()
    after = parallel(tasks.square, workers=1).map_async([3])
    (tmp_path / "go").touch()
    assert busy.get(timeout=20) == [0]
    assert after.get(timeout=20) == [9]
