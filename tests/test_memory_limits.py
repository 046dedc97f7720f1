"""Per-worker memory limits (`max_worker_memory=`, issue 12 point 6) and OOM-kill reports.

Faults come from the input: a task grows its worker's resident memory to a size the test
names (relative to the limit), and one that must be killed then sleeps far longer than the
test may run, so only the manager's memory check can end it. Limits are set above what the
test process itself uses, so a fresh worker (under fork, a copy of this process) starts
below them under every start method.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import parmap
from parmap import WorkerLostError, parallel
from parmap._config import MEMORY_UNITS, PoolConfig, parse_memory_size
from parmap.backends import _resources
from parmap.backends._resources import (
    Mount,
    OomCounter,
    oom_counter_paths,
    parse_cgroups,
    parse_mountinfo,
    parse_oom_kills,
    parse_statm_resident_pages,
    resident_bytes,
)
from parmap.backends.process import MEMORY_KILL_FACTOR, _describe_exit, format_bytes
from tests import tasks, tasks_memory
from tests.conftest import shutdown_promptly, wait_until

Decorate = Callable[..., Any]

MB = 10**6

linux_only = pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc")


def _limit() -> int:
    """A limit some 64 MB above this process's memory: fresh workers start below it."""
    own = resident_bytes()
    assert own is not None
    return own + 64 * MB


# --------------------------------------------------------------------------- the option


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, 1),
        (2_000_000_000, 2_000_000_000),
        ("2GB", 2 * 10**9),
        ("2 gb", 2 * 10**9),
        ("512 MB", 512 * 10**6),
        ("800M", 800 * 10**6),
        ("1.5GiB", int(1.5 * 2**30)),
        ("512MiB", 512 * 2**20),
        ("64kB", 64_000),
        ("64 KiB", 65_536),
        ("1T", 10**12),
        ("2e9", 2 * 10**9),
        ("1e3 kB", 10**6),
        ("4096", 4096),
        ("100B", 100),
    ],
)
def test_sizes_are_read_in_decimal_and_binary_units(value: object, expected: int) -> None:
    config = PoolConfig.build(
        backend="process", workers=1, start_method=None, initializer=None, initargs=(), max_worker_memory=value
    )
    assert config.max_worker_memory == expected


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (0, ValueError, "int of bytes >= 1"),
        (-5, ValueError, "int of bytes >= 1"),
        ("0 MB", ValueError, "at least one byte"),
        ("0.1", ValueError, "at least one byte"),
        ("2 GBs", ValueError, "got '2 GBs'"),
        ("lots", ValueError, "got 'lots'"),
        ("", ValueError, "got ''"),
        ("-1GB", ValueError, "got '-1GB'"),
        ("1e999", ValueError, "too large"),
        (1.5e9, TypeError, "got float"),
        (True, TypeError, "got bool"),
        ([1], TypeError, "got list"),
    ],
)
def test_bad_sizes_are_refused_at_decoration(value: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        parallel(tasks.square, max_worker_memory=value)  # type: ignore[call-overload]


@pytest.mark.parametrize("backend", ["thread", "serial"])
def test_thread_and_serial_backends_refuse_a_limit(backend: str) -> None:
    with pytest.raises(ValueError, match="share the caller's memory"):
        parallel(tasks.square, backend=backend, max_worker_memory="1GB")  # type: ignore[call-overload]
    assert parallel(tasks.square, backend=backend).map([1, 2]) == [1, 4]  # type: ignore[call-overload]


def test_dask_with_a_named_cluster_refuses_a_limit() -> None:
    with pytest.raises(ValueError, match="does not manage the workers"):
        parallel(tasks.square, backend="dask", address="tcp://127.0.0.1:1", max_worker_memory="1GB")


def test_units_table_has_decimal_and_binary_prefixes() -> None:
    assert MEMORY_UNITS["gb"] == MEMORY_UNITS["g"] == 10**9
    assert MEMORY_UNITS["gib"] == 2**30
    assert parse_memory_size("1 TiB") == 2**40


def test_pools_with_different_limits_are_different_pools() -> None:
    first = parallel(tasks.square, workers=1, max_worker_memory="1GB")
    second = parallel(tasks.square, workers=1, max_worker_memory="2GB")
    same = parallel(tasks.square, workers=1, max_worker_memory=10**9)
    assert first._self_config != second._self_config
    assert first._self_config == same._self_config
    assert hash(first._self_config) == hash(same._self_config)


def test_nested_process_map_inside_a_worker_keeps_working() -> None:
    """A process-backend map inside a worker becomes serial (no validation on that path)."""
    task = parallel(tasks.inner_sum, workers=1, max_worker_memory="4GB")
    assert task.map([3]) == [0 + 1 + 4]


# --------------------------------------------------------------------------- the readers (pure)


def test_statm_resident_pages() -> None:
    assert parse_statm_resident_pages("12345 678 90 1 0 300 0\n") == 678
    with pytest.raises(ValueError, match="statm"):
        parse_statm_resident_pages("12345")


@linux_only
def test_resident_bytes_of_self_and_of_another_process() -> None:
    own = resident_bytes()
    assert own is not None
    assert own > MB
    assert resident_bytes(os.getpid()) is not None
    assert resident_bytes(2**22 + 12345) is None  # no such process


def test_oom_kills_in_memory_events_oom_control_and_vmstat() -> None:
    events = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n"
    assert parse_oom_kills(events) == 2
    assert parse_oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n") == 7
    assert parse_oom_kills("nr_free_pages 1\noom_kill 41\n") == 41
    assert parse_oom_kills("oom_kill_disable 0\nunder_oom 0\n") is None
    assert parse_oom_kills("oom_kill many\n") is None


def test_proc_cgroup_lines() -> None:
    text = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/init.scope\n0::/user.slice/app\n"
    assert parse_cgroups(text) == [
        (frozenset({"memory"}), "/docker/abc"),
        (frozenset({"cpu", "cpuacct"}), "/docker/abc"),
        (frozenset({"name=systemd"}), "/init.scope"),
        (frozenset(), "/user.slice/app"),
    ]
    assert parse_cgroups("garbage\n") == []


MOUNTINFO = """\
22 1 0:21 / /proc rw,nosuid - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 /docker/abc /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
50 1 0:40 /docker/abc /mnt/my\\040cgroup rw - cgroup2 cgroup2 rw
"""


def test_mountinfo_cgroup_mounts() -> None:
    assert parse_mountinfo(MOUNTINFO) == [
        Mount("/sys/fs/cgroup/memory", "/", "cgroup", frozenset({"rw", "memory"})),
        Mount("/sys/fs/cgroup/cpu", "/docker/abc", "cgroup", frozenset({"rw", "cpu", "cpuacct"})),
        Mount("/sys/fs/cgroup/unified", "/", "cgroup2", frozenset()),
        Mount("/mnt/my cgroup", "/docker/abc", "cgroup2", frozenset()),
    ]


def test_counter_files_for_v1_v2_and_a_container_root() -> None:
    cgroups = parse_cgroups("4:memory:/kubepods/pod42\n3:cpu:/\n0::/docker/abc/app\n")
    assert oom_counter_paths(cgroups, parse_mountinfo(MOUNTINFO)) == [
        "/sys/fs/cgroup/memory/kubepods/pod42/memory.oom_control",
        "/sys/fs/cgroup/unified/docker/abc/app/memory.events",
        "/mnt/my cgroup/app/memory.events",  # the mount shows /docker/abc as its root
    ]
    pure_v2 = [Mount("/sys/fs/cgroup", "/", "cgroup2", frozenset())]
    assert oom_counter_paths(parse_cgroups("0::/\n"), pure_v2) == ["/sys/fs/cgroup/memory.events"]


def _counter_file(tmp_path: Path, name: str, count: int) -> str:
    path = tmp_path / name
    path.write_text(f"oom 0\noom_kill {count}\n")
    return str(path)


def test_oom_counter_claims_each_kill_once(tmp_path: Path) -> None:
    parent = _counter_file(tmp_path, "parent", 5)
    child = _counter_file(tmp_path, "child", 1)
    counter = OomCounter([parent, child, str(tmp_path / "unreadable")])
    assert counter.seen == {parent: 5, child: 1}
    assert not counter.claim()
    # Two kills in the child, counted in its parent too (v2 counts are hierarchical).
    _counter_file(tmp_path, "parent", 7)
    _counter_file(tmp_path, "child", 3)
    assert counter.claim()
    assert counter.claim()
    assert not counter.claim()  # a third SIGKILL is someone else's
    _counter_file(tmp_path, "child", 0)  # the cgroup was made again
    assert not counter.claim()
    assert counter.seen[child] == 0


def test_oom_counter_falls_back_to_vmstat(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    vmstat = _counter_file(tmp_path, "vmstat", 9)
    monkeypatch.setattr(_resources, "VMSTAT", vmstat)
    assert OomCounter([]).seen == {vmstat: 9}


def test_sigkill_descriptions() -> None:
    assert _describe_exit(-signal.SIGKILL, oom_killed=True) == "terminated by SIGKILL (killed by the OOM killer)"
    assert "terminated by SIGKILL (likely out of memory" in _describe_exit(-signal.SIGKILL)
    assert _describe_exit(-signal.SIGSEGV) == "terminated by SIGSEGV"
    assert _describe_exit(3) == "exit code 3"
    assert format_bytes(312_500_000) == "312.5 MB"
    assert format_bytes(999) == "999 B"


# --------------------------------------------------------------------------- the process backend


@linux_only
def test_worker_above_the_limit_after_a_chunk_is_replaced(process_backend: Decorate) -> None:
    limit = _limit()
    task = process_backend(tasks_memory.hold, workers=1, max_worker_memory=limit)
    [(_, first)] = task.map([(0, 0)])
    [(_, same)] = task.map([(1, limit - 16 * MB)])  # below the limit: the worker stays
    assert same == first
    results = task.map([(2, limit + 16 * MB)], stats=True)  # above it, not by far
    assert results == [(2, first)]
    assert results.stats.lost_workers == 0
    after = task.map([(3, 0), (4, 0)], chunksize=1)
    assert [x for x, _ in after] == [3, 4]
    assert {pid for _, pid in after} == {after[0][1]} != {first}


@linux_only
def test_worker_far_above_the_limit_mid_item_is_killed(process_backend: Decorate) -> None:
    limit = _limit()
    task = process_backend(tasks_memory.grow_then_wait, max_worker_memory=limit)
    far = int(limit * MEMORY_KILL_FACTOR) + 32 * MB
    results = task.map([(0, 0), (1, far), (2, 0), (3, 0)], chunksize=1, return_exceptions=True)
    assert results[0] == 0
    assert results[2:] == [2, 3]
    error = results[1]
    assert isinstance(error, WorkerLostError)
    assert "memory limit" in str(error)
    assert "item 1" in str(error)
    assert format_bytes(limit) in str(error)
    assert error.indices == [1]
    assert error.exitcode == -signal.SIGKILL
    assert task.map([(5, 0), (6, 0)]) == [5, 6]  # the pool is back to full strength


@linux_only
def test_memory_kill_in_a_chunk_of_several_items_blames_the_item(process_backend: Decorate) -> None:
    limit = _limit()
    far = int(limit * MEMORY_KILL_FACTOR) + 32 * MB
    task = process_backend(tasks_memory.grow_then_wait, workers=1, max_worker_memory=limit)
    with pytest.raises(WorkerLostError, match="memory limit") as info:
        task.map([(0, 0), (1, 0), (2, far), (3, 0)], chunksize=4)
    assert info.value.indices == [2]


@linux_only
def test_a_fresh_worker_above_the_limit_is_a_clear_error(process_backend: Decorate) -> None:
    task = process_backend(tasks.square, max_worker_memory="1MB")
    with pytest.raises(parmap.PoolStartError, match=r"fresh worker process .* above max_worker_memory=1.0 MB"):
        task.map([1, 2])
    assert parallel(tasks.square, workers=1).map([3]) == [9]  # other pools are unaffected


@linux_only
def test_memory_kill_is_retried(process_backend: Decorate, tmp_path: Path) -> None:
    limit = _limit()
    far = int(limit * MEMORY_KILL_FACTOR) + 32 * MB
    marker = str(tmp_path / "grew")
    task = process_backend(tasks_memory.grow_once_then_wait, max_worker_memory=limit)
    results = task.map([(x, far if x == 2 else 0, marker) for x in range(4)], chunksize=1, retries=1, stats=True)
    assert results == [0, 10, 20, 30]
    assert results.stats.retries == 1
    assert results.stats.lost_workers == 1
    assert Path(marker).exists()


@linux_only
def test_sigkill_not_sent_by_parmap_is_likely_out_of_memory(process_backend: Decorate, tmp_path: Path) -> None:
    task = process_backend(tasks.wait_for_file)
    result = task.map_async([(str(tmp_path), i) for i in range(2)], chunksize=1)
    wait_until((tmp_path / "started-0").exists)
    os.kill(int((tmp_path / "started-0").read_text()), signal.SIGKILL)  # nobody's OOM kill
    (tmp_path / "go").write_text("")
    with pytest.raises(WorkerLostError, match=r"terminated by SIGKILL \(likely out of memory") as info:
        result.get(timeout=20)
    assert "OOM killer" not in str(info.value)


@contextlib.contextmanager
def _memory_cgroup(limit: int) -> Iterator[str]:
    """A child memory cgroup (v1) of ours limited to `limit` bytes; yields its `cgroup.procs`.

    Skips where no v1 memory hierarchy can be written (not root, cgroup v2 only: a v2 child
    needs the memory controller delegated, which a process in a non-leaf cgroup cannot get).
    """
    v1 = [path for path in _resources.cgroup_counter_paths() if path.endswith("memory.oom_control")]
    if not v1:
        pytest.skip("no cgroup v1 memory hierarchy")
    child = Path(v1[0]).parent / f"parmap-test-{os.getpid()}"
    try:
        child.mkdir()
    except OSError as error:
        pytest.skip(f"cannot make a memory cgroup here: {error}")
    try:
        (child / "memory.limit_in_bytes").write_text(str(limit))
        swap = child / "memory.memsw.limit_in_bytes"
        if swap.exists():
            swap.write_text(str(limit))  # no swap: the limit ends in the OOM killer
        yield str(child / "cgroup.procs")
    finally:
        shutdown_promptly()  # its workers leave the cgroup by exiting
        wait_until(lambda: not (child / "cgroup.procs").read_text().strip(), timeout=10)
        child.rmdir()


@linux_only
def test_real_oom_kill_in_the_workers_cgroup_says_so(process_backend: Decorate) -> None:
    """The kernel's OOM killer, confined to a 64 MB cgroup the workers join: nothing else is at risk."""
    with _memory_cgroup(64 * MB) as procs:
        task = process_backend(
            tasks_memory.grow_then_wait, workers=1, initializer=tasks_memory.join_cgroup, initargs=(procs,)
        )
        target = tasks_memory.rss() + 160 * MB
        with pytest.raises(WorkerLostError, match=r"terminated by SIGKILL \(killed by the OOM killer\)"):
            task.map([(0, target)])
        assert task.map([(1, 0)]) == [1]  # the replacement works (in the cgroup too)


# --------------------------------------------------------------------------- Dask


def test_dask_with_a_current_client_refuses_a_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A current client's workers are not parmap's: the pool is refused before it connects."""
    distributed = pytest.importorskip("distributed")
    monkeypatch.setattr(distributed, "get_client", object)
    task = parallel(tasks.square, backend="dask", max_worker_memory="1GB")
    with pytest.raises(ValueError, match="a Dask client is current here"):
        task.map([1])


@pytest.mark.timeout(60)
def test_dask_local_cluster_gets_the_memory_limit() -> None:
    pytest.importorskip("distributed")
    task = parallel(tasks.square, backend="dask", workers=1, max_worker_memory="300MB")
    assert task.map([1, 2, 3]) == [1, 4, 9]
    pool = parmap._registry._pools[task._self_config]
    workers = pool.client.scheduler_info()["workers"]  # type: ignore[attr-defined]
    assert [info["memory_limit"] for info in workers.values()] == [300 * MB]
