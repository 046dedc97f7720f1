"""parmap in one minute: decorate a function, then map it over many items in parallel.

Run it with ``python examples/quickstart.py``. It shows a plain call, ``map``, a progress
bar, a lazy ``imap``, ``map_async`` with a callback, and what a failing item looks like.
"""

from __future__ import annotations

import math

import parmap
from parmap import parallel


@parallel  # one worker process per usable CPU, started on first use, shared and reused
def is_prime(n: int) -> bool:
    """True if ``n`` is a prime number (trial division: deliberately CPU-bound)."""
    if n < 2:
        return False
    return all(n % divisor for divisor in range(2, math.isqrt(n) + 1))


@parallel(workers=2, chunksize=1)
def parse_price(text: str) -> float:
    """Parse a price such as ``"12.50"``; raises ``ValueError`` on anything else."""
    return float(text)


def main() -> None:
    # 1. A plain call is unchanged: it runs here, in this process.
    print("is_prime(97) =", is_prime(97))

    # 2. map: every item in parallel, results in input order, blocks until done.
    numbers = list(range(1_000_000, 1_000_200))
    flags = is_prime.map(numbers)
    primes = [n for n, flag in zip(numbers, flags) if flag]
    print(f"{len(primes)} primes between {numbers[0]:,} and {numbers[-1]:,}; first: {primes[:3]}")

    # 3. A progress bar (tqdm, on stderr) counting items, not chunks.
    count = sum(is_prime.map(range(2_000_000, 2_020_000), progress=True))
    print(f"{count} primes in the next 20,000 numbers")

    # 4. imap: a lazy iterator, in input order; leaving the loop early cancels the rest.
    for n, flag in zip(range(10**9, 10**9 + 1000), is_prime.imap(range(10**9, 10**9 + 1000))):
        if flag:
            print(f"first prime above 10**9: {n:,}")
            break

    # 5. map_async: returns at once; the callback receives the whole ordered list.
    pending = is_prime.map_async([2, 3, 4, 5], callback=lambda result: print("callback got", result))
    print("map_async result:", pending.get(timeout=60))

    # 6. A failing item raises its own exception, with the worker's traceback as __cause__
    #    and a note naming the item's index; the pool stays usable.
    try:
        parse_price.map(["12.50", "3.99", "N/A", "7.00"])
    except ValueError as error:
        print("ValueError:", error, "|", *getattr(error, "__notes__", []))
    # ... or keep going and get the exception in the failing item's slot.
    print(parse_price.map(["12.50", "N/A"], return_exceptions=True))

    parmap.shutdown()  # optional: pools are also closed at exit


if __name__ == "__main__":  # needed under the spawn and forkserver start methods
    main()
