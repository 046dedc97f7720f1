"""How many CPUs this process may use: the default worker count, container limits included.

A process may be held to fewer CPUs than the machine has in three ways, and the smallest
that applies wins:

* its **CPU affinity** (`taskset`, `docker --cpuset-cpus`, a batch scheduler's cpuset):
  the CPUs the kernel will run it on, `os.sched_getaffinity(0)`;
* a **CFS bandwidth quota** on its cgroup (`docker --cpus=1.5`, Kubernetes CPU limits):
  at most `quota / period` CPUs' worth of time, whatever the affinity. cgroup v2 writes it
  as `cpu.max` (`"150000 100000"`, or `"max 100000"` for no limit), cgroup v1 as
  `cpu.cfs_quota_us` (`-1` for no limit) over `cpu.cfs_period_us`. A quota is rounded up
  (1.5 CPUs run two workers, as loky and joblib count them): rounding down would leave
  half a CPU idle, and an extra worker over a fractional quota costs only a little
  throttling;
* `os.process_cpu_count()` (Python 3.13+), which also honours `PYTHON_CPU_COUNT` and
  `-X cpu_count`.

The process's own cgroup is found as the kernel tells it, not at a fixed path: its line in
`/proc/self/cgroup` (`0::/path` for v2; `N:cpu,cpuacct:/path` for v1), joined to the mount of
that hierarchy in `/proc/self/mountinfo` (a container's mount root is its own cgroup, so
the path is taken relative to it). Each level from that cgroup up to the mount's root may
carry a quota, and the tightest one binds, so every level is read.

Policy apart from mechanism: the parsers and [choose_cpu_count][] are pure functions over
file contents and counts, tested with made-up files; [cgroup_cpu_quota][] and
[available_cpus][] are the thin readers, with the roots to read as parameters (the real
ones by default) so that tests point them at a fake tree.

Cost: a pool's configuration is built once per decoration, never per item. A call of
[available_cpus][] reads `/proc/self/cgroup` and the quota files each time, so a limit
changed at run time (`docker update --cpus`) is seen by the next decoration: about 25 µs
for the cgroup part and 45 µs in all (minimum of 5 x 3,000 calls, Linux 6.x with cgroup v1
and the v2 hierarchy both mounted, 2 cores under load), which takes a decoration from 20 µs
to 75 µs. Parsing `/proc/self/mountinfo` is cached while the process stays in the same
cgroup (it took the call to about 300 µs), and the files are read with plain `os.read`.
"""

from __future__ import annotations

import math
import os
import posixpath
import re
from collections.abc import Callable, Sequence
from typing import NamedTuple, Optional

#: Where the kernel describes the calling process: `cgroup` and `mountinfo` under it.
PROC_SELF = "/proc/self"

#: The file-system root the mount points of `mountinfo` are read under (a test's fake tree).
FS_ROOT = "/"

#: The cgroup v2 file holding `"<quota> <period>"` in µs, or `"max <period>"` for no limit.
CPU_MAX = "cpu.max"

#: The cgroup v1 files of the CFS quota (`-1` for no limit) and its period, in µs.
CFS_QUOTA = "cpu.cfs_quota_us"
CFS_PERIOD = "cpu.cfs_period_us"

#: A file-reading function: the text of the file at a path, or `None` when it cannot be read.
Reader = Callable[[str], Optional[str]]

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


class CgroupMembership(NamedTuple):
    """One line of `/proc/self/cgroup`: a hierarchy, its controllers and the process's cgroup."""

    hierarchy: str
    controllers: tuple[str, ...]
    path: str

    @property
    def is_v2(self) -> bool:
        """The unified (v2) hierarchy's line: id `0`, no controllers listed."""
        return self.hierarchy == "0" and not self.controllers


class CgroupMount(NamedTuple):
    """A cgroup file-system mount from `/proc/self/mountinfo`."""

    #: The cgroup mounted there (`/` on the host; a container sees its own cgroup as `/`,
    #: or, without a cgroup namespace, as the mount's root `/docker/<id>`).
    root: str
    mount_point: str
    #: `cgroup2` or `cgroup`.
    fstype: str
    #: The super-block options: the v1 controllers (`rw,cpu,cpuacct`).
    options: tuple[str, ...]


def parse_proc_cgroup(text: str) -> list[CgroupMembership]:
    """The lines of `/proc/self/cgroup` (`hierarchy-id:controllers:path`); bad lines are skipped."""
    memberships = []
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        names = tuple(name for name in controllers.split(",") if name)
        memberships.append(CgroupMembership(hierarchy, names, path))
    return memberships


def parse_mountinfo(text: str) -> list[CgroupMount]:
    """The cgroup (v1 and v2) mounts among the lines of `/proc/self/mountinfo`.

    A line reads `id parent major:minor root mount-point options [optional...] - fstype
    source super-options` (proc(5)); spaces and other characters in paths are escaped as
    octal (`\\040`). Lines of other file systems, or malformed ones, are skipped.
    """
    mounts = []
    for line in text.splitlines():
        if " - cgroup" not in line:  # most lines: a cheap test before splitting
            continue
        fields = line.split()
        try:
            separator = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < separator + 4 or fields[separator + 1] not in ("cgroup", "cgroup2"):
            continue
        mounts.append(
            CgroupMount(
                root=_unescape(fields[3]),
                mount_point=_unescape(fields[4]),
                fstype=fields[separator + 1],
                options=tuple(fields[separator + 3].split(",")),
            )
        )
    return mounts


def _unescape(field: str) -> str:
    if "\\" not in field:
        return field
    return _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field)


def parse_cpu_max(text: str | None) -> float | None:
    """CPUs allowed by a cgroup v2 `cpu.max` (`"150000 100000"` -> 1.5); `None`: no limit.

    `"max ..."`, a missing file and an unreadable value all mean no limit.
    """
    if text is None:
        return None
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    period = parts[1] if len(parts) > 1 else "100000"  # the kernel's default period
    return _quota_over_period(parts[0], period)


def parse_cfs_quota(quota: str | None, period: str | None) -> float | None:
    """CPUs allowed by a cgroup v1 CFS quota and period (`-1` or a missing file: no limit)."""
    if quota is None or period is None:
        return None
    return _quota_over_period(quota.strip(), period.strip())


def _quota_over_period(quota: str, period: str) -> float | None:
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None
    if quota_us <= 0 or period_us <= 0:  # -1: no limit
        return None
    return quota_us / period_us


class CgroupHierarchy(NamedTuple):
    """Where to read one hierarchy's CPU quotas: the process's cgroup and its ancestors."""

    #: `True` for cgroup v2 (`cpu.max`), `False` for v1 (`cpu.cfs_quota_us`).
    v2: bool
    #: The cgroup's directory and its ancestors', innermost first, up to the mount point.
    directories: tuple[str, ...]


def cgroup_directories(memberships: Sequence[CgroupMembership], mounts: Sequence[CgroupMount]) -> list[CgroupHierarchy]:
    """The cgroup hierarchies that can limit this process's CPU time, and where to read them.

    The v2 hierarchy counts when mounted (its `cpu.max` files exist only where the `cpu`
    controller is enabled); a v1 hierarchy counts when it carries the `cpu` controller. A
    cgroup outside the mount's root (the process was moved out of a container's subtree)
    is read at the mount point only.
    """
    hierarchies = []
    for membership in memberships:
        for mount in mounts:
            if membership.is_v2:
                if mount.fstype != "cgroup2":
                    continue
            elif mount.fstype != "cgroup" or "cpu" not in membership.controllers or "cpu" not in mount.options:
                continue
            directories = _ancestors(mount.mount_point, mount.root, membership.path)
            hierarchies.append(CgroupHierarchy(membership.is_v2, tuple(directories)))
            break
    return hierarchies


def _ancestors(mount_point: str, root: str, path: str) -> list[str]:
    root = posixpath.normpath(root)
    path = posixpath.normpath(path)
    if path == root:
        relative = ""
    elif path.startswith(root.rstrip("/") + "/"):
        relative = path[len(root.rstrip("/")) + 1 :]
    else:
        return [mount_point]
    parts = [part for part in relative.split("/") if part]
    return [posixpath.join(mount_point, *parts[:depth]) for depth in range(len(parts), -1, -1)]


def cgroup_limit(hierarchies: Sequence[CgroupHierarchy], read: Reader) -> float | None:
    """The tightest CPU quota (in CPUs) over the cgroup directories given; `None`: no quota."""
    limits = []
    for hierarchy in hierarchies:
        for directory in hierarchy.directories:
            if hierarchy.v2:
                limit = parse_cpu_max(read(posixpath.join(directory, CPU_MAX)))
            else:
                limit = parse_cfs_quota(
                    read(posixpath.join(directory, CFS_QUOTA)), read(posixpath.join(directory, CFS_PERIOD))
                )
            if limit is not None:
                limits.append(limit)
    return min(limits, default=None)


def quota_to_workers(cpus: float) -> int:
    """Whole CPUs for a fractional quota: rounded up, at least one (see the module's docstring)."""
    return max(1, math.ceil(cpus))


def choose_cpu_count(
    *,
    cpu_count: int | None,
    affinity: int | None = None,
    process_cpu_count: int | None = None,
    cgroup_quota: float | None = None,
) -> int:
    """The smallest of the limits that apply (`None`: does not apply), at least one.

    `cpu_count` is the machine's count (`os.cpu_count()`), used only when nothing else applies.
    """
    counts = [count for count in (affinity, process_cpu_count) if count is not None and count >= 1]
    if cgroup_quota is not None:
        counts.append(quota_to_workers(cgroup_quota))
    if not counts:
        counts.append(cpu_count or 1)
    return max(1, min(counts))


#: Bytes asked of each `os.read` of a small kernel file (a cgroup file is a line; a host's
#: `mountinfo` may run to tens of kB, read in several).
_READ_SIZE = 65536


def _read_text(path: str) -> str | None:
    """The text of `path`, `None` when it cannot be read. Plain `os.read`: a third of the
    cost of `open()`'s buffered text file (4 µs against 11 µs a file, measured here)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        parts = []
        while True:
            part = os.read(fd, _READ_SIZE)
            if not part:
                break
            parts.append(part)
    except OSError:
        return None
    finally:
        os.close(fd)
    return b"".join(parts).decode("ascii", errors="replace")


#: The hierarchies last found, by the (`proc_self`, `fs_root`, `/proc/self/cgroup` text) they
#: were found from: the mounts are parsed again only when the process moved to another
#: cgroup (its `cgroup` file changed), which saves two thirds of a call (see the docstring).
_found: dict[tuple[str, str, str], list[CgroupHierarchy]] = {}


def cgroup_cpu_quota(proc_self: str = PROC_SELF, fs_root: str = FS_ROOT) -> float | None:
    """The CPU quota of this process's cgroups, in CPUs (`None`: none, or not Linux).

    Reads `proc_self`/`cgroup` and `proc_self`/`mountinfo`, then the quota files under
    `fs_root` joined with each mount point.
    """
    membership_text = _read_text(posixpath.join(proc_self, "cgroup"))
    if not membership_text:
        return None
    key = (proc_self, fs_root, membership_text)
    hierarchies = _found.get(key)
    if hierarchies is None:
        mounts = parse_mountinfo(_read_text(posixpath.join(proc_self, "mountinfo")) or "")
        hierarchies = cgroup_directories(parse_proc_cgroup(membership_text), mounts)
        _found.clear()  # one entry: the key changes only when the process changes cgroup
        _found[key] = hierarchies

    def read(path: str) -> str | None:
        return _read_text(posixpath.join(fs_root, path.lstrip("/")))

    return cgroup_limit(hierarchies, read)


def _affinity() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - platforms without affinity
        return None


def _process_cpu_count() -> int | None:
    counter: Callable[[], int | None] | None = getattr(os, "process_cpu_count", None)  # Python 3.13+
    return None if counter is None else counter()


def available_cpus(proc_self: str = PROC_SELF, fs_root: str = FS_ROOT) -> int:
    """The CPUs this process may use: the smallest of its affinity, its cgroups' CPU quota
    (rounded up) and `os.process_cpu_count()` where Python has it; at least one."""
    return choose_cpu_count(
        cpu_count=os.cpu_count(),
        affinity=_affinity(),
        process_cpu_count=_process_cpu_count(),
        cgroup_quota=cgroup_cpu_quota(proc_self, fs_root),
    )


def default_inner_threads(cpus: int, workers: int) -> int:
    """Native threads per worker process that keep `workers` processes within `cpus` CPUs:
    `cpus // workers`, at least one (joblib's and loky's default)."""
    return max(1, cpus // max(1, workers))
