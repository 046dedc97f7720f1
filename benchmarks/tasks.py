"""The functions the workers run. Module-level, so every library can pickle them by reference.

Nothing here imports a third-party package at import time: a spawned worker of any
contender imports this module, and the cold-start workload must not pay for NumPy.
"""

from __future__ import annotations

import time
from typing import Any

#: Multiplier and modulus of the pure-Python loop of :func:`burn`: an LCG step keeps the
#: interpreter busy with integer arithmetic that no optimiser can skip.
_LCG_MULTIPLIER = 31
_LCG_MODULUS = 1_000_003


def tiny(x: int) -> int:
    """The cheapest useful task: ``x * x + 1``. Measures pure per-item overhead."""
    return x * x + 1


def burn(x: int, loops: int) -> int:
    """A pure-Python loop of ``loops`` steps (the cpu workload calibrates it to about 1 ms)."""
    total = x
    for step in range(loops):
        total = (total * _LCG_MULTIPLIER + step) % _LCG_MODULUS
    return total


def nap(seconds: float) -> float:
    """Sleep ``seconds`` and return them: a task of known length that uses no CPU."""
    time.sleep(seconds)
    return seconds


def array_sum(array: Any) -> float:
    """The sum of a NumPy array, as a Python float (a small result for a large argument)."""
    return float(array.sum())


def calibrate_burn(target_seconds: float, probe_loops: int = 20_000, repeats: int = 50) -> int:
    """Loop count that makes :func:`burn` take about ``target_seconds`` on this machine.

    The fastest of ``repeats`` probes is used: it is the run least disturbed by other
    processes, so the estimate does not inflate on a busy machine.
    """
    fastest = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        burn(1, probe_loops)
        fastest = min(fastest, time.perf_counter() - started)
    return max(1, round(probe_loops * target_seconds / fastest))
