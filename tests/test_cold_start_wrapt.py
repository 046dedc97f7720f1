"""`benchmarks/cold_start_wrapt.py`: its programs run and its report is well formed (no timings checked)."""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks import cold_start_wrapt


def test_every_timed_program_runs_here() -> None:
    for program in cold_start_wrapt.PROGRAMS.values():
        assert cold_start_wrapt.median_seconds(Path(sys.executable), program, runs=1) > 0


def test_the_report_has_a_row_per_program_and_the_difference() -> None:
    results = {
        "wrapt 1": dict.fromkeys(cold_start_wrapt.PROGRAMS, 0.010),
        "wrapt 2": dict.fromkeys(cold_start_wrapt.PROGRAMS, 0.0125),
    }
    text = cold_start_wrapt.render(results, {"wrapt 1": "1.17.3", "wrapt 2": "2.5.2"}, runs=3)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "ms |" in line]
    assert len(rows) == len(cold_start_wrapt.PROGRAMS)
    assert all(row.endswith("| 10.0 ms | 12.5 ms | +2.5 ms |") for row in rows)
    assert "wrapt 1 (1.17.3)" in text
    assert "Median of 3 fresh interpreters" in text
