"""The typing names parmap's annotations need at run time, on every supported Python.

Type checkers read `typing_extensions` (the dev extra installs it); at run time parmap does
not depend on it, yet `typing.get_type_hints(parmap.parallel)` evaluates the annotations, so
each name an evaluated annotation holds exists here on 3.9 too:

| name | 3.11+ | 3.10 | 3.9 |
|---|---|---|---|
| `ParamSpec` | `typing` | `typing` | a `TypeVar` (only `Generic[P, R]` needs it at run time) |
| `Unpack` | `typing` | `Unpack[X]` is `X` | `Unpack[X]` is `X` |

On 3.9 and 3.10, `get_type_hints` then reports `**options: Unpack[ParallelOptions]` as
`ParallelOptions`: the keyword arguments' TypedDict, which is what `Unpack` means there.
typing_extensions is never imported at run time, even where installed: the stand-ins keep
parmap's import the same everywhere and as cheap.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TypeVar

__all__ = ["ParamSpec", "Unpack"]

if TYPE_CHECKING:
    from typing_extensions import ParamSpec, Unpack
elif sys.version_info >= (3, 11):
    from typing import ParamSpec, Unpack
else:

    class _UnpackForm:
        """`Unpack[X]` where typing has no `Unpack`: `X`, the keyword arguments' TypedDict."""

        def __getitem__(self, item: Any) -> Any:
            return item

        def __repr__(self) -> str:
            return "Unpack"

    Unpack = _UnpackForm()

    if sys.version_info >= (3, 10):
        from typing import ParamSpec
    else:
        ParamSpec = TypeVar  # a class generic in a ParamSpec is subscripted with `Any` on 3.9
