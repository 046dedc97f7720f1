"""`async def` tasks and helpers for the asyncio tests (importable by spawned workers)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import parmap

#: How long a barrier item waits for its peers before it fails the test (state, not timing:
#: the peers either run at once, and arrive within milliseconds, or never do).
BARRIER_SECONDS = 20.0


async def double(x: int) -> int:
    await asyncio.sleep(0)
    return x * 2


async def double_star(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return (a + b) * 2


async def barrier(args: tuple[str, int, int]) -> int:
    """Arrive at a barrier of `size` items in `directory`; return once all have arrived.

    Only items that run at the same time can all arrive: with fewer at once, it times out.
    """
    directory, size, x = args
    Path(directory, f"arrived-{x}").touch()
    deadline = time.monotonic() + BARRIER_SECONDS
    while len(list(Path(directory).glob("arrived-*"))) < size:
        if time.monotonic() > deadline:
            raise TimeoutError(f"item {x}: only {len(list(Path(directory).glob('arrived-*')))} of {size} arrived")
        await asyncio.sleep(0.002)
    return x


async def wait_for_file_async(args: tuple[str, int]) -> int:
    """Report our pid in `<dir>/started-<x>`, then await until `<dir>/go` exists."""
    directory, x = args
    Path(directory, f".started-{x}").write_text(str(os.getpid()))
    os.replace(Path(directory, f".started-{x}"), Path(directory, f"started-{x}"))
    while not Path(directory, "go").exists():
        await asyncio.sleep(0.005)
    return x


async def sleep_forever_on_one(x: int) -> int:
    if x == 1:
        await asyncio.sleep(3600)
    return x


async def block_the_loop_on_one(x: int) -> int:
    """Item 1 never awaits: the loop cannot cancel it."""
    if x == 1:
        time.sleep(3600)
    return os.getpid()


async def fail_first_time(args: tuple[str, int]) -> int:
    directory, x = args
    marker = Path(directory, f"tried-{x}")
    if x % 2 and not marker.exists():
        marker.touch()
        raise ValueError(f"first try of {x}")
    await asyncio.sleep(0)
    return x


async def raise_on_three(x: int) -> int:
    await asyncio.sleep(0)
    if x == 3:
        raise KeyError(x)
    return x


async def exit_on_seven(x: int) -> int:
    await asyncio.sleep(0.001)
    if x == 7:
        os._exit(1)
    return x


async def draw(x: int) -> float:
    await asyncio.sleep(0.001 * (x % 3))  # interleave the items of one worker
    return parmap.item_rng().random()


async def report_halfway(x: int) -> int:
    parmap.report_progress(0.5)
    await asyncio.sleep(0)
    return x


async def loop_identity(_: object) -> tuple[int, int, int]:
    """(pid, thread, id of the running loop): the loop a worker keeps across chunks."""
    await asyncio.sleep(0)
    return os.getpid(), threading.get_ident(), id(asyncio.get_running_loop())


class AsyncCallable:
    async def __call__(self, x: int) -> int:
        await asyncio.sleep(0)
        return x + 1


def plain_generator(x: int) -> Any:
    yield x


async def async_generator(x: int) -> Any:
    yield x


async def block_on_one_else_await(x: int) -> int:
    """Item 1 blocks its worker's loop; the others await briefly (they finish unless blocked)."""
    if x == 1:
        time.sleep(3600)
    await asyncio.sleep(0.05)
    return x
