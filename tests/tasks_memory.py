"""Tasks for the memory-limit tests: they grow a worker's resident memory to a size the test names.

Sizes are targets for the worker's whole resident set (`/proc/self/statm`), not amounts to
allocate, so a test's limits hold whatever a fresh worker already uses (under fork, the
pages it shares with the caller).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from parmap.backends._resources import resident_bytes

#: What `grow_to` keeps alive: the worker's memory stays up after the chunk.
_kept: list[bytearray] = []

#: Pages are touched one per this many bytes, so they count as resident.
_PAGE = 4096

#: How long a task that must be killed waits: far longer than any test, so only a kill ends it.
WAIT_FOR_KILL_SECONDS = 60.0


def rss() -> int:
    """This worker's resident bytes (0 if it cannot be read)."""
    return resident_bytes() or 0


def grow_to(target: int) -> None:
    """Allocate and touch memory until this process's resident set is at least `target` bytes."""
    missing = target - rss()
    if missing <= 0:
        return
    block = bytearray(missing)  # calloc'ed: not resident until written
    for offset in range(0, missing, _PAGE):
        block[offset] = 1
    _kept.append(block)


def pid_and_rss(_: object) -> tuple[int, int]:
    """The worker's pid and resident bytes."""
    return os.getpid(), rss()


def hold(args: tuple[int, int]) -> tuple[int, int]:
    """`(x, target)`: grow to `target` resident bytes (0: no change) and keep it; return `(x, pid)`."""
    x, target = args
    if target:
        grow_to(target)
    return x, os.getpid()


def grow_then_wait(args: tuple[int, int]) -> int:
    """`(x, target)`: with a target, grow to it, then wait until killed; else return `x`."""
    x, target = args
    if target:
        grow_to(target)
        time.sleep(WAIT_FOR_KILL_SECONDS)
    return x


def grow_once_then_wait(args: tuple[int, int, str]) -> int:
    """`grow_then_wait` on the first attempt only (`marker` is created then); later attempts return."""
    x, target, marker = args
    if target and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        grow_to(target)
        time.sleep(WAIT_FOR_KILL_SECONDS)
    return x * 10


def join_cgroup(procs_file: str) -> None:
    """Initializer: move this worker into the cgroup whose `cgroup.procs` is `procs_file`."""
    Path(procs_file).write_text(str(os.getpid()))
