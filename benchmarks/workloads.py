"""The workloads of issue 4: what each one times, its sizes, its ideal time and parmap's bars.

A workload's :func:`measure` runs inside a fresh subprocess (see :mod:`._child`): it
starts the contender's pool, uses it once on a few items ("warm", unless the workload is
the cold start), times the call under test, and checks the results, so a fast wrong answer
never counts. Sizes are the issue's; ``--quick`` uses the smaller ``quick_size``.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import TYPE_CHECKING, Any

from . import tasks
from .memory import PeakMemory

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from .contenders import Contender

#: Items the stream workload hands to libraries that need an explicit chunksize to stream
#: (the issue's reference: stdlib ``imap`` with chunksize 1000).
STREAM_CHUNKSIZE = 1000

#: Float64 elements of one payload array: 4 MiB.
PAYLOAD_ELEMENTS = (4 << 20) // 8

#: Items of one map in the repeat workload (its size is the number of maps).
REPEAT_ITEMS = 8

#: Sleep of each item of the seed workload, in seconds.
SEED_SECONDS = 0.1

#: Target cost of one cpu item; the loop count is calibrated once per run by the parent.
CPU_ITEM_SECONDS = 0.001

#: The uneven workload sleeps ``(i * UNEVEN_STRIDE % UNEVEN_STEPS) * UNEVEN_QUANTUM`` for item
#: ``i``: a deterministic, well-spread 0-10 ms whose sum is known in advance.
UNEVEN_STRIDE = 7919
UNEVEN_STEPS = 101
UNEVEN_QUANTUM = 0.0001

#: The fresh workload's sleeps, in seconds: two long items per worker with a short one
#: between them. A scheduler that queues a chunk behind a busy worker while the other one is
#: idle (or still starting) runs two long items in a row on one worker: 0.9 s instead of 0.6 s.
FRESH_PATTERN = (0.3, 0.3, 0.03)


class WrongResult(AssertionError):
    """A contender returned results that differ from the expected ones."""


@dataclasses.dataclass(frozen=True)
class Bar:
    """One goal for parmap, evaluated by :mod:`.bars` on the medians of a run.

    ``quantity`` says what is compared with ``limit``: ``"best_peer"`` and ``"ideal"``
    (parmap's median over theirs), ``"contender"`` (over ``reference``'s median),
    ``"speed"`` (``reference``'s median over parmap's: parmap's speed relative to it, the
    one bar that passes at or *above* its limit) or ``"metric"`` (the metric ``reference``
    of parmap across rounds: its worst value, or its median when ``statistic`` is
    ``"median"``).
    """

    text: str
    quantity: str
    limit: float
    reference: str = ""
    unit: str = "x"
    statistic: str = "worst"

    @property
    def higher_is_better(self) -> bool:
        """True for a ``"speed"`` bar, met when the measured value is at least ``limit``."""
        return self.quantity == "speed"


@dataclasses.dataclass(frozen=True)
class Measurement:
    """What one subprocess reports: the timed seconds, plus workload-specific numbers."""

    seconds: float
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    notes: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Workload:
    """One row of the issue's table."""

    name: str
    title: str
    workers: int
    size: int
    quick_size: int
    #: How the ideal time is known: ``"serial"`` (serial median / workers), ``"sleep"``
    #: (total sleep / workers, exact) or ``""`` (no meaningful ideal).
    ideal: str
    bars: tuple[Bar, ...]
    #: A subprocess running longer than this is stopped and reported as failed.
    limit_seconds: float = 300.0
    #: What the timed seconds cover, for the report.
    timed: str = "one map call on a warm pool"

    def sized(self, quick: bool, scale: float) -> int:
        """The size used in this run: full or quick, times ``scale`` (at least 1)."""
        return max(1, round((self.quick_size if quick else self.size) * scale))

    def sleep_ideal(self, size: int) -> float | None:
        """Exact ideal seconds of a sleep workload: the total sleep spread over the workers."""
        if self.ideal != "sleep":
            return None
        return sum(sleep_seconds(self.name, size)) / self.workers


WORKLOADS: dict[str, Workload] = {
    w.name: w for w in (
        Workload("tiny", "x*x+1 over 200,000 ints", 2, 200_000, 100_000, "serial",
                 (Bar("<= 0.5 x the fastest peer", "best_peer", 0.5),)),
        Workload("cpu", "~1 ms pure-Python loop, 2,000 items", 2, 2_000, 500, "serial",
                 (Bar("<= 1.03 x ideal (serial / workers)", "ideal", 1.03),)),
        # Issue 14: what one worker costs against no pool at all (pickling, the round trips,
        # the caller's own work), on the cpu workload's items: nothing to gain, little to lose.
        Workload("one-worker", "~1 ms pure-Python loop, 2,000 items, 1 worker", 1, 2_000, 500, "serial",
                 (Bar("parmap >= 0.97 x serial speed", "speed", 0.97, "serial"),)),
        # The ideal of "uneven" is measured (serial / workers), not the exact total sleep: each
        # sleep overshoots by the machine's timer slack (0.05-0.25 ms), 2-5 % of a 5 ms item.
        Workload("uneven", "sleep 0-10 ms per item (deterministic), 400 items, 4 workers", 4, 400, 200,
                 "serial", (Bar("<= 1.03 x ideal (serial / workers)", "ideal", 1.03),)),
        # Issue 10, defect 11: load balance from the first chunk on, workers still starting.
        Workload("fresh", "a fresh pool: 6 sleeps of 0.03-0.3 s, 2 workers, start included", 2, 6, 6, "sleep",
                 (Bar("<= 1.05 x the stdlib Pool doing the same", "contender", 1.05, "mp-pool"),),
                 timed="pool creation and the first map, in a process that has used no pool yet"),
        Workload("seed", '40 items x 0.1 s sleep, 4 workers, "auto"', 4, 40, 40, "sleep",
                 (Bar("<= 1.02 x ideal (1.00 s)", "ideal", 1.02),)),
        Workload("repeat", "200 successive maps of 8 items", 2, 200, 100, "",
                 (Bar("<= 0.5 ms per map", "metric", 0.5, "per_map_ms", " ms", statistic="median"),
                  Bar("<= 1.0 x a reused stdlib Pool", "contender", 1.0, "mp-pool")),
                 timed="all the maps, one after the other, on a warm pool"),
        Workload("cold", "fresh process, import + first map of 10 items", 2, 10, 10, "",
                 (Bar("<= 1.5 x the stdlib Pool doing the same", "contender", 1.5, "mp-pool"),),
                 timed="import of the library, pool creation and the first map, in a fresh process"),
        Workload("payload", "64 NumPy arrays of 4 MB, fn = sum", 2, 64, 32, "serial",
                 (Bar("<= 0.5 x joblib's memmapping (warm)", "contender", 0.5, "joblib"),)),
        Workload("stream", "imap over a 2,000,000-int generator", 2, 2_000_000, 250_000, "serial",
                 (Bar("parent peak RSS growth <= 10 MB", "metric", 10.0, "rss_growth_mb", " MB"),
                  # A median: chunk sizes follow measured timings, so one round's window can differ.
                  Bar("read-ahead independent of the input's length: "
                      "read-ahead(n) / read-ahead(n/2) <= 1.25", "metric", 1.25, "readahead_growth",
                      statistic="median"),
                  Bar("<= 1.0 x stdlib imap, chunksize 1000", "contender", 1.0, "mp-pool")),
                 timed="consuming imap over a generator, on a warm pool"),
    )
}


def sleep_seconds(workload: str, size: int) -> list[float]:
    """The per-item sleeps of the ``uneven``, ``fresh`` and ``seed`` workloads."""
    if workload == "seed":
        return [SEED_SECONDS] * size
    if workload == "fresh":
        return [FRESH_PATTERN[i % len(FRESH_PATTERN)] for i in range(size)]
    return [(i * UNEVEN_STRIDE % UNEVEN_STEPS) * UNEVEN_QUANTUM for i in range(size)]


# --------------------------------------------------------------------------- measuring


def measure(workload: Workload, contender: Contender, size: int, *, cpu_loops: int,
            timed_call: Callable[[Callable[[], Any]], tuple[float, Any]] | None = None) -> Measurement:
    """Run ``workload`` with ``contender`` in this (fresh) process; return what was measured.

    ``timed_call`` times the call under test (default: :func:`time_call`); the child passes
    a profiling variant for ``--profile``.

    Raises:
        WrongResult: the contender's results differ from the expected ones.
    """
    timer = timed_call or time_call
    if workload.name == "cold":
        return _measure_cold(contender, workload.workers, size, timer)
    if workload.name == "repeat":
        return _measure_repeat(contender, workload.workers, size, timer)
    if workload.name == "stream":
        return _measure_stream(contender, workload.workers, size, timer)
    if workload.name == "fresh":
        return _measure_fresh(contender, workload.workers, size, timer)
    fn, items, check = _plain_case(workload, size, cpu_loops)
    contender.start(workload.workers)
    contender.map(fn, items[:workload.workers])  # warm: the pool has been used once
    seconds, results = timer(lambda: contender.map(fn, items))
    check(results)
    return Measurement(seconds)


def time_call(call: Callable[[], Any]) -> tuple[float, Any]:
    """``(seconds, result)`` of ``call()``, on the monotonic high-resolution clock."""
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def _plain_case(workload: Workload, size: int,
                cpu_loops: int) -> tuple[Callable[[Any], Any], Sequence[Any], Callable[[list[Any]], None]]:
    """Function, items and result check of a workload timed as one ``map`` call."""
    if workload.name == "tiny":
        items: Sequence[Any] = list(range(size))
        expected = _sum_of_tiny(size)
        return tasks.tiny, items, lambda results: _expect(len(results) == size and sum(results) == expected)
    if workload.name in ("cpu", "one-worker"):
        burn = functools.partial(tasks.burn, loops=cpu_loops)
        samples = sorted({0, size // 2, size - 1})
        expected_samples = [burn(i) for i in samples]
        return burn, list(range(size)), lambda results: _expect(
            len(results) == size and [results[i] for i in samples] == expected_samples)
    if workload.name in ("uneven", "seed"):
        sleeps = sleep_seconds(workload.name, size)
        return tasks.nap, sleeps, lambda results: _expect(results == sleeps)
    if workload.name == "payload":
        import numpy

        arrays = [numpy.full(PAYLOAD_ELEMENTS, float(i)) for i in range(size)]
        sums = [float(i * PAYLOAD_ELEMENTS) for i in range(size)]
        return tasks.array_sum, arrays, lambda results: _expect(results == sums)
    raise ValueError(f"no measurement defined for workload {workload.name!r}")


def _measure_cold(contender: Contender, workers: int, size: int,
                  timer: Callable[[Callable[[], Any]], tuple[float, Any]]) -> Measurement:
    items = list(range(size))

    def start_and_map() -> list[Any]:
        contender.start(workers)
        return contender.map(tasks.tiny, items)

    seconds, results = timer(start_and_map)
    _expect(results == [tasks.tiny(x) for x in items])
    return Measurement(seconds)


def _measure_fresh(contender: Contender, workers: int, size: int,
                   timer: Callable[[Callable[[], Any]], tuple[float, Any]]) -> Measurement:
    sleeps = sleep_seconds("fresh", size)

    def start_and_map() -> list[Any]:
        contender.start(workers)
        return contender.map(tasks.nap, sleeps)

    seconds, results = timer(start_and_map)
    _expect(results == sleeps)
    return Measurement(seconds)


def _measure_repeat(contender: Contender, workers: int, maps: int,
                    timer: Callable[[Callable[[], Any]], tuple[float, Any]]) -> Measurement:
    items = list(range(REPEAT_ITEMS))
    expected = [tasks.tiny(x) for x in items]
    contender.start(workers)
    contender.map(tasks.tiny, items)

    def repeat() -> bool:
        correct = True
        for _ in range(maps):
            correct = contender.map(tasks.tiny, items) == expected and correct
        return correct

    seconds, correct = timer(repeat)
    _expect(correct)
    return Measurement(seconds, {"per_map_ms": seconds / maps * 1000})


def _measure_stream(contender: Contender, workers: int, size: int,
                    timer: Callable[[Callable[[], Any]], tuple[float, Any]]) -> Measurement:
    contender.start(workers)
    contender.map(tasks.tiny, list(range(workers)))
    memory = PeakMemory()
    memory.reset()
    seconds, (total, readahead) = timer(lambda: _consume_stream(contender, size))
    growth = memory.growth_bytes()
    _expect(total == _sum_of_tiny(size))
    half = max(1, size // 2)
    half_total, half_readahead = _consume_stream(contender, half)  # untimed: read-ahead only
    _expect(half_total == _sum_of_tiny(half))
    return Measurement(seconds, {
        "rss_growth_mb": growth / 1e6,
        "readahead": float(readahead),
        "readahead_half": float(half_readahead),
        "readahead_growth": readahead / max(1, half_readahead),
    }, {"rss_method": memory.method})


def _consume_stream(contender: Contender, size: int) -> tuple[int, int]:
    """Sum ``imap(tiny)`` over a generator of ``size`` ints; return ``(sum, max read-ahead)``.

    The read-ahead is how many items had been pulled from the generator but not yet
    returned to the consumer, taken at each result; its maximum is the input window.
    """
    pulled = 0

    def numbers() -> Iterator[int]:
        nonlocal pulled
        for number in range(size):
            pulled += 1
            yield number

    total = readahead = 0
    for consumed, value in enumerate(contender.imap(tasks.tiny, numbers(), STREAM_CHUNKSIZE), start=1):
        total += value
        if pulled - consumed > readahead:  # noqa: PLR1730 - a comparison per item costs less than max()
            readahead = pulled - consumed
    return total, readahead


def _sum_of_tiny(n: int) -> int:
    """``sum(x * x + 1 for x in range(n))`` in closed form."""
    return (n - 1) * n * (2 * n - 1) // 6 + n


def _expect(condition: bool) -> None:
    if not condition:
        raise WrongResult("the contender returned wrong results")
