"""Task functions of the pickling tests (issue 12): importable, so workers find them."""

from __future__ import annotations

from typing import Any

model: Any = None


def load(value: Any) -> None:
    """The `Pool` idiom: an initializer sets a global."""
    global model
    model = value


def read_model(x: int) -> Any:
    return model


def fail_on(x: int) -> int:
    if x == 2:
        raise ValueError(f"bad item {x}")  # the raising line the traceback tests look for
    return x


async def afail_on(x: int) -> int:
    return fail_on(x)


def fail_on_pair(x: int, y: int) -> int:
    return fail_on(x + y)
