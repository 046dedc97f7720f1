"""Several inputs for one map: `f.map(xs, ys)` calls `f(x, y)`, as the builtin `map` does.

The inputs are zipped, lazily, into one input of argument tuples, which the job runs with
starmap's calling convention (`StarCall`). It stops at the shortest input. What the zip
looks like to the job depends on the inputs, so each keeps what a single input of its kind
would get:

| inputs | zipped as | the job |
|---|---|---|
| all lists, tuples or ranges | `ZippedSequences` | slices each chunk from the inputs; knows the length |
| all with `len()` | `SizedZip` | reads it lazily; knows the length |
| any other (a generator) | `zip(*inputs)` | reads it lazily; length unknown |
| any async iterable (`aimap`) | `AsyncZip` | reads it on the caller's loop |

Knowing the length is what `chunksize="auto"`, progress totals and checkpoints need.

One input is never wrapped: the map methods call here only for two or more.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any, Union, overload

#: The input types a job slices, instead of reading them: `Job` slices these exact types.
_SEQUENCE_TYPES = (list, tuple, range)


class ZippedSequences(Sequence[tuple[Any, ...]]):
    """Lists, tuples and ranges zipped as a sequence: `len()` is the shortest's, a slice
    zips the inputs' slices (a chunk of a range input costs a range slice, not a copy)."""

    __slots__ = ("_inputs", "_length")

    def __init__(self, inputs: Sequence[Sequence[Any]]) -> None:
        self._inputs = tuple(inputs)
        self._length = min(len(sequence) for sequence in self._inputs)

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> tuple[Any, ...]: ...

    @overload
    def __getitem__(self, index: slice) -> list[tuple[Any, ...]]: ...

    def __getitem__(self, index: Union[int, slice]) -> Union[tuple[Any, ...], list[tuple[Any, ...]]]:
        """The argument tuple at `index`, or a list of them for a slice.

        Raises:
            IndexError: `index` is out of range of the shortest input.
        """
        if isinstance(index, slice):
            start, stop, step = index.indices(self._length)
            return list(zip(*(sequence[start:stop:step] for sequence in self._inputs)))
        if not -self._length <= index < self._length:
            raise IndexError("zipped input index out of range")
        position = index % self._length
        return tuple(sequence[position] for sequence in self._inputs)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return zip(*self._inputs)

    def __repr__(self) -> str:
        return f"ZippedSequences({len(self._inputs)} inputs, {self._length} items)"


#: What `Job` slices: the plain sequences, and several of them zipped.
SLICED_TYPES = (*_SEQUENCE_TYPES, ZippedSequences)


class SizedZip:
    """`zip(*inputs)` that also knows its length (the shortest input's), read once."""

    __slots__ = ("_length", "_zip")

    def __init__(self, inputs: Sequence[Iterable[Any]], length: int) -> None:
        self._zip = zip(*inputs)
        self._length = length

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return self._zip


class AsyncZip:
    """Async iterables and plain iterables zipped into one async iterator of tuples.

    Each step awaits the async inputs' `__anext__` and takes the plain inputs' `next()`, in
    argument order, on the loop that reads it: a plain input mixed with async ones should
    not block (a list, a range). It stops at the first input that ends, as `zip` does; the
    inputs after it are not advanced for that step.
    """

    def __init__(self, inputs: Sequence[Any]) -> None:
        self._iterators: list[tuple[bool, Any]] = [
            (True, source.__aiter__()) if hasattr(source, "__aiter__") else (False, iter(source)) for source in inputs
        ]
        self._ended = False

    def __aiter__(self) -> AsyncIterator[tuple[Any, ...]]:
        return self

    async def __anext__(self) -> tuple[Any, ...]:
        if self._ended:
            raise StopAsyncIteration
        values = []
        for is_async, iterator in self._iterators:
            try:
                value = await iterator.__anext__() if is_async else next(iterator)
            except (StopIteration, StopAsyncIteration):
                self._ended = True
                raise StopAsyncIteration from None
            values.append(value)
        return tuple(values)


def zip_inputs(name: str, inputs: Sequence[Any], *, allow_async: bool = False) -> Any:
    """Zip two or more map inputs into one input of argument tuples (see the module's table).

    Raises:
        TypeError: an input is not iterable (nor async iterable, where `allow_async`).
    """
    has_async = False
    for position, source in enumerate(inputs, 1):
        if allow_async and hasattr(source, "__aiter__"):
            has_async = True
        elif not hasattr(source, "__iter__") and not hasattr(source, "__getitem__"):
            kind = "an iterable or async iterable" if allow_async else "an iterable"
            hint = "; a callback is passed by keyword (callback=...)" if callable(source) else ""
            raise TypeError(f"{name}() needs {kind} for each input; input {position} is {type(source).__name__}{hint}")
    if has_async:
        return AsyncZip(inputs)
    if all(type(source) in _SEQUENCE_TYPES for source in inputs):
        return ZippedSequences(inputs)
    if all(hasattr(source, "__len__") for source in inputs):
        return SizedZip(inputs, min(len(source) for source in inputs))
    return zip(*inputs)
