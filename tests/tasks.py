"""Module-level tasks for the tests (importable by spawned workers)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any


def square(x: int) -> int:
    return x * x


def add(a: int, b: int) -> int:
    return a + b


def pid_of(_: object) -> int:
    return os.getpid()


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"bad item {x}")
    return x


def exit_on_seven(x: int) -> int:
    if x == 7:
        os._exit(1)
    return x


def segfault_on_five(x: int) -> int:
    if x == 5:
        import ctypes
        import faulthandler

        faulthandler.disable()  # pytest's faulthandler would print every thread's stack to the log
        ctypes.string_at(0)
    return x


def sigkill_self_on_two(x: int) -> int:
    if x == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def wait_for_file(args: tuple[str, int]) -> int:
    """Report our pid in ``<dir>/started-<x>``, then wait until ``<dir>/go`` exists."""
    directory, x = args
    # Written whole, then renamed: a test that sees the file can read the pid at once.
    Path(directory, f".started-{x}").write_text(str(os.getpid()))
    os.replace(Path(directory, f".started-{x}"), Path(directory, f"started-{x}"))
    while not Path(directory, "go").exists():
        time.sleep(0.005)
    return x


def sleep_on(x: float) -> float:
    time.sleep(x)
    return x


def raise_system_exit(x: int) -> int:
    if x == 1:
        sys.exit(3)
    return x


def raise_keyboard_interrupt(x: int) -> int:
    if x == 1:
        raise KeyboardInterrupt
    return x


class OddError(Exception):
    """An exception whose constructor takes two arguments: default pickling cannot rebuild it."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code


def raise_odd(x: int) -> int:
    if x == 2:
        raise OddError(x, "odd")
    return x


class Unpicklable:
    def __reduce__(self) -> Any:
        raise TypeError("this object refuses to be pickled")


def return_unpicklable(x: int) -> Any:
    return Unpicklable() if x == 4 else x


class UnpicklableError(Exception):
    def __reduce__(self) -> Any:
        raise TypeError("this exception refuses to be pickled")


def raise_unpicklable(x: int) -> int:
    if x == 1:
        raise UnpicklableError("cannot travel")
    return x


class ExitAtUnpickle:
    """Kills the worker that unpickles it."""

    def __reduce__(self) -> Any:
        return (os._exit, (9,))


def identity(x: Any) -> Any:
    return x


def inner_sum(n: int) -> int:
    from tests.tasks_nested import inner_square

    return sum(inner_square.map(range(n)))


def count_init(path: str) -> None:
    with open(path, "a") as handle:
        handle.write(f"{os.getpid()}\n")


def map_inside(n: int) -> list[int]:
    """Run a parmap map from wherever this is called (e.g. a daemonic Pool worker)."""
    from parmap import parallel

    return parallel(square, workers=2).map(range(n))


# engine helper


def return_at_once_or_wait(args: tuple[str, int]) -> int:
    """Item 0 returns at once; every other item reports its pid and waits, as `wait_for_file`."""
    if args[1] == 0:
        return 0
    return wait_for_file(args)


def slow_first_fail_three(x: int) -> int:
    """Item 0 takes a while, item 3 fails at once: results before 3 come after its error."""
    if x == 0:
        time.sleep(0.3)
    if x == 3:
        raise ValueError(f"bad item {x}")
    return x


class Box:
    """A result that can be watched with a weak reference."""

    def __init__(self, value: int) -> None:
        self.value = value


def make_box(x: int) -> Box:
    return Box(x)


def fail_one_late_and_four_at_once(x: int) -> int:
    """Item 1 fails after a while, item 4 at once: the first failure in input order is item 1's."""
    if x == 1:
        time.sleep(0.3)
        raise ValueError("item 1 failed")
    if x == 4:
        raise KeyError("item 4 failed")
    return x


# transport helper


def wait_for_file_with_payload(args: tuple[str, int, Any]) -> int:
    """``wait_for_file((directory, x))`` for an item that also carries a large payload."""
    directory, x, payload = args
    wait_for_file((directory, x))
    return len(payload)


def payload_length(payload: Any) -> int:
    return len(payload)


def zero_bytes(n: int) -> bytes:
    return bytes(n)


# process helper
# Tasks for tests/test_process_defects.py (issue 10): faults that come from the input.


def wait_then_big_result(args: tuple[str, int]) -> bytes:
    """``wait_for_file``, then a result of 300 kB: larger than a socket's buffer."""
    wait_for_file(args)
    return b"r" * 300_000


def raise_stop_iteration_on_two(x: int) -> int:
    if x == 2:
        next(iter([]))
    return x


def _rebuild_only_in_the_caller() -> Any:
    from parmap.backends._worker import in_worker_process

    if in_worker_process():
        raise ImportError("No module named 'only_in_the_caller'")
    return UnloadableInWorker()


class UnloadableInWorker:
    """A callable that pickles in the caller but cannot be unpickled in a worker."""

    __qualname__ = "UnloadableInWorker"

    def __call__(self, x: int) -> int:
        return x

    def __reduce__(self) -> Any:
        return (_rebuild_only_in_the_caller, ())


def _exit_if_unpickled_in_the_caller() -> Any:
    from parmap.backends._worker import in_worker_process

    if not in_worker_process():
        raise SystemExit(5)
    return ExitWhenUnpickledInCaller()


class ExitWhenUnpickledInCaller:
    """A result whose unpickling raises ``SystemExit`` in the caller."""

    def __reduce__(self) -> Any:
        return (_exit_if_unpickled_in_the_caller, ())


def return_exit_in_caller_on_one(x: int) -> Any:
    return ExitWhenUnpickledInCaller() if x == 1 else x


def fork_and_return(x: int) -> tuple[str, int]:
    """Fork; the child returns into the worker loop as if it were the worker."""
    pid = os.fork()
    if pid == 0:
        return ("child", x)
    os.waitpid(pid, 0)
    return ("parent", x)


def exit_in_initializer() -> None:
    os._exit(3)


def system_exit_in_initializer() -> None:
    raise SystemExit(4)


_sync: tuple[Any, ...] = ()


def keep_sync_objects(*objects: Any) -> None:
    global _sync
    _sync = objects


def use_sync_objects(x: int) -> int:
    """Count in the shared ``Value`` under the ``Lock``, put ``x`` on the ``Queue``."""
    value, lock, event, queue = _sync
    with lock:
        value.value += 1
    queue.put(x)
    return x + (100 if event.is_set() else 0)


class BadStrUnpicklableError(Exception):
    def __reduce__(self) -> Any:
        raise TypeError("this exception refuses to be pickled")

    def __str__(self) -> str:
        raise ValueError("and refuses to be printed")


def raise_bad_str_on_one(x: int) -> int:
    if x == 1:
        raise BadStrUnpicklableError("x")
    return x


def _marker_in_worker(path: str) -> DropMarker:
    marker = DropMarker(path)
    marker.in_worker = True
    return marker


class DropMarker:
    """Writes ``path`` when a worker's copy of it is collected."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.in_worker = False

    def __reduce__(self) -> Any:
        return (_marker_in_worker, (self.path,))

    def __del__(self) -> None:
        if self.in_worker:
            Path(self.path).write_text(str(os.getpid()))


def zero(_: object) -> int:
    return 0


def pid_then_hold_the_gil(path: str) -> int:
    """Report the pid, then backtrack in ``re`` (one long C call that holds the GIL)."""
    import re

    Path(path + ".tmp").write_text(str(os.getpid()))
    os.replace(path + ".tmp", path)
    return len(re.findall(r"(a+)+b", "a" * 30))  # minutes: the test kills it long before


def forge_a_result(_: object) -> int:
    """Write a result frame with a pid that is not the worker's to the worker's own socket,
    as a task's forked child writing to the inherited socket would."""
    import struct

    from parmap.backends import _protocol

    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:"):
            body = b"D" + _protocol.RESULT_HEADER.pack(-1, 1) + struct.pack("<d", 0.0)
            os.write(int(name), _protocol.frame(body) + body)
    time.sleep(30)  # the manager stops this worker long before
    return 0


class KillsTheWorkerThatLoadsIt:
    """A callable whose unpickling ends the process that unpickles it (only workers do)."""

    def __call__(self, x: int) -> int:
        return x

    def __reduce__(self) -> Any:
        return (os._exit, (9,))


def processes_gone(pids: list[int], within: float) -> bool:
    """Wait up to `within` seconds for every pid to be gone (or a zombie); True if they are."""

    def gone(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):  # gone before or while it was read
            return True
        return state == "Z"

    deadline = time.monotonic() + within
    while not all(gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.01)
    return all(gone(pid) for pid in pids)
