"""Reproducible randomness: the same ``seed`` gives the same results, however the work is split.

A Monte Carlo estimate of pi, drawn in parallel. With ``seed=2024`` the estimate is the
same for 1 or 2 workers, any chunk size and the serial backend, because each item's random
numbers come from ``(seed, item index)`` alone (``parmap.item_rng()``). Without a seed, each
worker still has random state of its own, so workers never repeat each other.

Run it with ``python examples/reproducible_randomness.py``.
"""

from __future__ import annotations

import random

import parmap
from parmap import parallel

BATCHES = 40
POINTS_PER_BATCH = 20_000


def hits_in_circle(_: int) -> int:
    """Throw random points at the unit square; count those inside the quarter circle."""
    rng = parmap.item_rng()  # this item's own generator, derived from (seed, index)
    return sum(rng.random() ** 2 + rng.random() ** 2 <= 1.0 for _ in range(POINTS_PER_BATCH))


def unseeded_draw(_: int) -> float:
    return random.random()  # the module's generator: fresh in every worker


def estimate(hits: list[int]) -> float:
    return 4 * sum(hits) / (len(hits) * POINTS_PER_BATCH)


def main() -> None:
    runs = {
        "2 workers, auto chunks": parallel(hits_in_circle, workers=2, seed=2024).map(range(BATCHES)),
        "1 worker, chunks of 7": parallel(hits_in_circle, workers=1, seed=2024).map(range(BATCHES), chunksize=7),
        "serial backend": parallel(hits_in_circle, backend="serial", seed=2024).map(range(BATCHES)),
    }
    for label, hits in runs.items():
        print(f"seed 2024, {label:>22}: pi ~ {estimate(hits):.6f}")
    assert len({tuple(hits) for hits in runs.values()}) == 1, "the same seed must give the same draws"

    other = parallel(hits_in_circle, workers=2, seed=7).map(range(BATCHES))
    print(f"seed 7,    2 workers, auto chunks: pi ~ {estimate(other):.6f}")

    draws = parallel(unseeded_draw, workers=2).map(range(200), chunksize=1)
    print(f"without a seed: {len(set(draws))} distinct draws out of {len(draws)}")


if __name__ == "__main__":
    main()
