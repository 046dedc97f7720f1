"""The default worker count (affinity, cgroup quotas) and the native thread limit in workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import parmap
from parmap import _cpus
from parmap._config import PoolConfig, default_workers
from parmap.backends._inner_threads import (
    BLAS_VARIABLES,
    OPENMP_VARIABLES,
    InnerThreads,
    environment_for,
    native_pools_loaded,
    pool_limits_for,
)
from tests import tasks_cpus
from tests.conftest import StartMethod

V2_MOUNT = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
OTHER_MOUNTS = (
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    "23 22 0:21 / /sys rw,nosuid shared:2 - sysfs sysfs rw\n"
    "35 23 0:30 / /sys/fs/cgroup/memory rw,nosuid master:9 - cgroup cgroup rw,memory\n"
)


def fake_tree(tmp_path: Path, cgroup: str, mountinfo: str, files: dict[str, str]) -> tuple[str, str]:
    """A fake `/proc/self` and file-system root: returns (proc_self, fs_root) to read."""
    proc_self = tmp_path / "proc" / "self"
    proc_self.mkdir(parents=True)
    (proc_self / "cgroup").write_text(cgroup)
    (proc_self / "mountinfo").write_text(mountinfo)
    root = tmp_path / "root"
    for name, text in files.items():
        path = root / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    root.mkdir(exist_ok=True)
    return str(proc_self), str(root)


# ---------------------------------------------------------------- the parsers (pure)


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("max 100000\n", None),
        ("150000 100000\n", 1.5),
        ("200000 100000", 2.0),
        ("50000 100000", 0.5),
        ("300000", 3.0),  # no period: the kernel's default, 100 ms
        ("", None),
        ("garbage here", None),
        (None, None),  # a missing file
    ],
)
def test_cpu_max_parsing(text: str | None, cpus: float | None) -> None:
    assert _cpus.parse_cpu_max(text) == cpus


@pytest.mark.parametrize(
    ("quota", "period", "cpus"),
    [
        ("-1\n", "100000\n", None),
        ("250000\n", "100000\n", 2.5),
        ("100000", "100000", 1.0),
        (None, "100000", None),
        ("100000", None, None),
        ("x", "100000", None),
        ("100000", "0", None),
    ],
)
def test_cfs_quota_parsing(quota: str | None, period: str | None, cpus: float | None) -> None:
    assert _cpus.parse_cfs_quota(quota, period) == cpus


@pytest.mark.parametrize(("cpus", "workers"), [(0.1, 1), (0.5, 1), (1.0, 1), (1.5, 2), (2.0, 2), (2.01, 3)])
def test_a_quota_is_rounded_up_to_at_least_one(cpus: float, workers: int) -> None:
    assert _cpus.quota_to_workers(cpus) == workers


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({"cpu_count": 64}, 64),
        ({"cpu_count": None}, 1),
        ({"cpu_count": 64, "affinity": 8}, 8),
        ({"cpu_count": 64, "affinity": 8, "cgroup_quota": 1.5}, 2),
        ({"cpu_count": 64, "affinity": 2, "cgroup_quota": 6.0}, 2),
        ({"cpu_count": 64, "affinity": 8, "process_cpu_count": 3}, 3),
        ({"cpu_count": 64, "cgroup_quota": 0.2}, 1),
    ],
)
def test_the_smallest_limit_wins(counts: dict[str, Any], expected: int) -> None:
    assert _cpus.choose_cpu_count(**counts) == expected


def test_proc_cgroup_and_mountinfo_parsing() -> None:
    memberships = _cpus.parse_proc_cgroup("12:cpu,cpuacct:/docker/abc\n0::/user.slice\nnot a line\n")
    assert memberships == [
        _cpus.CgroupMembership("12", ("cpu", "cpuacct"), "/docker/abc"),
        _cpus.CgroupMembership("0", (), "/user.slice"),
    ]
    assert [m.is_v2 for m in memberships] == [False, True]
    mounts = _cpus.parse_mountinfo(
        OTHER_MOUNTS
        + V2_MOUNT
        + "40 31 0:38 /a\\040b /sys/fs/cgroup/my\\040cpu rw - cgroup cgroup rw,cpu\nshort line\n"
    )
    assert [(m.root, m.mount_point, m.fstype) for m in mounts] == [
        ("/", "/sys/fs/cgroup/memory", "cgroup"),
        ("/", "/sys/fs/cgroup", "cgroup2"),
        ("/a b", "/sys/fs/cgroup/my cpu", "cgroup"),  # octal escapes decoded
    ]
    assert mounts[2].options == ("rw", "cpu")


# ---------------------------------------------------------------- fake cgroup trees


def test_cgroup_v2_in_a_container(tmp_path: Path) -> None:
    """A container's own cgroup is `/` in its namespace, at the mount point itself."""
    proc, root = fake_tree(tmp_path, "0::/\n", OTHER_MOUNTS + V2_MOUNT, {"/sys/fs/cgroup/cpu.max": "150000 100000\n"})
    assert _cpus.cgroup_cpu_quota(proc, root) == 1.5
    assert _cpus.available_cpus(proc, root) == min(2, _cpus.available_cpus(str(tmp_path / "none"), root))


def test_cgroup_v2_without_a_limit(tmp_path: Path) -> None:
    proc, root = fake_tree(tmp_path, "0::/\n", V2_MOUNT, {"/sys/fs/cgroup/cpu.max": "max 100000\n"})
    assert _cpus.cgroup_cpu_quota(proc, root) is None


def test_cgroup_v2_nested_the_tightest_ancestor_binds(tmp_path: Path) -> None:
    """A limit on an ancestor cgroup holds for all below it: every level is read."""
    proc, root = fake_tree(
        tmp_path,
        "0::/user.slice/app.scope/job\n",
        V2_MOUNT,
        {
            "/sys/fs/cgroup/user.slice/cpu.max": "100000 100000\n",
            "/sys/fs/cgroup/user.slice/app.scope/cpu.max": "max 100000\n",
            "/sys/fs/cgroup/user.slice/app.scope/job/cpu.max": "300000 100000\n",
        },
    )
    assert _cpus.cgroup_cpu_quota(proc, root) == 1.0


def test_cgroup_v2_files_missing_mean_no_limit(tmp_path: Path) -> None:
    """Without the cpu controller enabled, no cpu.max exists anywhere (a hybrid host)."""
    proc, root = fake_tree(tmp_path, "0::/some/where\n", V2_MOUNT, {})
    assert _cpus.cgroup_cpu_quota(proc, root) is None


def test_no_proc_files_mean_no_limit(tmp_path: Path) -> None:
    assert _cpus.cgroup_cpu_quota(str(tmp_path / "missing"), str(tmp_path)) is None
    proc, root = fake_tree(tmp_path, "0::/\n", "", {"/sys/fs/cgroup/cpu.max": "100000 100000\n"})
    assert _cpus.cgroup_cpu_quota(proc, root) is None  # no cgroup mount: nothing to read


def test_cgroup_v1_quota_in_a_docker_container(tmp_path: Path) -> None:
    """cgroup v1 without a cgroup namespace: the mount's root is the container's cgroup."""
    mount = "32 31 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw,nosuid master:12 - cgroup cgroup rw,cpu,cpuacct\n"
    proc, root = fake_tree(
        tmp_path,
        "12:cpu,cpuacct:/docker/abc\n11:memory:/docker/abc\n",
        OTHER_MOUNTS + mount,
        {
            "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "200000\n",
            "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        },
    )
    assert _cpus.cgroup_cpu_quota(proc, root) == 2.0


def test_cgroup_v1_nested_on_the_host_and_quota_minus_one(tmp_path: Path) -> None:
    mount = "32 31 0:29 / /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu\n"
    files = {
        "/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n",
        "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
        "/sys/fs/cgroup/cpu/batch/cpu.cfs_quota_us": "50000\n",
        "/sys/fs/cgroup/cpu/batch/cpu.cfs_period_us": "100000\n",
        "/sys/fs/cgroup/cpu/batch/job7/cpu.cfs_quota_us": "-1\n",
        "/sys/fs/cgroup/cpu/batch/job7/cpu.cfs_period_us": "100000\n",
    }
    proc, root = fake_tree(tmp_path, "3:cpu:/batch/job7\n", mount, files)
    assert _cpus.cgroup_cpu_quota(proc, root) == 0.5
    assert _cpus.available_cpus(proc, root) == 1


def test_cgroup_v1_quota_minus_one_everywhere(tmp_path: Path) -> None:
    mount = "32 31 0:29 / /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu\n"
    files = {"/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n", "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"}
    proc, root = fake_tree(tmp_path, "3:cpu:/\n", mount, files)
    assert _cpus.cgroup_cpu_quota(proc, root) is None


def test_a_cgroup_outside_the_mount_root_reads_the_mount_point(tmp_path: Path) -> None:
    mount = "30 23 0:26 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    proc, root = fake_tree(tmp_path, "0::/../elsewhere\n", mount, {"/sys/fs/cgroup/cpu.max": "400000 100000\n"})
    assert _cpus.cgroup_cpu_quota(proc, root) == 4.0


def test_a_v1_hierarchy_without_the_cpu_controller_is_not_read(tmp_path: Path) -> None:
    files = {
        "/sys/fs/cgroup/memory/cpu.cfs_quota_us": "100000\n",
        "/sys/fs/cgroup/memory/cpu.cfs_period_us": "100000\n",
    }
    proc, root = fake_tree(tmp_path, "11:memory:/\n", OTHER_MOUNTS, files)
    assert _cpus.cgroup_cpu_quota(proc, root) is None


def test_moving_to_another_cgroup_is_seen(tmp_path: Path) -> None:
    """The parsed mounts are reused only while /proc/self/cgroup reads the same."""
    files = {"/sys/fs/cgroup/a/cpu.max": "100000 100000\n", "/sys/fs/cgroup/b/cpu.max": "300000 100000\n"}
    proc, root = fake_tree(tmp_path, "0::/a\n", V2_MOUNT, files)
    assert _cpus.cgroup_cpu_quota(proc, root) == 1.0
    Path(proc, "cgroup").write_text("0::/b\n")
    assert _cpus.cgroup_cpu_quota(proc, root) == 3.0
    Path(root, "sys/fs/cgroup/b/cpu.max").write_text("200000 100000\n")  # a limit changed at run time
    assert _cpus.cgroup_cpu_quota(proc, root) == 2.0


# ---------------------------------------------------------------- this process


def test_default_workers_is_public_and_within_the_affinity() -> None:
    assert parmap.default_workers is default_workers
    assert "default_workers" in parmap.__all__
    assert 1 <= parmap.default_workers() <= len(os.sched_getaffinity(0))


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")
def test_default_workers_follows_the_affinity() -> None:
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})
        assert parmap.default_workers() == 1
        assert (
            PoolConfig.build(backend="process", workers=None, start_method=None, initializer=None, initargs=()).workers
            == 1
        )
    finally:
        os.sched_setaffinity(0, before)


# ---------------------------------------------------------------- the thread limit: policy


@pytest.mark.parametrize(("cpus", "workers", "threads"), [(8, 2, 4), (8, 3, 2), (2, 2, 1), (2, 4, 1), (1, 1, 1)])
def test_default_inner_threads(cpus: int, workers: int, threads: int) -> None:
    assert _cpus.default_inner_threads(cpus, workers) == threads


def test_the_default_keeps_the_users_variables_an_explicit_limit_overrides_them() -> None:
    user = {"OMP_NUM_THREADS": "4", "ENABLE_IPC": "0"}
    default = environment_for(InnerThreads(2, explicit=False), user)
    assert "OMP_NUM_THREADS" not in default
    assert "ENABLE_IPC" not in default
    assert default["OPENBLAS_NUM_THREADS"] == default["MKL_NUM_THREADS"] == "2"
    explicit = environment_for(InnerThreads(3, explicit=True), user)
    assert explicit["OMP_NUM_THREADS"] == explicit["NUMEXPR_NUM_THREADS"] == "3"
    assert "ENABLE_IPC" not in explicit  # TBB's switch is the user's when set
    assert environment_for(InnerThreads(1, explicit=False), {})["ENABLE_IPC"] == "1"


def test_loaded_pools_follow_the_same_rule_by_kind() -> None:
    assert pool_limits_for(InnerThreads(2, explicit=False), {}) == {"blas": 2, "openmp": 2}
    assert pool_limits_for(InnerThreads(2, explicit=False), {"OMP_NUM_THREADS": "4"}) == {"blas": 2}
    assert pool_limits_for(InnerThreads(2, explicit=False), {"MKL_NUM_THREADS": "4"}) == {"openmp": 2}
    assert pool_limits_for(InnerThreads(2, explicit=True), {"OMP_NUM_THREADS": "4"}) == {"blas": 2, "openmp": 2}


def test_native_pools_are_seen_in_the_memory_map_or_the_modules() -> None:
    openblas = "7f00-7f01 r-xp 0 08:01 1 /venv/numpy.libs/libscipy_openblas64_-4b78795a.so\n"
    assert native_pools_loaded(openblas, [])
    assert native_pools_loaded("7f00-7f01 r-xp 0 08:01 1 /usr/lib/libgomp.so.1\n", [])
    assert not native_pools_loaded("7f00-7f01 r-xp 0 08:01 1 /usr/lib/libc.so.6\n", ["numpy"])
    assert native_pools_loaded(None, ["sys", "numpy"])
    assert not native_pools_loaded(None, ["sys", "json"])


# ---------------------------------------------------------------- the option


def build(**options: Any) -> PoolConfig:
    settings: dict[str, Any] = {"backend": "process", "workers": 2, "start_method": None, "initializer": None}
    settings.update(options)
    return PoolConfig.build(initargs=(), **settings)


def test_inner_threads_values() -> None:
    default = build()
    assert (default.inner_threads, default.inner_threads_explicit) == (max(1, default_workers() // 2), False)
    assert build(inner_threads="auto") == default
    assert (build(inner_threads=3).inner_threads, build(inner_threads=3).inner_threads_explicit) == (3, True)
    assert build(inner_threads=None).inner_threads is None
    assert build(inner_threads=3) != default  # another pool
    for backend in ("thread", "serial"):  # they share the caller's process: left alone
        assert build(backend=backend, inner_threads=3).inner_threads is None


@pytest.mark.parametrize(
    ("value", "error"),
    [(0, ValueError), (-2, ValueError), ("many", ValueError), (1.5, TypeError), (True, TypeError), ([2], TypeError)],
)
def test_inner_threads_validation(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="inner_threads must be"):
        build(inner_threads=value)
    with pytest.raises(error, match="inner_threads must be"):
        parmap.parallel(inner_threads=value)(tasks_cpus.thread_environment)  # type: ignore[call-overload]


# ---------------------------------------------------------------- what a worker sees


def expected_environment(limit: int, *, explicit: bool) -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in tasks_cpus.NAMES} | environment_for(
        InnerThreads(limit, explicit), os.environ
    )


START_METHODS: list[StartMethod] = ["fork", "spawn", "forkserver"]


@pytest.mark.parametrize("start_method", START_METHODS)
def test_a_worker_sees_the_limit_in_its_environment(start_method: StartMethod) -> None:
    default = parmap.parallel(tasks_cpus.thread_environment, workers=2, start_method=start_method)
    limit = max(1, default_workers() // 2)
    assert default.map([0, 1]) == [expected_environment(limit, explicit=False)] * 2
    explicit = parmap.parallel(tasks_cpus.thread_environment, workers=2, start_method=start_method, inner_threads=3)
    assert explicit.map([0]) == [expected_environment(3, explicit=True)]
    untouched = parmap.parallel(tasks_cpus.thread_environment, workers=2, start_method=start_method, inner_threads=None)
    assert untouched.map([0]) == [{name: os.environ.get(name) for name in tasks_cpus.NAMES}]


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_a_variable_the_user_set_is_kept_unless_inner_threads_is_given(
    start_method: StartMethod, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    default = parmap.parallel(tasks_cpus.thread_environment, workers=2, start_method=start_method)
    seen = default.map([0])[0]
    assert seen["OMP_NUM_THREADS"] == "7"
    assert seen["MKL_NUM_THREADS"] == str(max(1, default_workers() // 2))
    explicit = parmap.parallel(tasks_cpus.thread_environment, workers=2, start_method=start_method, inner_threads=1)
    assert explicit.map([0])[0]["OMP_NUM_THREADS"] == "1"


def test_threads_and_serial_leave_the_environment_alone() -> None:
    here = {name: os.environ.get(name) for name in tasks_cpus.NAMES}
    for backend in ("thread", "serial"):
        task = parmap.parallel(tasks_cpus.thread_environment, workers=2, backend=backend, inner_threads=1)
        assert task.map([0]) == [here]


def _parent_blas_threads() -> list[int]:
    """The BLAS pools of this process, NumPy's loaded; skips where threadpoolctl sees none."""
    pytest.importorskip("numpy")
    threadpoolctl = pytest.importorskip("threadpoolctl")
    counts = [pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]
    if not counts:
        pytest.skip("threadpoolctl detects no BLAS library in NumPy here")
    return counts


@pytest.mark.parametrize("start_method", ["fork", "forkserver"])
def test_loaded_blas_pools_are_limited_in_the_worker(
    start_method: StartMethod, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under fork the worker inherits NumPy's started BLAS from this process: threadpoolctl
    limits it there (under forkserver NumPy is loaded by the task, after the environment is
    set)."""
    parent = _parent_blas_threads()
    user_set = [name for name in (*BLAS_VARIABLES, *OPENMP_VARIABLES) if name in os.environ]
    if start_method == "forkserver" and user_set:
        # The server keeps the environment it started with: it cannot be unset for one test.
        pytest.skip(f"{', '.join(user_set)} set in the environment: kept by the default")
    for name in user_set:
        monkeypatch.delenv(name)
    cpus = default_workers()
    one_each = parmap.parallel(tasks_cpus.blas_threads, workers=cpus, start_method=start_method)
    assert one_each.map([0]) == [[1] * len(parent)]
    given = parmap.parallel(tasks_cpus.blas_threads, workers=cpus, start_method=start_method, inner_threads=1)
    assert given.map([0]) == [[1] * len(parent)]


def test_inner_threads_none_leaves_the_inherited_pools_alone() -> None:
    parent = _parent_blas_threads()
    task = parmap.parallel(tasks_cpus.blas_threads, workers=default_workers(), start_method="fork", inner_threads=None)
    assert task.map([0]) == [parent]


# ---------------------------------------------------------------- the benchmark


def test_the_inner_threads_benchmark_writes_well_formed_reports(tmp_path: Path) -> None:
    """``python -m benchmarks.inner_threads`` at a toy size: every contender has a median and
    the BLAS threads it saw, every ratio a value."""
    for module in ("numpy", "joblib", "threadpoolctl"):
        pytest.importorskip(module)
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "benchmarks.inner_threads", "--rounds", "1", "--scale", "0.05"]
    completed = subprocess.run(
        [*command, "--output-dir", str(tmp_path)], cwd=root, capture_output=True, text=True, timeout=50, check=False
    )
    assert completed.returncode == 0, completed.stderr
    data = json.loads((tmp_path / "benchmarks-inner-threads.json").read_text())
    rows = {row["name"]: row for row in data["results"]}
    assert set(rows) == {"parmap default", "parmap inner_threads=None", "joblib (loky)", "in-process loop"}
    for row in rows.values():
        assert row["status"] == "ok", row["reason"]
        assert 0 < row["min"] <= row["median"] <= row["max"]
    assert all(entry["ratio"] > 0 for entry in data["ratios"])
    assert "| parmap default |" in (tmp_path / "benchmarks-inner-threads.md").read_text()
