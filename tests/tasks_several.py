"""Tasks of several arguments for `tests/test_several_iterables.py` (importable by the workers)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from parmap import item_rng


class PairError(Exception):
    """Raised by `fail_on_pair` for the pair it fails on."""


def add(a: int, b: int) -> int:
    return a + b


def join3(a: object, b: object, c: object) -> str:
    return f"{a}-{b}-{c}"


def fail_on_pair(a: int, b: int) -> int:
    """`a + b`, failing for the pair (2, 20) only: a fault that comes from the input."""
    if (a, b) == (2, 20):
        raise PairError(f"bad pair {a}, {b}")
    return a + b


def seeded(a: int, b: int) -> tuple[int, int, float]:
    """The item's arguments and the first draw of its seeded generator."""
    return a, b, item_rng().random()


def logged_add(directory: str, a: int, b: int) -> int:
    """`a + b`, appending `a` to a log in `directory`, so a test knows which items ran."""
    with (Path(directory) / "ran.log").open("a") as log:
        log.write(f"{a}\n")
    return a + b


async def add_async(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b
