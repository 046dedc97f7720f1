"""Run the plan: rounds of (workload, contender) measurements, each in a fresh subprocess.

Rounds are interleaved (round 1 measures every workload and contender, then round 2, ...)
and the contenders' order rotates from round to round, so slow drift of the machine, and
whatever a previous subprocess left behind (page cache, CPU frequency), hits them alike.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .contenders import get_contender
from .workloads import WORKLOADS, Workload

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

#: The directory that holds the ``benchmarks`` package (and ``parmap``): children import both from it.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: Lines of a failed child's stderr kept in the report.
STDERR_TAIL_LINES = 5

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_MISSING = "not installed"
STATUS_SKIPPED = "skipped"


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one run measures."""

    workloads: Sequence[str]
    contenders: Sequence[str]
    rounds: int
    quick: bool = False
    scale: float = 1.0
    cpu_loops: int = 1
    #: Workers per workload, when they differ from the issue's (the scaling script).
    workers: dict[str, int] = dataclasses.field(default_factory=dict)
    #: Sizes per workload that override ``quick`` and ``scale`` (the scaling script's ``--items``).
    sizes: dict[str, int] = dataclasses.field(default_factory=dict)
    #: Directory for cProfile output of every measurement, or ``None``.
    profile_dir: Path | None = None

    def workload(self, name: str) -> Workload:
        """The workload ``name`` with this plan's worker count."""
        workload = WORKLOADS[name]
        return dataclasses.replace(workload, workers=self.workers.get(name, workload.workers))

    def size(self, name: str) -> int:
        """Items (or maps, or arrays) of workload ``name`` in this plan."""
        if name in self.sizes:
            return self.sizes[name]
        return self.workload(name).sized(self.quick, self.scale)


@dataclasses.dataclass
class Sample:
    """One subprocess's report."""

    round: int
    status: str
    seconds: float | None = None
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    notes: dict[str, str] = dataclasses.field(default_factory=dict)
    error: str = ""


@dataclasses.dataclass
class Record:
    """Every sample of one contender on one workload, or why there are none."""

    contender: str
    status: str = STATUS_OK
    reason: str = ""
    samples: list[Sample] = dataclasses.field(default_factory=list)


Results = dict[str, dict[str, Record]]


def run(plan: Plan, log: Callable[[str], None] = print) -> Results:
    """Measure every workload and contender of ``plan``, ``plan.rounds`` times, interleaved."""
    results: Results = {name: {} for name in plan.workloads}
    compile_sources()
    for name in plan.workloads:
        for contender in plan.contenders:
            cls = get_contender(contender)
            record = results[name][contender] = Record(contender)
            if not cls.installed():
                record.status, record.reason = STATUS_MISSING, f"{cls.module} is not installed"
            elif name in cls.skips:
                record.status, record.reason = STATUS_SKIPPED, cls.skips[name]
    for round_number in range(1, plan.rounds + 1):
        order = _rotated(plan.contenders, round_number - 1)
        for name in plan.workloads:
            for contender in order:
                record = results[name][contender]
                if record.status in (STATUS_MISSING, STATUS_SKIPPED):
                    continue
                sample = measure_once(plan, name, contender, round_number)
                record.samples.append(sample)
                shown = f"{sample.seconds:9.4f} s" if sample.seconds is not None else f"FAILED: {sample.error}"
                log(f"round {round_number}/{plan.rounds}  {name:<8} {contender:<12} {shown}")
    for by_contender in results.values():
        for record in by_contender.values():
            if record.samples and not any(s.status == STATUS_OK for s in record.samples):
                record.status = STATUS_FAILED
                record.reason = record.samples[-1].error
    return results


def compile_sources() -> None:
    """Byte-compile ``parmap`` and ``benchmarks`` before any child imports them.

    The peers come from wheels, which pip byte-compiles at install time; parmap is imported
    from the source tree. Where ``PYTHONDONTWRITEBYTECODE`` is set, every fresh child would
    otherwise compile parmap from source again (about 20 ms), which the cold-start workload
    would charge to parmap alone.
    """
    import compileall

    for package in ("parmap", "benchmarks"):
        compileall.compile_dir(PROJECT_ROOT / package, quiet=1)


def measure_once(plan: Plan, workload: str, contender: str, round_number: int) -> Sample:
    """One measurement in a fresh subprocess."""
    spec: dict[str, Any] = {
        "workload": workload, "contender": contender, "workers": plan.workload(workload).workers,
        "size": plan.size(workload), "cpu_loops": plan.cpu_loops,
    }
    if plan.profile_dir is not None:
        plan.profile_dir.mkdir(parents=True, exist_ok=True)
        spec["profile"] = str(plan.profile_dir / f"{workload}-{contender}-r{round_number}.pstats")
    outcome = run_child(spec, plan.workload(workload).limit_seconds)
    if outcome.get("status") != STATUS_OK:
        return Sample(round_number, STATUS_FAILED, error=str(outcome.get("error", "no result")))
    return Sample(round_number, STATUS_OK, float(outcome["seconds"]), dict(outcome.get("metrics", {})),
                  dict(outcome.get("notes", {})))


def run_child(spec: dict[str, Any], limit_seconds: float) -> dict[str, Any]:
    """Run ``python -m benchmarks._child`` on ``spec``; return its JSON result.

    The child gets its own process group, so that a child stopped at ``limit_seconds``
    takes its pool's workers with it.
    """
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(PROJECT_ROOT), environment.get("PYTHONPATH", "")) if part)
    with tempfile.TemporaryDirectory(prefix="parmap-bench-") as scratch:
        result_path = os.path.join(scratch, "result.json")
        command = [sys.executable, "-m", "benchmarks._child", json.dumps(spec), result_path]
        with subprocess.Popen(command, cwd=PROJECT_ROOT, env=environment, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, start_new_session=True) as child:
            try:
                _, stderr = child.communicate(timeout=limit_seconds)
            except subprocess.TimeoutExpired:
                _kill_group(child)
                child.communicate()
                return {"status": STATUS_FAILED, "error": f"timed out after {limit_seconds:.0f} s"}
            finally:
                _kill_group(child)  # workers a library left behind would slow the next measurement
        try:
            with open(result_path) as result_file:
                result: dict[str, Any] = json.load(result_file)
        except (OSError, ValueError):
            tail = " | ".join(stderr.strip().splitlines()[-STDERR_TAIL_LINES:])
            return {"status": STATUS_FAILED, "error": f"exit code {child.returncode}: {tail or 'no output'}"}
    return result


def _kill_group(child: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)


def _rotated(items: Sequence[str], shift: int) -> list[str]:
    if not items:
        return []
    shift %= len(items)
    return [*items[shift:], *items[:shift]]
