"""One measurement in a fresh process: ``python -m benchmarks._child SPEC_JSON RESULT_PATH``.

The spec names the workload, the contender, the size, the number of workers and the cpu
loop count; the result (a JSON object with ``status`` ``"ok"`` or ``"failed"``) is written
to ``RESULT_PATH``, never to stdout, which the libraries under test may use. Only the
standard library and this package are imported before the measurement, so the cold-start
workload times each library's own import.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import traceback
from typing import TYPE_CHECKING, Any

from .contenders import get_contender
from .workloads import WORKLOADS, measure, time_call

if TYPE_CHECKING:
    from collections.abc import Callable


def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure what ``spec`` asks for; failures become ``{"status": "failed", "error": ...}``."""
    workload = dataclasses.replace(WORKLOADS[spec["workload"]], workers=int(spec["workers"]))
    contender = get_contender(spec["contender"])()
    profile_path = spec.get("profile")
    timer = _profiling_timer(profile_path) if profile_path else time_call
    try:
        measurement = measure(workload, contender, int(spec["size"]), cpu_loops=int(spec["cpu_loops"]),
                              timed_call=timer)
    except Exception as error:
        traceback.print_exc()
        return {"status": "failed", "error": f"{type(error).__name__}: {error}"}
    finally:
        try:
            contender.close()
        except Exception:  # never started, or already broken: nothing left to stop
            traceback.print_exc()
    return {"status": "ok", **dataclasses.asdict(measurement)}


def _profiling_timer(path: str) -> Callable[[Callable[[], Any]], tuple[float, Any]]:
    """A timer that also profiles the timed call (this thread only) into ``path``."""

    def timed(call: Callable[[], Any]) -> tuple[float, Any]:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            return time_call(call)
        finally:
            profiler.disable()
            profiler.dump_stats(path)

    return timed


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    result = run_spec(spec)
    with open(argv[2], "w") as output:
        json.dump(result, output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
