"""How long each injected failure takes to reach the caller (for the reliability notes).

Run: ``python -m benchmarks.fault_latency``. Each case runs several times in this process
against a warm pool; the time is from the moment the fault fires (the task records it just
before dying, or the deadline for timeouts) to the moment the caller holds the error.
Prints medians in milliseconds.
"""

from __future__ import annotations

import ctypes
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import parmap
from parmap import TaskTimeoutError, WorkerLostError, parallel

ROUNDS = 7


def _fault(args: tuple[str, str]) -> int:
    kind, stamp = args
    if kind == "ok":
        return 0
    Path(stamp).write_text(repr(time.monotonic()))
    if kind == "os._exit":
        os._exit(1)
    if kind == "SIGKILL":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "segfault":
        ctypes.string_at(0)
    if kind == "timeout":
        time.sleep(60)
    if kind == "raise":
        raise ValueError("task error")
    return 0


def measure(kind: str, expected: type[BaseException], timeout: float | None = None) -> float:
    task = parallel(_fault, workers=2, timeout=timeout)
    task.map([("ok", "")] * 4)
    samples = []
    with tempfile.TemporaryDirectory() as directory:
        stamp = str(Path(directory, "fired"))
        for _ in range(ROUNDS):
            try:
                task.map([(kind, stamp)])
            except expected:
                caught = time.monotonic()
            fired = float(Path(stamp).read_text()) + (timeout or 0.0)
            samples.append((caught - fired) * 1000)
    return statistics.median(samples)


def main() -> None:
    cases: list[tuple[str, type[BaseException], Any]] = [
        ("raise", ValueError, None),
        ("os._exit", WorkerLostError, None),
        ("SIGKILL", WorkerLostError, None),
        ("segfault", WorkerLostError, None),
        ("timeout", TaskTimeoutError, 0.5),
    ]
    print("failure     median ms from fault to caller")
    for kind, expected, timeout in cases:
        print(f"{kind:<10}  {measure(kind, expected, timeout):8.1f}")
    parmap.shutdown()


if __name__ == "__main__":
    main()
