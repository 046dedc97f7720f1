"""Checked by mypy and pyright in tests/test_typing.py; what they report is compared with snapshots.

Every `reveal_type` line is a revealed type the snapshots hold; the lines marked "an error"
must be reported as errors, by both checkers, in every mode.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from parmap import AsyncResult, ParallelFunction, parallel, shared, worker_state


@parallel
def length(text: str) -> int:
    return len(text)


@parallel(workers=2, chunksize="auto")
def halve(value: int) -> float:
    return value / 2


def add(a: int, b: int) -> int:
    return a + b


@parallel
def scale(value: int, factor: float, offset: float = 0.0) -> float:
    return value * factor + offset


@parallel(workers=2, concurrency=4)
async def fetch(url: str) -> bytes:
    return url.encode()


@parallel
async def fetch_twice(url: str, times: int) -> bytes:
    return url.encode() * times


def done(results: list[float]) -> None:
    pass


async def numbers() -> AsyncIterator[int]:
    yield 1


async def handler() -> None:
    reveal_type(await fetch("a"))  # a plain call still gives the coroutine
    reveal_type(await fetch.map_async(["a"]))
    async for page in fetch.aimap(["a"]):
        reveal_type(page)
    reveal_type(halve.aimap_unordered(range(4)))
    async for pages in fetch_twice.aimap(["a", "b"], numbers()):  # async and plain inputs mixed
        reveal_type(pages)
    reveal_type(fetch_twice.map(["a"], [2]))


class Shape:
    def __init__(self, side: int) -> None:
        self.side = side

    @parallel(workers=2)
    def area(self, scale: int) -> int:
        return self.side * scale

    @parallel(workers=2)
    @staticmethod
    def double(x: int) -> int:
        return 2 * x

    @parallel(workers=2)
    @classmethod
    def named(cls, x: int) -> str:
        return f"{cls.__name__}{x}"

    @parallel
    async def fetch_side(self, url: str) -> int:
        return len(url) * self.side


shape = Shape(2)

# The decorated function keeps its signature.
reveal_type(length)
reveal_type(length.__call__)
reveal_type(length("abc"))
reveal_type(scale.__call__)
# One input.
reveal_type(length.map(["a", "bb"]))
reveal_type(length.map(["a", "bb"], stats=True))
reveal_type(length.map(["a", "bb"], stats=False))
reveal_type(length.map(["a", "bb"], stats=True).stats)
reveal_type(halve.map(range(4), chunksize=2, progress=True))
reveal_type(halve.imap(range(4)))
reveal_type(halve.imap_unordered(range(4)))
reveal_type(halve.map_async(range(4)))
reveal_type(halve.map_async(range(4), stats=True))
reveal_type(halve.map_async(range(4)).get(timeout=1))
reveal_type(parallel(add, workers=2).starmap([(1, 2)]))
reveal_type(parallel(workers=3)(length.__wrapped__))
reveal_type(fetch)
reveal_type(fetch.map(["a"], concurrency=8))
reveal_type(halve.map(range(4), shared={"table": [1.0]}))
# Several inputs, typed per input like the builtin map.
reveal_type(parallel(add).map([1, 2], range(3)))
reveal_type(scale.map([1, 2], [0.5, 2.0]))
reveal_type(scale.map([1, 2], [0.5, 2.0], [1.0], stats=True))
reveal_type(scale.imap(iter([1]), (f for f in [0.5])))
reveal_type(scale.imap_unordered([1], [0.5]))
reveal_type(scale.map_async([1], [0.5], callback=print))
reveal_type(scale.aimap([1], [0.5]))
# Lambdas, methods, staticmethods, classmethods.
increment = parallel(lambda x: x + 1)
reveal_type(increment)
reveal_type(increment.map([1, 2]))
reveal_type(parallel(lambda x: x, workers=2))
reveal_type(shape.area)
reveal_type(shape.area(3))
reveal_type(shape.area.map([1, 2]))
reveal_type(Shape.double(3))
reveal_type(Shape.double.map([1, 2]))
reveal_type(shape.double.map([1, 2]))
reveal_type(Shape.named(1))
reveal_type(Shape.named.map([1]))
reveal_type(shape.fetch_side.__call__)  # a call gives the coroutine
reveal_type(shape.fetch_side.map(["a"]))
reveal_type(worker_state())
reveal_type(shared())
result: AsyncResult[list[float]] = halve.map_async([1])
function: ParallelFunction[[int], float] = halve
# Errors: each must be reported.
length.map([1, 2])  # an error: length takes str
length(1)  # an error: length takes str
length("a", "b")  # an error: length takes one argument
scale.map([1], ["a"])  # an error: the second input must hold floats
shape.area("x")  # an error: area takes an int
halve.map_async([1], done)  # an error: the callbacks are keyword-only, done is no input
