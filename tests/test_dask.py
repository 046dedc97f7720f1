"""The Dask backend on real clusters (issue 5): a LocalCluster, and a scheduler + workers CLI.

Everything runs on 127.0.0.1 and nothing of Dask is mocked:

* ``local_client``: a ``LocalCluster`` of two process workers (module scope). Its scheduler
  treats one worker death as fatal for the tasks it held (``allowed-failures: 0``) and hands
  each worker one task at a time (``worker-saturation: 1.0``), so a crashing item becomes a
  :class:`~parmap.WorkerLostError` at once instead of after Dask's own three attempts.
* ``scheduler_cluster``: ``dask scheduler`` and two ``dask worker --no-nanny`` processes
  started as subprocesses on free ports (module scope), used through ``address=``.

Faults come from the input (``os._exit`` on one item) or from ``SIGKILL`` sent to the pid
a task reported while it waits for a file: never from timing. The leak check of
``conftest`` is replaced here by one that knows the clusters' own processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed")
import dask  # noqa: E402 - only once distributed is known to be installed

import parmap  # noqa: E402
from parmap import RemoteTraceback, TaskTimeoutError, WorkerLostError, parallel  # noqa: E402
from tests import tasks_pickling  # noqa: E402
from tests.conftest import (  # noqa: E402
    RecordingBar,
    _children,
    _is_zombie,
    shutdown_promptly,
    wait_until,
    worker_processes,
)
from tests.tasks import add, fail_on_three, pid_of, square, wait_for_file  # noqa: E402
from tests.tasks_insights import report_half_then_wait  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

#: Seconds a test waits for a cluster to come up or a result to arrive before failing.
WAIT_SECONDS = 30


# --------------------------------------------------------------------------- tasks
# Module level, so workers import them (as ``tests.test_dask``) instead of unpickling code;
# the shared ones (square, add, pid_of, fail_on_three, wait_for_file) come from ``tests.tasks``.


def exit_on_three(x: int) -> int:
    if x == 3:
        os._exit(1)
    return x


def fail_first_time(args: tuple[str, int]) -> int:
    """Raise ``OSError`` the first time an item runs (a marker file remembers it), then succeed."""
    directory, x = args
    marker = Path(directory, f"tried-{x}")
    if not marker.exists():
        marker.touch()
        raise OSError(f"transient failure of item {x}")
    return x


def lock_on_one(x: int) -> object:
    """Return something that cannot be pickled for item 1."""
    return threading.Lock() if x == 1 else x


def sleep_on(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@parallel(backend="dask", workers=2)
def nested_dask_inner(x: int) -> tuple[int, int]:
    return x * 10, os.getpid()


@parallel(workers=2)
def nested_process_inner(x: int) -> int:
    return x * 100


def nested_outer(x: int) -> tuple[int, int, bool]:
    """A task that maps two decorated functions itself: both run inline, in this process."""
    inner = nested_dask_inner.map(range(x))
    same_process = all(pid == os.getpid() for _, pid in inner)
    return sum(value for value, _ in inner), sum(nested_process_inner.map(range(x))), same_process


# --------------------------------------------------------------------------- clusters


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class SchedulerCluster:
    """``dask scheduler`` plus ``dask worker`` subprocesses; workers can be replaced after a kill."""

    def __init__(self, logs: Path, cwd: Path = ROOT, settings: dict[str, str] | None = None) -> None:
        self.logs = logs
        self.cwd = cwd
        self.address = f"tcp://127.0.0.1:{_free_port()}"
        self.env = {
            **os.environ,
            **(settings or {}),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        self.scheduler = self._launch(
            "scheduler",
            ["scheduler", "--host", "127.0.0.1", "--port", self.address.rsplit(":", 1)[1], "--no-dashboard"],
        )
        self.workers: list[subprocess.Popen[bytes]] = []
        self.client: Any = None

    def _launch(self, name: str, arguments: list[str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "dask", *arguments],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()

    def start_workers(self, count: int) -> None:
        for _ in range(count):
            number = len(self.workers)
            self.workers.append(
                self._launch(
                    f"worker-{number}",
                    [
                        "worker",
                        self.address,
                        "--host",
                        "127.0.0.1",
                        "--nthreads",
                        "1",
                        "--no-nanny",
                        "--no-dashboard",
                        "--name",
                        f"worker-{number}",
                        "--death-timeout",
                        "30",
                    ],
                )
            )

    def connect(self, workers: int) -> None:
        if self.client is None:
            self.client = distributed.Client(self.address, set_as_default=False, timeout=WAIT_SECONDS)
        self.client.wait_for_workers(workers, timeout=WAIT_SECONDS)

    def replace_dead_workers(self) -> None:
        """Start a worker for each one that exited, and wait until the scheduler has them all."""
        alive = [worker for worker in self.workers if worker.poll() is None]
        dead = len(self.workers) - len(alive)
        if dead:
            self.start_workers(dead)
            self.connect(len(alive) + dead)

    def pids(self) -> set[int]:
        return {process.pid for process in [self.scheduler, *self.workers] if process.poll() is None}

    def close(self) -> None:
        """Stop the workers, then the scheduler; whatever ignores SIGTERM for 5 s is killed."""
        if self.client is not None:
            self.client.close()
        for group in (self.workers, [self.scheduler]):
            for process in group:
                if process.poll() is None:
                    process.terminate()
            for process in group:
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)


_cluster_pids: list[Any] = []  # callables returning the pids the module's clusters own right now


@contextlib.contextmanager
def _running_cluster(logs: Path, workers: int, *, connect: bool = True, **options: Any) -> Iterator[SchedulerCluster]:
    """A `SchedulerCluster` with `workers` workers (waited for if `connect`), closed on the way out.

    Its processes are known to the leak check meanwhile; if the block fails, the cluster's
    logs are printed.
    """
    cluster = SchedulerCluster(logs, **options)
    _cluster_pids.append(cluster.pids)
    try:
        cluster.start_workers(workers)
        if connect:
            cluster.connect(workers)
        yield cluster
    except BaseException:
        for log in sorted(cluster.logs.glob("*.log")):
            sys.stderr.write(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}\n")
        raise
    finally:
        _cluster_pids.remove(cluster.pids)
        cluster.close()


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[Any]:
    with dask.config.set({"distributed.scheduler.allowed-failures": 0, "distributed.scheduler.worker-saturation": 1.0}):
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        )

    def pids() -> set[int]:
        return {nanny.pid for nanny in cluster.workers.values() if nanny.pid}

    _cluster_pids.append(pids)
    try:
        yield cluster
    finally:
        _cluster_pids.remove(pids)
        cluster.close()


@pytest.fixture(scope="module")
def local_client(local_cluster: Any) -> Iterator[Any]:
    client = distributed.Client(local_cluster, set_as_default=False)
    try:
        client.wait_for_workers(2, timeout=WAIT_SECONDS)
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def scheduler_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchedulerCluster]:
    with _running_cluster(tmp_path_factory.mktemp("dask-logs"), 2) as cluster:
        yield cluster


@pytest.fixture(params=["local-cluster", "scheduler-cli"])
def on_dask(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Decorator options for each cluster: ``client=`` a LocalCluster's, or ``address=`` a scheduler's."""
    if request.param == "local-cluster":
        return {"backend": "dask", "workers": 2, "client": request.getfixturevalue("local_client")}
    cluster: SchedulerCluster = request.getfixturevalue("scheduler_cluster")
    return {"backend": "dask", "workers": 2, "address": cluster.address}


def _owned_by_clusters() -> set[int]:
    owned: set[int] = set()
    for pids in _cluster_pids:
        pending = list(pids())
        while pending:
            pid = pending.pop()
            owned.add(pid)
            pending.extend(_children(pid))
    return owned


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    """After each test: shutdown is prompt and leaves no process but the clusters' own."""
    yield
    shutdown_promptly()

    def strays() -> list[int]:
        owned = _owned_by_clusters()
        return [pid for pid in worker_processes() if pid not in owned and not _is_zombie(pid)]

    wait_until(lambda: not strays(), timeout=10)


# --------------------------------------------------------------------------- the API on both clusters


def test_map_and_starmap(on_dask: dict[str, Any]) -> None:
    assert parallel(square, **on_dask).map(range(50)) == [x * x for x in range(50)]
    assert parallel(add, **on_dask).starmap([(1, 2), (3, 4), (5, 6)]) == [3, 7, 11]
    assert parallel(square, **on_dask).map([]) == []


def test_async_def_tasks_with_concurrency_and_awaited_maps(on_dask: dict[str, Any], tmp_path: Path) -> None:
    """Items await at once on a Dask worker's thread (a barrier of 4 needs them together)."""
    from tests import tasks_async

    assert parallel(tasks_async.double, concurrency=4, **on_dask).map(range(30)) == [2 * x for x in range(30)]
    barrier = parallel(tasks_async.barrier, concurrency=4, chunksize=4, **on_dask)
    assert barrier.map([(str(tmp_path), 4, x) for x in range(4)]) == [0, 1, 2, 3]

    async def main() -> tuple[list[int], list[int]]:
        awaited = await parallel(square, **on_dask).map_async(range(10))
        streamed = [value async for value in parallel(square, **on_dask).aimap(range(10))]
        return awaited, streamed

    assert asyncio.run(main()) == ([x * x for x in range(10)], [x * x for x in range(10)])


def test_imap_is_ordered_and_lazy(on_dask: dict[str, Any]) -> None:
    consumed: list[int] = []

    def source() -> Iterator[int]:
        for x in range(100_000):
            consumed.append(x)
            yield x

    results = parallel(square, **on_dask).imap(source(), chunksize=5)
    assert [next(results) for _ in range(20)] == [x * x for x in range(20)]
    assert len(consumed) < 500  # a bounded window of chunks ahead, not the whole input
    results.close()  # type: ignore[attr-defined]


def test_imap_unordered_yields_every_result(on_dask: dict[str, Any]) -> None:
    assert sorted(parallel(square, **on_dask).imap_unordered(range(40), chunksize=3)) == [x * x for x in range(40)]


def test_map_async_calls_back(on_dask: dict[str, Any]) -> None:
    got: list[list[int]] = []
    result = parallel(square, **on_dask).map_async(range(10), callback=got.append)
    assert result.get(timeout=WAIT_SECONDS) == [x * x for x in range(10)]
    wait_until(lambda: got == [[x * x for x in range(10)]])
    assert result.successful()

    failures: list[BaseException] = []
    failing = parallel(fail_on_three, **on_dask).map_async(range(10), error_callback=failures.append)
    with pytest.raises(ValueError, match="bad item 3"):
        failing.get(timeout=WAIT_SECONDS)
    wait_until(lambda: len(failures) == 1)
    assert isinstance(failures[0], ValueError)


def test_progress_bar_counts_items(on_dask: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert parallel(square, **on_dask).map(range(30), chunksize=4, progress=True) == [x * x for x in range(30)]
    assert "30/30" in capsys.readouterr().err


def test_report_progress_moves_the_bar_before_the_item_ends(
    on_dask: dict[str, Any], tmp_path: Path, bars: list[RecordingBar]
) -> None:
    task = parallel(report_half_then_wait, **on_dask)
    result = task.map_async([(str(tmp_path), 0)], progress=True, chunksize=1)
    wait_until(lambda: bool(bars) and bars[-1].n == 0.5, timeout=WAIT_SECONDS)
    assert not result.ready()  # the half came from inside the task, which waits for "go"
    (tmp_path / "go").write_text("")
    assert result.get(timeout=WAIT_SECONDS) == [0]
    assert bars[-1].n == 1


def test_chunksize_int_and_auto(on_dask: dict[str, Any]) -> None:
    task = parallel(square, **on_dask)
    assert task.map(range(20), chunksize=6, stats=True) == [x * x for x in range(20)]
    fixed = task.last_stats()
    assert fixed is not None
    assert sorted(fixed.chunk_sizes) == [2, 6, 6, 6]
    assert fixed.workers
    assert all(worker.worker.startswith("tcp://127.0.0.1:") for worker in fixed.workers)
    assert task.map(range(3000), stats=True) == [x * x for x in range(3000)]
    automatic = task.last_stats()
    assert automatic is not None
    assert automatic.chunks < 300  # tiny items are batched, not sent as one Dask task each


def test_error_keeps_type_remote_traceback_and_index(on_dask: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="bad item 3") as info:
        parallel(fail_on_three, **on_dask).map(range(8), chunksize=2)
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "fail_on_three" in str(cause)
    assert 'raise ValueError(f"bad item {x}")' in str(cause)
    assert "parmap: raised by the item at input index 3" in getattr(info.value, "__notes__", [])


def test_return_exceptions(on_dask: dict[str, Any]) -> None:
    results = parallel(fail_on_three, **on_dask).map(range(6), chunksize=2, return_exceptions=True)
    assert [r for i, r in enumerate(results) if i != 3] == [0, 1, 2, 4, 5]
    assert isinstance(results[3], ValueError)
    assert isinstance(results[3].__cause__, RemoteTraceback)


def test_retries_run_a_failed_item_again(on_dask: dict[str, Any], tmp_path: Path) -> None:
    items = [(str(tmp_path), x) for x in range(4)]
    with pytest.raises(OSError, match="transient failure"):
        parallel(fail_first_time, **on_dask).map(items)
    for marker in tmp_path.iterdir():
        marker.unlink()
    assert parallel(fail_first_time, **on_dask).map(items, retries=1, chunksize=2) == [0, 1, 2, 3]


# --------------------------------------------------------------------------- which cluster, nesting, options


def test_current_client_is_used_when_no_cluster_is_named(local_client: Any) -> None:
    task = parallel(pid_of, backend="dask", workers=2)
    with local_client.as_current():
        pids = set(task.map(range(8), chunksize=1))
    assert pids <= set(local_client.run(os.getpid).values())


def test_nested_maps_run_inline_in_the_task(local_client: Any) -> None:
    outer = parallel(nested_outer, backend="dask", client=local_client)
    assert outer.map([3, 4]) == [(30, 300, True), (60, 600, True)]


def test_initializer_runs_in_each_worker(local_client: Any) -> None:
    task = parallel(
        tasks_pickling.read_model,
        backend="dask",
        client=local_client,
        initializer=tasks_pickling.load,
        initargs=("ready",),
    )
    assert task.map(range(6), chunksize=1) == ["ready"] * 6


def test_shared_object_and_worker_state(on_dask: dict[str, Any]) -> None:
    """Issue 12 on Dask: `shared=` is scattered once to every worker; the state is per worker."""
    import numpy as np

    from tests import tasks_state

    table = np.arange(400_000, dtype=np.int64) * 2
    lookup = parallel(tasks_state.lookup, **on_dask)
    assert lookup.map([0, 5, 399_999], shared=table) == [0, 10, 799_998]
    assert lookup.map([1], shared=table) == [2]  # the same array: its broadcast copy is reused
    rows = {i: f"row {i}" for i in range(10)}
    assert parallel(tasks_state.lookup, **on_dask).map(range(3), shared=rows) == ["row 0", "row 1", "row 2"]
    counted = parallel(tasks_state.count_calls, chunksize=1, **on_dask)
    calls: dict[str, list[int]] = {}
    for worker, count, _ in counted.map(range(6)) + counted.map(range(6)):
        calls.setdefault(worker, []).append(count)
    # Each worker's count went up by one per item, across chunks and maps. In input order
    # they need not be sorted: Dask may run a worker's chunk of item 5 before that of item 4.
    for counts in calls.values():
        assert sorted(counts) == list(range(1, len(counts) + 1))
    filled = parallel(tasks_state.read_given, initializer=tasks_state.remember_in_state, initargs=(5,), **on_dask)
    assert filled.map(range(3)) == [5, 5, 5]


def test_timeout_is_reported_once_the_item_returns(local_client: Any) -> None:
    task = parallel(sleep_on, backend="dask", client=local_client)
    results = task.map([0.0, 0.5, 0.0], chunksize=1, timeout=0.2, return_exceptions=True)
    assert results[0] == 0.0
    assert results[2] == 0.0
    assert isinstance(results[1], TaskTimeoutError)


def test_what_cannot_be_pickled_fails_only_its_item(local_client: Any) -> None:
    identity: parmap.ParallelFunction[Any, Any] = parallel(abs, backend="dask", client=local_client)
    results = identity.map([1, threading.Lock(), -3], chunksize=3, return_exceptions=True)
    assert results[0] == 1
    assert results[2] == 3
    assert isinstance(results[1], parmap.SerializationError)
    returned = parallel(lock_on_one, backend="dask", client=local_client).map(
        [0, 1, 2], chunksize=3, return_exceptions=True
    )
    assert returned[0] == 0
    assert returned[2] == 2
    assert isinstance(returned[1], parmap.SerializationError)
    assert "could not be pickled" in str(returned[1])


# --------------------------------------------------------------------------- lost workers


@pytest.mark.timeout(90)
def test_crashing_item_is_a_worker_lost_error_and_the_pool_heals(local_client: Any) -> None:
    # A worker that dies may take the unsent result of the item it ran just before with it,
    # so Dask can report an innocent neighbour lost too: retries=2 clears those, while the
    # item that kills its worker every time stays a WorkerLostError.
    task = parallel(exit_on_three, backend="dask", client=local_client)
    results = task.map(range(6), chunksize=1, retries=2, return_exceptions=True)
    assert [result for index, result in enumerate(results) if index != 3] == [0, 1, 2, 4, 5]
    lost = results[3]
    assert isinstance(lost, WorkerLostError)
    assert "was lost: KilledWorker" in str(lost)
    assert lost.indices == [3]
    assert "parmap: raised by the item at input index 3" in getattr(lost, "__notes__", [])
    assert task.map([0, 1, 2]) == [0, 1, 2]  # the nanny restarted the worker
    local_client.wait_for_workers(2, timeout=WAIT_SECONDS)


@pytest.mark.timeout(90)
def test_killed_worker_process_gives_a_result_or_a_clear_error(
    scheduler_cluster: SchedulerCluster, tmp_path: Path
) -> None:
    task = parallel(wait_for_file, backend="dask", address=scheduler_cluster.address)
    pending = task.map_async([(str(tmp_path), 7)], chunksize=1)
    started = tmp_path / "started-7"
    wait_until(started.exists, timeout=WAIT_SECONDS)
    victim = int(started.read_text())
    assert victim in {worker.pid for worker in scheduler_cluster.workers}
    os.kill(victim, signal.SIGKILL)
    try:
        (tmp_path / "go").touch()
        outcome: object
        try:
            outcome = pending.get(timeout=WAIT_SECONDS)
        except WorkerLostError as error:
            outcome = error
        # Dask runs the task again on the other worker; had it given up, parmap would say so.
        assert outcome == [7] or (isinstance(outcome, WorkerLostError) and "was lost" in str(outcome)), outcome
    finally:
        scheduler_cluster.replace_dead_workers()


# --------------------------------------------------------------------------- imports and exit


def _run_python(code: str, timeout: float = 50) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_importing_parmap_does_not_import_dask() -> None:
    done = _run_python("""
        import sys
        import parmap
        task = parmap.parallel(abs, backend="dask", address="tcp://127.0.0.1:9")
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed")))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        ("distributed", "parmap-decorator[dask]"),
        # Issue 15: no TLS certificates, no implicit cluster (never one anybody could use).
        ("cryptography", "cryptography"),
    ],
)
def test_a_missing_dependency_says_what_to_install(missing: str, named: str) -> None:
    done = _run_python(f"""
        import sys
        sys.modules["{missing}"] = None  # as if it were not installed
        import parmap
        try:
            parmap.parallel(abs, backend="dask").map([1])
        except ImportError as error:
            print(error)
        else:
            sys.exit("no ImportError")
    """)
    assert done.returncode == 0, done.stderr
    assert named in done.stdout
    assert 'pip install "parmap-decorator[dask]"' in done.stdout


def test_a_closed_client_is_a_pool_start_error_naming_its_scheduler() -> None:
    with distributed.LocalCluster(
        n_workers=1, processes=False, dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}
    ) as cluster:
        client = distributed.Client(cluster, set_as_default=False)
        task = parallel(square, backend="dask", client=client)
        assert task.map([2]) == [4]
        client.close()
        named = re.escape(f"is closed (scheduler at {cluster.scheduler_address})")
        with pytest.raises(parmap.PoolStartError, match=named):
            task.map([3])
    assert parallel(square, backend="dask", workers=2).map([5]) == [25]  # other pools are unharmed


@pytest.mark.timeout(90)
def test_own_local_cluster_is_closed_at_exit() -> None:
    done = _run_python(
        """
        import os
        import parmap

        def pid_of(_):
            return os.getpid()

        if __name__ == "__main__":
            pids = set(parmap.parallel(pid_of, backend="dask", workers=2).map(range(8), chunksize=1))
            assert os.getpid() not in pids
            print(" ".join(map(str, sorted(pids))), flush=True)
    """,
        timeout=80,
    )
    assert done.returncode == 0, done.stderr
    # Nothing printed at exit: parmap's client closes before Dask's exit hooks close the
    # cluster (whose scheduler would warn that removing a worker lost tasks still wanted).
    assert done.stderr == ""
    pids = [int(pid) for pid in done.stdout.split()]
    assert pids

    def gone(pid: int) -> bool:
        return not Path(f"/proc/{pid}").exists() or _is_zombie(pid)

    wait_until(lambda: all(gone(pid) for pid in pids), timeout=10)


def test_threads_share_one_pool(local_client: Any) -> None:
    task = parallel(square, backend="dask", client=local_client)
    results: dict[int, list[int]] = {}

    def run(offset: int) -> None:
        results[offset] = task.map(range(offset, offset + 20), chunksize=3)

    threads = [threading.Thread(target=run, args=(offset,)) for offset in (0, 100, 200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT_SECONDS)
    assert results == {offset: [x * x for x in range(offset, offset + 20)] for offset in (0, 100, 200)}


@pytest.mark.timeout(90)
def test_lost_scheduler_fails_the_job(tmp_path: Path) -> None:
    with _running_cluster(tmp_path, 1) as cluster:
        try:
            task = parallel(wait_for_file, backend="dask", address=cluster.address)
            pending = task.map_async([(str(tmp_path), 1)])
            started = tmp_path / "started-1"
            wait_until(started.exists, timeout=WAIT_SECONDS)
            cluster.scheduler.kill()
            cluster.scheduler.wait(timeout=10)
            lost = f"lost the connection to the Dask scheduler at {re.escape(cluster.address)}"
            with pytest.raises(parmap.PoolClosedError, match=lost):
                pending.get(timeout=WAIT_SECONDS)
        finally:
            (tmp_path / "go").touch()  # lets the orphaned task end, so its worker stops at once


# --------------------------------------------------------------------------- the implicit cluster's security


def _listening_sockets(pids: set[int]) -> set[tuple[str, int]]:
    """(IPv4 or IPv6 address, port) of every TCP socket in LISTEN state that `pids` hold open."""
    inodes: set[str] = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:  # closed meanwhile
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    found: set[tuple[str, int]] = set()
    for table, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            address, port = local.split(":")
            raw = bytes.fromhex(address)
            # /proc prints each 32-bit word of the address in host (little-endian) order.
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, size, 4))
            found.add((socket.inet_ntop(socket.AF_INET if size == 4 else socket.AF_INET6, words), int(port, 16)))
    return found


async def _identity(address: str, **connection_args: Any) -> dict[str, Any]:
    """Ask the scheduler at `address` who it is, over a comm of our own (the first RPC a client makes)."""
    from distributed.comm.core import connect

    comm = await connect(address, timeout=5, **connection_args)  # type: ignore[no-untyped-call]
    try:
        await comm.write({"op": "identity", "reply": True})
        reply: dict[str, Any] = await comm.read()
        return reply
    finally:
        comm.abort()


@pytest.mark.timeout(120)
def test_implicit_local_cluster_is_tls_on_loopback_and_refuses_other_clients() -> None:
    """Issue 15: the LocalCluster parmap starts speaks TLS with its own temporary CA, on 127.0.0.1 only."""
    from distributed.security import Security

    before = _listening_sockets({os.getpid()})
    task = parallel(pid_of, backend="dask", workers=2)
    assert os.getpid() not in set(task.map(range(8), chunksize=1))  # parmap's own maps work
    (pool,) = [pool for config, pool in parmap._registry._pools.items() if config.backend == "dask"]
    client = pool.client  # type: ignore[attr-defined]
    address = client.scheduler.address
    assert address.startswith("tls://127.0.0.1:")
    workers = set(client.scheduler_info()["workers"])
    assert len(workers) == 2
    assert all(worker.startswith("tls://127.0.0.1:") for worker in workers)

    # Every socket the cluster listens on (scheduler, its HTTP server, workers, nannies) is loopback's.
    processes = set(client.run(os.getpid).values()) | set(client.run(os.getpid, nanny=True).values())
    listening = (_listening_sockets({os.getpid()}) - before) | _listening_sockets(processes)
    assert listening
    assert {host for host, _ in listening} == {"127.0.0.1"}, listening

    # A client without the cluster's credentials is refused: plain TCP, TLS with no
    # certificate, TLS with a certificate of another authority. With them, it is answered.
    # (Dask's error types differ by version and by how the connection fails: refused is what
    # counts.) Raw comms, not `Client`s: a Client that failed to connect may close itself from
    # the garbage collector inside the next Client's start, which deadlocks in Dask.
    port = address.rsplit(":", 1)[1]
    credentials = pool._cluster.security.get_connection_args("client")  # type: ignore[attr-defined]
    assert asyncio.run(_identity(address, **credentials))["address"] == address
    with pytest.raises(Exception):
        asyncio.run(_identity(f"tcp://127.0.0.1:{port}"))
    with pytest.raises(Exception):
        asyncio.run(_identity(address))
    stranger = Security.temporary().get_connection_args("client")  # type: ignore[no-untyped-call]
    with pytest.raises(Exception, match=r"(?i)certificate|ssl|tls"):
        asyncio.run(_identity(address, **stranger))
    # ... and the pool parmap uses is unharmed by them.
    assert parallel(square, backend="dask", workers=2).map(range(4)) == [0, 1, 4, 9]
    assert pool.usable


#: The program of the test below: it maps on `address=`, then, while one item waits for the
#: test's "go" file, the test kills the scheduler; the job, and a map after it, must fail
#: promptly with an error naming the address, and the program must end with nothing on stderr.
_SCHEDULER_GOES_AWAY = """
import sys, time
import parmap
from tests.tasks import square, wait_for_file

address, directory = sys.argv[1], sys.argv[2]
if __name__ == "__main__":
    print(parmap.parallel(square, backend="dask", address=address).map(range(6)), flush=True)
    pending = parmap.parallel(wait_for_file, backend="dask", address=address).map_async([(directory, 1)])
    for _ in range(2):  # the running job, then a map after the scheduler is gone
        started = time.monotonic()
        try:
            if pending is not None:
                pending.get(timeout=60)
            else:
                parmap.parallel(square, backend="dask", address=address).map(range(6))
        except parmap.ParmapError as error:
            print(f"{type(error).__name__} after {time.monotonic() - started:.1f} s: {error}", flush=True)
        pending = None
    # Another cluster afterwards: a client that failed to connect left nothing to get in its way.
    import distributed

    with distributed.LocalCluster(
        n_workers=1, processes=False, dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}
    ) as cluster:
        with distributed.Client(cluster) as client:
            print(parmap.parallel(square, backend="dask", client=client).map(range(3)), flush=True)
"""


@pytest.mark.timeout(120)
def test_scheduler_gone_fails_promptly_names_it_and_exits_quietly(tmp_path: Path) -> None:
    """Issue 15: no reconnect loop, no traceback at exit; both failures name the scheduler's address."""
    with _running_cluster(tmp_path, 1, connect=False) as cluster:
        try:
            program = subprocess.Popen(
                [sys.executable, "-c", _SCHEDULER_GOES_AWAY, cluster.address, str(tmp_path)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                wait_until((tmp_path / "started-1").exists, timeout=WAIT_SECONDS)
                cluster.scheduler.kill()
                cluster.scheduler.wait(timeout=10)
                stdout, stderr = program.communicate(timeout=60)
            finally:
                if program.poll() is None:
                    program.kill()
                    program.communicate()
            assert program.returncode == 0, stderr
            assert stderr == ""
            first, *failures = stdout.splitlines()
            assert first == str([x * x for x in range(6)])
            *failures, last = failures
            assert last == "[0, 1, 4]"
            assert len(failures) == 2, stdout
            running, later = failures
            assert running.startswith("PoolClosedError after ")
            assert later.startswith(("PoolStartError after ", "PoolClosedError after "))
            for line in failures:
                assert cluster.address in line
                seconds = float(line.split(" after ")[1].split(" s:")[0])
                assert seconds < 15  # promptly: not Dask's 30 s reconnect loop
        finally:
            (tmp_path / "go").touch()  # lets the orphaned task end, so its worker stops at once


# --------------------------------------------------------------------------- the user's own modules

#: A user's project: a script, a helper module next to it and a helper package, none installed.
_PROJECT = {
    "tasks.py": '''
import dataclasses

SCALE = 10
_model = None


@dataclasses.dataclass
class Point:
    x: int
    y: int


def scale(point: Point) -> Point:
    return Point(point.x * SCALE, point.y * SCALE)


def load_model(name: str) -> None:
    global _model
    _model = name


def read_model(_: object) -> object:
    return _model


def times_shared_x(i: int) -> int:
    import parmap

    point = parmap.shared()
    assert type(point) is Point
    return point.x * i
''',
    "helpers/__init__.py": "",
    "helpers/maths.py": '''
from . import constants


def triple(x: int) -> int:
    return x * constants.THREE
''',
    "helpers/constants.py": "THREE = 3\n",
    "main.py": '''
import sys

import parmap
import tasks
from helpers.maths import triple

if __name__ == "__main__":
    address = sys.argv[1]
    scaled = parmap.parallel(tasks.scale, backend="dask", address=address).map([tasks.Point(1, 2), tasks.Point(3, 4)])
    assert all(type(point) is tasks.Point for point in scaled), scaled  # the caller's own class again
    print([(point.x, point.y) for point in scaled])
    print(parmap.parallel(triple, backend="dask", address=address).map(range(4)))
    times_x = parmap.parallel(tasks.times_shared_x, backend="dask", address=address)
    print(times_x.map(range(3), shared=tasks.Point(5, 6)))
''',
}

#: A `tasks.py` of another version, where the workers run: it must not be used instead.
_STALE_TASKS = '''
import dataclasses

SCALE = -1


@dataclasses.dataclass
class Point:
    x: int
    y: int


def scale(point):
    return "the workers' own, older tasks.py"
'''


def _write_project(directory: Path) -> None:
    for name, text in _PROJECT.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.fixture(scope="module")
def elsewhere_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchedulerCluster]:
    """`dask scheduler` + two `dask worker`s started from a directory of their own, with a stale `tasks.py`."""
    directory = tmp_path_factory.mktemp("elsewhere")
    (directory / "tasks.py").write_text(_STALE_TASKS)
    with _running_cluster(tmp_path_factory.mktemp("elsewhere-logs"), 2, cwd=directory) as cluster:
        yield cluster


@pytest.mark.timeout(120)
@pytest.mark.parametrize("run_from", ["script-directory", "current-directory"])
def test_a_scripts_own_modules_are_shipped_to_a_separate_cluster(
    elsewhere_cluster: SchedulerCluster, tmp_path: Path, run_from: str
) -> None:
    """Issue 15: `tasks.py` and a package next to the script reach workers started elsewhere.

    The workers' directory holds an older `tasks.py`, importable there: parmap sees that its
    file differs from the caller's and uses the shipped copy (never the wrong module).
    """
    project = tmp_path / "project"
    _write_project(project)
    if run_from == "script-directory":  # python /path/to/main.py from some other directory
        cwd = tmp_path / "elsewhere"
        cwd.mkdir()
        command = [sys.executable, str(project / "main.py")]
    else:  # python -c "..." in the project's directory: the current directory decides
        command, cwd = [sys.executable, "-c", (project / "main.py").read_text()], project
    env = {**os.environ, "PYTHONPATH": str(project)}  # the caller imports them; the workers cannot
    done = subprocess.run(
        [*command, elsewhere_cluster.address], cwd=cwd, env=env, capture_output=True, text=True, timeout=90, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[(10, 20), (30, 40)]", "[0, 3, 6, 9]", "[0, 5, 10]"]
    assert done.stderr == ""


_EXPLICIT = '''
import sys

import parmap
import mytools

if __name__ == "__main__":
    address, ship = sys.argv[1], sys.argv[2] == "ship"
    options = {"ship_modules": [mytools]} if ship else {}
    try:
        print(parmap.parallel(mytools.halve, backend="dask", address=address, **options).map([2, 4]))
    except parmap.SerializationError as error:
        print(type(error).__name__, error, error.__cause__)
'''


@pytest.mark.timeout(120)
def test_ship_modules_sends_a_module_from_anywhere(elsewhere_cluster: SchedulerCluster, tmp_path: Path) -> None:
    """A module neither under the script's directory nor the current one travels when named."""
    library = tmp_path / "library"
    library.mkdir()
    (library / "mytools.py").write_text("def halve(x):\n    return x // 2\n")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": str(library)}
    outputs = {}
    for mode in ("ship", "plain"):
        done = subprocess.run(
            [sys.executable, "-c", _EXPLICIT, elsewhere_cluster.address, mode],
            check=False,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert done.returncode == 0, done.stderr
        outputs[mode] = done.stdout
    assert outputs["ship"] == "[1, 2]\n"
    assert outputs["plain"].startswith("SerializationError")
    assert "No module named 'mytools'" in outputs["plain"]
    assert "ship_modules=[...]" in outputs["plain"]  # the message says what to do


# --------------------------------------------------------------------------- a cluster's worker killed


@pytest.mark.timeout(150)
def test_sigkilled_dask_worker_is_a_retry_or_a_worker_lost_error_naming_the_item(tmp_path: Path) -> None:
    """Issue 15: a `dask worker` killed mid-map, on a scheduler that gives up at once (allowed-failures 0).

    Without retries the item is a `WorkerLostError` naming it; with `retries=1` parmap runs it
    again on the surviving worker and the map returns every result. Never a hang.
    """
    settings = {
        "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0",
        "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0",
    }
    with _running_cluster(tmp_path, 2, settings=settings) as cluster:
        task = parallel(wait_for_file, backend="dask", address=cluster.address)
        for retries, attempt in ((0, tmp_path / "without-retries"), (1, tmp_path / "with-retries")):
            attempt.mkdir()
            pending = task.map_async([(str(attempt), 7)], chunksize=1, retries=retries)
            started = attempt / "started-7"
            wait_until(started.exists, timeout=WAIT_SECONDS)
            victim = int(started.read_text())
            assert victim in {worker.pid for worker in cluster.workers}
            os.kill(victim, signal.SIGKILL)
            started.unlink()
            (attempt / "go").touch()  # a second attempt, if any, returns at once
            if retries == 0:
                with pytest.raises(WorkerLostError, match="was lost: KilledWorker") as info:
                    pending.get(timeout=WAIT_SECONDS)
                assert info.value.indices == [0]  # the input index of the item
                assert "item 0" in str(info.value)
            else:
                assert pending.get(timeout=WAIT_SECONDS) == [7]
                assert started.exists()  # it ran again, on the surviving worker
            cluster.replace_dead_workers()
