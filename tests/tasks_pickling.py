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


def describe_array(array: Any) -> tuple[str, str | None, float, bool]:
    """What a task received: its type, the file it maps, its sum, whether it is writeable."""
    return type(array).__name__, getattr(array, "filename", None), float(array.sum()), bool(array.flags.writeable)


def fill_with_seven(array: Any) -> None:
    array[...] = 7
    array.flush()


def open_rows(spec: tuple[str, int, int]) -> Any:
    """Rows `start:stop` of the float64 (n, 8) memmap in `path`, opened in the worker."""
    import numpy

    path, start, stop = spec
    return numpy.memmap(path, dtype=numpy.float64, mode="r")[start * 8 : stop * 8].reshape(-1, 8)
