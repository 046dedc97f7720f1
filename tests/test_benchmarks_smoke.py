"""The benchmark harness runs end to end and writes well-formed reports (correctness only, no timings)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VERDICTS = {"PASS", "MISS", "n/a"}


def test_harness_writes_well_formed_reports(tmp_path: Path) -> None:
    """Two workloads, two contenders, one round, tiny sizes: every file is produced and parses."""
    command = [
        sys.executable,
        "-m",
        "benchmarks",
        "--only",
        "cpu,stream",
        "--contenders",
        "serial,parmap",
        "--rounds",
        "1",
        "--scale",
        "0.002",
        "--output-dir",
        str(tmp_path),
    ]
    completed = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=50, check=False)
    assert completed.returncode == 0, completed.stderr

    data = json.loads((tmp_path / "benchmarks.json").read_text())
    assert {"command", "python", "usable_cpus", "rounds", "versions"} <= set(data["meta"])
    assert [workload["name"] for workload in data["workloads"]] == ["cpu", "stream"]
    for workload in data["workloads"]:
        by_name = {entry["name"]: entry for entry in workload["contenders"]}
        assert set(by_name) == {"serial", "parmap"}
        for entry in by_name.values():
            assert entry["status"] == "ok", entry["reason"]
            assert len(entry["samples"]) == 1
            assert entry["min"] <= entry["median"] <= entry["max"]
        assert workload["bars"]
        assert {bar["verdict"] for bar in workload["bars"]} <= VERDICTS
    stream = next(w for w in data["workloads"] if w["name"] == "stream")
    parmap_stream = next(e for e in stream["contenders"] if e["name"] == "parmap")
    assert {"rss_growth_mb", "readahead", "readahead_half", "readahead_growth"} <= set(parmap_stream["metrics"])

    markdown = (tmp_path / "benchmarks.md").read_text()
    for heading in ("# parmap benchmarks", "## Bars", "## parmap's ratios", "## cpu:", "## stream:"):
        assert heading in markdown
    assert "| **parmap** |" in markdown

    if importlib.util.find_spec("matplotlib") is not None:
        for name in ("cpu", "stream"):
            assert (tmp_path / "img" / f"bench-{name}.png").read_bytes().startswith(PNG_SIGNATURE)


def test_bars_are_judged_on_medians() -> None:
    """Made-up samples: the best peer excludes serial and parmap; a missing reference gives n/a."""
    from benchmarks import bars, runner, summary

    plan = runner.Plan(
        workloads=["tiny", "repeat", "payload"], contenders=["serial", "mp-pool", "ppe", "parmap"], rounds=3
    )

    def record(name: str, seconds: list[float], **metrics: float) -> runner.Record:
        samples = [runner.Sample(i + 1, runner.STATUS_OK, value, dict(metrics)) for i, value in enumerate(seconds)]
        return runner.Record(name, samples=samples)

    results: runner.Results = {
        "tiny": {
            "serial": record("serial", [0.01, 0.02, 0.03]),
            "mp-pool": record("mp-pool", [1.0, 2.0, 9.0]),
            "ppe": record("ppe", [3.0, 3.0, 3.0]),
            "parmap": record("parmap", [1.5, 1.6, 0.1]),
        },
        "repeat": {
            "mp-pool": record("mp-pool", [0.2, 0.2, 0.2]),
            "parmap": record("parmap", [0.1, 0.1, 0.1], per_map_ms=0.4),
        },
        "payload": {
            "mp-pool": runner.Record("mp-pool", runner.STATUS_MISSING, "not installed"),
            "parmap": record("parmap", [1.0]),
        },
    }
    summaries = {s.name: s for s in summary.summarise(plan, results)}

    tiny = summaries["tiny"]
    assert tiny.best_peer == "mp-pool"
    assert tiny.to_best_peer == pytest.approx(1.5 / 2.0)
    assert tiny.ideal_seconds == pytest.approx(0.02 / 2)
    assert [b.verdict for b in bars.evaluate(tiny)] == ["PASS"]
    assert [b.verdict for b in bars.evaluate(summaries["repeat"])] == ["PASS", "PASS"]
    assert [b.verdict for b in bars.evaluate(summaries["payload"])] == ["n/a"]


def test_missing_package_is_reported_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A contender whose package is absent is reported as "not installed" and no process starts."""
    from benchmarks import contenders, runner

    monkeypatch.setattr(contenders.Pebble, "module", "parmap_benchmarks_no_such_package")
    plan = runner.Plan(workloads=["cpu"], contenders=["pebble"], rounds=2)
    record = runner.run(plan, log=lambda line: None)["cpu"]["pebble"]
    assert (record.status, record.samples) == (runner.STATUS_MISSING, [])
    assert "not installed" in record.reason


def test_ceiling_check_reports_three_efficiencies() -> None:
    """``python -m benchmarks.ceiling`` at a toy size: one line per round, then the medians."""
    command = [sys.executable, "-m", "benchmarks.ceiling", "--workers", "2", "--items", "8", "--rounds", "2"]
    completed = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=50, check=False)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[1:]] == ["round 1", "round 2", "median efficiency"]
    for line in lines[1:]:
        values = dict(zip(*[iter(line.split(":")[1].split())] * 2))
        assert set(values) == {"independent", "parmap", "mp-pool"}
        assert all(float(value) > 0 for value in values.values())


def _run_one_round(module: str, scale: float, report: Path) -> Any:
    """Run a one-file benchmark for one round at `scale`, its reports beside `report`; its JSON."""
    command = [sys.executable, "-m", module, "--rounds", "1", "--scale", str(scale), "--output-dir", str(report.parent)]
    completed = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=50, check=False)
    assert completed.returncode == 0, completed.stderr
    return json.loads(report.read_text())


def test_asyncio_maps_writes_well_formed_reports(tmp_path: Path) -> None:
    """``python -m benchmarks.asyncio_maps`` at a toy size: every contender has a median, every ratio a value."""
    pytest.importorskip("aiomultiprocess")
    data = _run_one_round("benchmarks.asyncio_maps", 0.05, tmp_path / "benchmarks-asyncio.json")
    assert {"command", "python", "usable_cpus", "rounds", "versions", "sizes", "ideal_seconds"} <= set(data["meta"])
    rows = {(row["workload"], row["name"]): row for row in data["results"]}
    assert set(rows) == {
        ("async-tasks", "parmap map"), ("async-tasks", "parmap await map_async"), ("async-tasks", "aiomultiprocess"),
        ("async-tasks", "gather (unbounded)"), ("async-tasks", "gather (Semaphore 100)"),
        ("await-overhead", "parmap await map_async"), ("await-overhead", "parmap map (blocking)"),
        ("await-overhead", "run_in_executor, per item"), ("await-overhead", "run_in_executor, one chunk"),
    }
    for row in rows.values():
        assert row["status"] == "ok", row["reason"]
        assert len(row["samples"]) == 1
        assert 0 < row["min"] <= row["median"] <= row["max"]
    assert data["ratios"]
    assert all(entry["ratio"] > 0 for entry in data["ratios"])

    markdown = (tmp_path / "benchmarks-asyncio.md").read_text()
    headings = ("# Benchmark: parmap's asyncio API", "## async-tasks:", "## await-overhead:", "## Ratios of medians")
    for heading in headings:
        assert heading in markdown


def test_shared_data_writes_well_formed_reports(tmp_path: Path) -> None:
    """``python -m benchmarks.shared_data`` at a toy size: every contender has both phases, every ratio a value."""
    pytest.importorskip("numpy")
    pytest.importorskip("joblib")
    data = _run_one_round("benchmarks.shared_data", 0.01, tmp_path / "benchmarks-shared.json")
    assert {"command", "python", "usable_cpus", "rounds", "versions", "sizes", "table_megabytes"} <= set(data["meta"])
    assert data["meta"]["sizes"] == {"table_elements": 250_000, "lookups": 100}
    rows = {row["name"]: row for row in data["results"]}
    assert set(rows) == {
        "parmap shared=", "parmap shared= (frozen table)", "parmap initializer", "parmap closure",
        "parmap as an argument", "Pool initializer (fork)", "Pool initializer (spawn)", "joblib", "in-process loop",
    }
    for row in rows.values():
        assert row["status"] == "ok", row["reason"]
        assert set(row["phases"]) == {"cold", "warm"}
        for phase in row["phases"].values():
            assert len(phase["samples"]) == 1
            assert 0 < phase["min"] <= phase["median"] <= phase["max"]
    assert {(entry["phase"], entry["denominator"]) for entry in data["ratios"]} == {
        (phase, name) for phase in ("cold", "warm") for name in rows if name != "parmap shared="
    }
    assert all(entry["ratio"] > 0 for entry in data["ratios"])

    markdown = (tmp_path / "benchmarks-shared.md").read_text()
    for heading in ("# Benchmark: one large table shared by every worker", "## Ratios of medians"):
        assert heading in markdown
    assert "| parmap shared= |" in markdown
