"""A decorated module-level function, for nesting and pickling tests."""

from __future__ import annotations

from parmap import parallel


@parallel(workers=2)
def inner_square(x: int) -> int:
    return x * x
