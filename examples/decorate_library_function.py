"""Parallelise functions you did not write: `parallel(fn, ...)` wraps any callable.

No `@` needed: `parallel(zlib.compress, workers=2)` gives the library function the
map methods, and `functools.partial` fixes its other arguments. Builtins, partials,
lambdas and bound methods all travel to the workers.

Run it with `python examples/decorate_library_function.py`.
"""

from __future__ import annotations

import functools
import hashlib
import zlib

from parmap import parallel


def sha256_hex(data: bytes) -> str:
    """`hashlib.sha256(data).hexdigest()`.

    Hash objects cannot be pickled, their digests can.
    """
    return hashlib.sha256(data).hexdigest()


def main() -> None:
    blocks = [bytes([n % 251]) * 200_000 + str(n).encode() for n in range(32)]

    # A C function from the standard library, as it is.
    compress = parallel(zlib.compress, workers=2)
    packed = compress.map(blocks)
    before, after = sum(map(len, blocks)), sum(map(len, packed))
    print(f"zlib.compress: {before:,} bytes -> {after:,} bytes")

    # Other arguments fixed with functools.partial; starmap for several arguments.
    level_9 = functools.partial(zlib.compress, level=9)
    best = parallel(level_9, workers=2).map(blocks)
    pairs = [(block, 0) for block in blocks[:4]]
    crcs = parallel(zlib.crc32, workers=2).starmap(pairs)
    print(
        f"level 9: {sum(map(len, best)):,} bytes; crc32 of the first blocks: {crcs}"
    )

    # Round trip: the decompressed blocks equal the originals.
    assert parallel(zlib.decompress, workers=2).map(packed) == blocks

    # Functions that return something unpicklable need a thin wrapper.
    digests = parallel(sha256_hex, workers=2).map(blocks[:3])
    print("sha256:", [digest[:16] for digest in digests])

    # A plain call still runs here, unchanged.
    assert compress(b"hello") == zlib.compress(b"hello")


if __name__ == "__main__":
    main()
