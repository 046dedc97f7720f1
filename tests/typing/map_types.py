"""Checked by mypy in tests/test_typing.py; the revealed types are compared with map_types.out."""

from __future__ import annotations

from parmap import AsyncResult, ParallelFunction, parallel


@parallel
def length(text: str) -> int:
    return len(text)


@parallel(workers=2, chunksize="auto")
def halve(value: int) -> float:
    return value / 2


def add(a: int, b: int) -> int:
    return a + b


reveal_type(length)
reveal_type(length("abc"))
reveal_type(length.map(["a", "bb"]))
reveal_type(halve.map(range(4), chunksize=2, progress=True))
reveal_type(halve.imap(range(4)))
reveal_type(halve.imap_unordered(range(4)))
reveal_type(halve.map_async(range(4)))
reveal_type(halve.map_async(range(4)).get(timeout=1))
reveal_type(parallel(add, workers=2).starmap([(1, 2)]))
reveal_type(parallel(workers=3)(length.__wrapped__))
result: AsyncResult[list[float]] = halve.map_async([1])
function: ParallelFunction[int, float] = halve
length.map([1, 2])  # an error: length takes str
