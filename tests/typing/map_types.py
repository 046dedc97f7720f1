"""Checked by mypy in tests/test_typing.py; the revealed types are compared with map_types.out."""

from __future__ import annotations

from parmap import AsyncResult, ParallelFunction, parallel, shared, worker_state


@parallel
def length(text: str) -> int:
    return len(text)


@parallel(workers=2, chunksize="auto")
def halve(value: int) -> float:
    return value / 2


def add(a: int, b: int) -> int:
    return a + b


@parallel(workers=2, concurrency=4)
async def fetch(url: str) -> bytes:
    return url.encode()


async def handler() -> None:
    reveal_type(await fetch("a"))  # a plain call still gives the coroutine
    reveal_type(await fetch.map_async(["a"]))
    async for page in fetch.aimap(["a"]):
        reveal_type(page)
    reveal_type(halve.aimap_unordered(range(4)))


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
reveal_type(fetch)
reveal_type(fetch.map(["a"], concurrency=8))
reveal_type(halve.map(range(4), shared={"table": [1.0]}))
reveal_type(worker_state())
reveal_type(shared())
result: AsyncResult[list[float]] = halve.map_async([1])
function: ParallelFunction[int, float] = halve
length.map([1, 2])  # an error: length takes str
