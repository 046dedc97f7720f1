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
