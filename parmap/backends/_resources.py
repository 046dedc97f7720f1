"""What a worker process uses, read from the kernel: its resident memory and OOM kills.

Two readers serve `max_worker_memory=`:

* [resident_bytes][] reads a process's resident set size from `/proc/<pid>/statm`
  (resident pages times the page size). It reads counters the kernel keeps per process,
  without taking the target's memory-map lock, so the manager thread can read a busy
  worker's memory without ever waiting on it (about 15 µs a read, measured with both
  cores busy); a worker reads its own after each chunk.
* [OomCounter][] tells whether the kernel's OOM killer killed a process of ours: it reads
  the `oom_kill` counter of the cgroups the pool's processes live in (cgroup v2
  `memory.events`, cgroup v1 `memory.oom_control`; `/proc/vmstat`'s machine-wide counter
  where no cgroup file can be read) and compares it with the value it last saw.

The parsers (`parse_*`, [oom_counter_paths][]) are pure functions of the files' text; only
[resident_bytes][], [read_oom_kills][], [cgroup_counter_paths][] and [OomCounter][] touch
the file system (procfs and cgroupfs reads, which never wait on another process).

This module must stay light: a worker imports it (only `os`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

__all__ = [
    "Mount",
    "OomCounter",
    "cgroup_counter_paths",
    "oom_counter_paths",
    "parse_cgroups",
    "parse_mountinfo",
    "parse_oom_kills",
    "parse_statm_resident_pages",
    "read_oom_kills",
    "resident_bytes",
]

#: Bytes per page, for the page counts of `statm`.
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

#: The machine-wide OOM-kill counter (Linux 4.13+), used where no cgroup counter is readable.
VMSTAT = "/proc/vmstat"


# --------------------------------------------------------------------------- resident memory


def parse_statm_resident_pages(text: str) -> int:
    """The resident pages in the text of `/proc/<pid>/statm` (its second field).

    Raises:
        ValueError: the text is not `statm`'s (fewer than two fields, or not numbers).
    """
    fields = text.split()
    if len(fields) < 2:
        raise ValueError(f"not the text of /proc/<pid>/statm: {text!r}")
    return int(fields[1])


def resident_bytes(pid: int | None = None) -> int | None:
    """The resident set size of process `pid` (this process when `None`), in bytes.

    `None` where it cannot be read: the process is gone, or the system has no
    `/proc/<pid>/statm` (not Linux).
    """
    path = "/proc/self/statm" if pid is None else f"/proc/{pid}/statm"
    try:
        with open(path, "rb") as file:
            text = file.read().decode("ascii")
        return parse_statm_resident_pages(text) * PAGE_SIZE
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- OOM kills


class Mount(NamedTuple):
    """One cgroup file system mount of `/proc/self/mountinfo`."""

    mount_point: str
    #: The cgroup path that appears at `mount_point` (`/` unless a container mounts a subtree).
    root: str
    #: `"cgroup2"` or `"cgroup"` (v1).
    fstype: str
    #: v1: the controllers this hierarchy carries (`{"memory"}`); v2: empty.
    controllers: frozenset[str]


def parse_cgroups(text: str) -> list[tuple[frozenset[str], str]]:
    """`(controllers, path)` of each line of `/proc/<pid>/cgroup` (`ID:CONTROLLERS:PATH`).

    The cgroup v2 line, `0::/path`, has no controllers (an empty set); a v1 line lists its
    hierarchy's, e.g. `4:memory:/docker/abc` gives `({"memory"}, "/docker/abc")`. Lines
    that do not have three fields are skipped.
    """
    found: list[tuple[frozenset[str], str]] = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        found.append((frozenset(c for c in controllers.split(",") if c), path))
    return found


def parse_mountinfo(text: str) -> list[Mount]:
    """The cgroup (v1 and v2) mounts in the text of `/proc/<pid>/mountinfo`.

    A line is `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE
    SUPER_OPTIONS`; a v1 hierarchy names its controllers among its super options.
    """
    mounts: list[Mount] = []
    for line in text.splitlines():
        before, separator, after = line.partition(" - ")
        if not separator:
            continue
        fields, tail = before.split(), after.split()
        if len(fields) < 5 or len(tail) < 1:
            continue
        fstype = tail[0]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        options = frozenset(tail[2].split(",")) if len(tail) > 2 and fstype == "cgroup" else frozenset()
        mounts.append(Mount(_unescape(fields[4]), _unescape(fields[3]), fstype, options))
    return mounts


def _unescape(field: str) -> str:
    """mountinfo writes a space, tab, newline or backslash in a path as an octal escape."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def oom_counter_paths(cgroups: Iterable[tuple[frozenset[str], str]], mounts: Sequence[Mount]) -> list[str]:
    """The files holding the OOM-kill counters of the given cgroups, where they are mounted.

    cgroup v2: `<mount>/<path>/memory.events`; cgroup v1: `<mount of the memory
    hierarchy>/<path>/memory.oom_control`. A path outside a mount's root (a container that
    sees only its own subtree) is taken relative to that root when it lies inside it, and
    as it is otherwise (the kernel shows paths outside the namespace's root as they are).
    """
    paths: list[str] = []
    for controllers, path in cgroups:
        if not controllers:
            fstype, controller, name = "cgroup2", None, "memory.events"
        elif "memory" in controllers:
            fstype, controller, name = "cgroup", "memory", "memory.oom_control"
        else:
            continue
        for mount in mounts:
            if mount.fstype != fstype or (controller is not None and controller not in mount.controllers):
                continue
            relative = path
            root = mount.root.rstrip("/")
            if root and (path == root or path.startswith(root + "/")):
                relative = path[len(root) :]
            candidate = os.path.join(mount.mount_point, relative.lstrip("/"), name)
            if candidate not in paths:
                paths.append(candidate)
    return paths


def parse_oom_kills(text: str) -> int | None:
    """The `oom_kill N` count in `memory.events`, `memory.oom_control` or `/proc/vmstat` text.

    `None` when the text has no such line (a kernel older than 4.13).
    """
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == "oom_kill":
            try:
                return int(fields[1])
            except ValueError:
                return None
    return None


def _read_text(path: str) -> str | None:
    try:
        with open(path, "rb") as file:
            return file.read().decode("utf-8", errors="replace")
    except OSError:
        return None


def read_oom_kills(paths: Iterable[str]) -> dict[str, int]:
    """The OOM-kill counter of each of `paths` that can be read (the others are left out)."""
    counts: dict[str, int] = {}
    for path in paths:
        text = _read_text(path)
        count = None if text is None else parse_oom_kills(text)
        if count is not None:
            counts[path] = count
    return counts


def cgroup_counter_paths(pid: int | None = None, mounts: Sequence[Mount] | None = None) -> list[str]:
    """The OOM-counter files of process `pid`'s cgroups (this process when `None`).

    `mounts`: the cgroup mounts, when already read (else `/proc/self/mountinfo` is read).
    """
    cgroups = _read_text(f"/proc/{'self' if pid is None else pid}/cgroup")
    if cgroups is None:
        return []
    if mounts is None:
        mountinfo = _read_text("/proc/self/mountinfo")
        mounts = [] if mountinfo is None else parse_mountinfo(mountinfo)
    return oom_counter_paths(parse_cgroups(cgroups), mounts)


class OomCounter:
    """Tells whether the OOM killer took one of our processes since it last looked.

    It remembers the counters it has seen (`seen`); [watch][] adds the cgroups of a
    process (a worker may live in another cgroup than the caller), and [claim][] answers
    for one death: a counter above its remembered value means the OOM killer killed a
    process there, and that kill is then counted as claimed (the remembered value goes up
    by one), so two workers killed in one OOM event are both told so, and one kill is
    never told twice. Read where no cgroup counter is readable: `/proc/vmstat`'s, which
    counts every OOM kill of the machine.

    Used by the manager thread only. The mounts are read once, at the start (a pool's
    cgroup mounts do not move); [watch][] then costs one small procfs read per worker.
    """

    def __init__(self, paths: Iterable[str] | None = None) -> None:
        self.seen: dict[str, int] = {}
        self._mounts: list[Mount] = []
        self._cgroups: set[str] = set()
        if paths is None:
            mountinfo = _read_text("/proc/self/mountinfo")
            self._mounts = [] if mountinfo is None else parse_mountinfo(mountinfo)
            own = _read_text("/proc/self/cgroup")
            if own is not None:
                self._cgroups.add(own)
                paths = oom_counter_paths(parse_cgroups(own), self._mounts)
        self.watch_paths(paths or [])
        if not self.seen:
            self.watch_paths([VMSTAT])

    def watch_paths(self, paths: Iterable[str]) -> None:
        """Start watching the counters in `paths` not watched yet, from their current values."""
        new = [path for path in paths if path not in self.seen]
        self.seen.update(read_oom_kills(new))

    def watch(self, pid: int) -> None:
        """Watch the cgroups of process `pid` too, where they are not watched yet."""
        if not self._mounts:
            return
        text = _read_text(f"/proc/{pid}/cgroup")
        if text is None or text in self._cgroups:
            return
        self._cgroups.add(text)
        self.watch_paths(oom_counter_paths(parse_cgroups(text), self._mounts))

    def claim(self) -> bool:
        """True if an OOM kill happened (in a watched counter) that no earlier call claimed."""
        return _claim(self.seen, read_oom_kills(self.seen))


def _claim(seen: dict[str, int], now: Mapping[str, int]) -> bool:
    """Claim one kill: every counter that rose past its remembered value goes up by one.

    Nested cgroups (v2 counts a child's kills in its parents too) rise together for one
    kill, so each of them is charged once; a counter that went down (its cgroup was made
    again) starts over from its new value.
    """
    rose = [path for path, count in now.items() if count > seen.get(path, count)]
    for path in rose:
        seen[path] += 1
    for path, count in now.items():
        if count < seen.get(path, count):
            seen[path] = count
    return bool(rose)
