"""The benchmark harness runs end to end and writes well-formed reports (correctness only, no timings)."""

from __future__ import annotations

import importlib.util
import json
import struct
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
    headings = (
        "# Benchmarks",
        "## At a glance",
        "## What this means",
        "## parmap against each library",
        "## Contenders",
        "## Workloads in detail",
        "### CPU-bound items (cpu)",
        "### A long stream (stream)",
        "## How the numbers were taken",
    )
    positions = [markdown.index(heading) for heading in headings]
    assert positions == sorted(positions)
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
    assert [b.verdict for b in bars.evaluate(tiny)] == ["MISS"]  # 0.75x: the bar is 0.5x the fastest peer
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
        ("async-tasks", "parmap map"),
        ("async-tasks", "parmap await map_async"),
        ("async-tasks", "aiomultiprocess"),
        ("async-tasks", "gather (unbounded)"),
        ("async-tasks", "gather (Semaphore 100)"),
        ("await-overhead", "parmap await map_async"),
        ("await-overhead", "parmap map (blocking)"),
        ("await-overhead", "run_in_executor, per item"),
        ("await-overhead", "run_in_executor, one chunk"),
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
        "parmap shared=",
        "parmap shared= (frozen table)",
        "parmap initializer",
        "parmap closure",
        "parmap as an argument",
        "Pool initializer (fork)",
        "Pool initializer (spawn)",
        "joblib",
        "in-process loop",
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


def _record(name: str, seconds: list[float], **metrics: float) -> Any:
    from benchmarks import runner

    samples = [runner.Sample(i + 1, runner.STATUS_OK, value, dict(metrics)) for i, value in enumerate(seconds)]
    return runner.Record(name, samples=samples)


@pytest.mark.parametrize(
    ("serial", "parmap", "verdict"),
    [([1.0, 1.0, 1.0], [1.03, 1.02, 1.0], "PASS"), ([1.0, 1.0, 1.0], [1.04, 1.04, 0.9], "MISS")],
    ids=["0.98x-serial-speed", "0.96x-serial-speed"],
)
def test_one_worker_bar_is_parmaps_speed_relative_to_serial(
    serial: list[float], parmap: list[float], verdict: str
) -> None:
    """The "speed" bar: serial's median over parmap's, met at or above 0.97."""
    from benchmarks import bars, runner, summary, workloads

    (bar,) = workloads.WORKLOADS["one-worker"].bars
    assert (bar.quantity, bar.limit, bar.reference, bar.higher_is_better) == ("speed", 0.97, "serial", True)
    plan = runner.Plan(workloads=["one-worker"], contenders=["serial", "mp-pool", "parmap"], rounds=3)
    results: runner.Results = {
        "one-worker": {
            "serial": _record("serial", serial),
            "mp-pool": _record("mp-pool", [5.0]),
            "parmap": _record("parmap", parmap),
        }
    }
    (one_worker,) = summary.summarise(plan, results)
    assert one_worker.workers == 1
    assert one_worker.ideal_seconds == pytest.approx(1.0)  # serial / 1 worker
    (result,) = bars.evaluate(one_worker)
    assert result.measured == pytest.approx(1.0 / sorted(parmap)[1])
    assert result.verdict == verdict
    assert "serial median" in result.detail


def test_one_worker_bar_without_serial_is_not_judged() -> None:
    from benchmarks import bars, runner, summary

    plan = runner.Plan(workloads=["one-worker"], contenders=["serial", "parmap"], rounds=1)
    results: runner.Results = {
        "one-worker": {
            "serial": runner.Record("serial", runner.STATUS_FAILED, "boom"),
            "parmap": _record("parmap", [1.0]),
        }
    }
    (one_worker,) = summary.summarise(plan, results)
    assert [result.verdict for result in bars.evaluate(one_worker)] == ["n/a"]


def test_one_worker_workload_runs_each_contender_with_one_worker() -> None:
    """The cpu items with ``workers=1``: serial in this process, parmap in a fresh one (as the runner does)."""
    from benchmarks import contenders, runner, workloads

    workload = workloads.WORKLOADS["one-worker"]
    assert (workload.workers, workload.size, workload.ideal) == (1, 2_000, "serial")
    assert workloads.measure(workload, contenders.Serial(), 5, cpu_loops=10).seconds > 0
    plan = runner.Plan(workloads=["one-worker"], contenders=["parmap"], rounds=1, sizes={"one-worker": 5}, cpu_loops=10)
    sample = runner.measure_once(plan, "one-worker", "parmap", 1)
    assert sample.status == runner.STATUS_OK, sample.error
    assert sample.seconds is not None
    assert sample.seconds > 0


def _made_up_report() -> Any:
    """A report of three workloads where parmap is faster, about as fast, and slower than the fastest peer."""
    from benchmarks import bars, report, runner, summary

    plan = runner.Plan(
        workloads=["tiny", "cpu", "one-worker"], contenders=["serial", "mp-pool", "ppe", "parmap"], rounds=3
    )
    results: runner.Results = {
        "tiny": {
            "serial": _record("serial", [0.02]),
            "mp-pool": _record("mp-pool", [0.08]),
            "ppe": _record("ppe", [0.16]),
            "parmap": _record("parmap", [0.04]),
        },
        "cpu": {
            "serial": _record("serial", [2.0]),
            "mp-pool": _record("mp-pool", [1.0]),
            "ppe": _record("ppe", [1.2]),
            "parmap": _record("parmap", [1.01]),
        },
        "one-worker": {
            "serial": _record("serial", [2.0]),
            "mp-pool": _record("mp-pool", [2.05]),
            "ppe": runner.Record("ppe", runner.STATUS_MISSING, "not installed"),
            "parmap": _record("parmap", [2.5]),
        },
    }
    meta = {
        "command": "python -m benchmarks",
        "date": "2026-01-01 00:00 UTC",
        "python": "CPython 3.12.1",
        "platform": "Linux x86_64",
        "usable_cpus": 2,
        "load_average_start": 0.1,
        "load_average_end": 0.2,
        "rounds": 3,
        "quick": False,
        "scale": 1.0,
        "cpu_loops": 1,
        "versions": {"parmap-decorator": "0.1"},
        "revision": "abc1234",
    }
    summaries = summary.summarise(plan, results)
    return report.Report(meta, summaries, [bar for s in summaries for bar in bars.evaluate(s)])


def test_page_leads_with_a_glance_and_words_it_from_the_numbers() -> None:
    from benchmarks import report

    markdown = report.to_markdown(_made_up_report(), [Path("img/bench-ratios.png")])
    assert markdown.startswith("# Benchmarks\n\n<!-- Generated by `python -m benchmarks`; do not edit by hand. -->")
    intro = markdown[: markdown.index("## At a glance")]
    assert "**Lower times are better.**" in intro
    assert "2 CPUs, CPython 3.12.1, Linux x86_64" in intro
    assert "median of 3 interleaved rounds" in intro
    assert "read the ratios between libraries rather than the absolute times" in intro

    # At a glance: the ratio plot, one sentence, then one short row per workload.
    glance = markdown[markdown.index("## At a glance") : markdown.index("## What this means")]
    assert "![parmap's time over the fastest other library's](img/bench-ratios.png)" in glance
    assert (
        "parmap was faster than every other library on 1 of the 3 workloads, about as fast as the fastest on 1 "
        "(cpu) and slower than the fastest on 1 (one-worker)."
    ) in glance
    assert "| workload | parmap | fastest other library | parmap vs it |" in glance
    assert "| Many tiny items (`tiny`) | 40 ms | multiprocessing.Pool, 80 ms | 2.00x faster |" in glance
    assert "| CPU-bound items (`cpu`) | 1.010 s | multiprocessing.Pool, 1.000 s | about as fast |" in glance
    assert "| One worker (`one-worker`) | 2.500 s | multiprocessing.Pool, 2.050 s | 1.22x slower |" in glance

    # What this means: plain words, slower said plainly, no "peer" jargon.
    meaning = markdown[markdown.index("## What this means") : markdown.index("## parmap against each library")]
    assert "- **Many tiny items** (`tiny`): items so cheap that sending them" in meaning
    assert (
        "parmap took 40 ms, 2.00x faster than the fastest other library (multiprocessing.Pool, 80 ms). "
        "The ideal, a plain loop's time split evenly over the 2 workers, is 10 ms: parmap took 4.00x that."
    ) in meaning
    assert "parmap took 1.010 s, about as fast as the fastest other library" in meaning
    assert "parmap took 2.500 s, 1.22x slower than the fastest other library" in meaning
    assert "Against a plain loop with no pool (2.000 s), parmap was 1.25x slower." in meaning
    assert "peer" not in meaning

    head_to_head = markdown[markdown.index("## parmap against each library") : markdown.index("## Contenders")]
    assert "| multiprocessing.Pool | 1 of 3 | cpu | one-worker (1.22x) |" in head_to_head
    assert "| ProcessPoolExecutor | 2 of 2 | - | none |" in head_to_head  # ppe was not installed on one-worker


def test_page_sections_come_in_order_and_leave_the_targets_out() -> None:
    """The project's targets (PASS/MISS) are the developers' yardstick: the console shows them, not the page."""
    import io

    from benchmarks import report

    made_up = _made_up_report()
    markdown = report.to_markdown(made_up, [Path("img/bench-ratios.png"), Path("img/bench-tiny.png")])
    headings = [line for line in markdown.splitlines() if line.startswith("## ")]
    assert headings == [
        "## At a glance",
        "## What this means",
        "## parmap against each library",
        "## Contenders",
        "## Workloads in detail",
        "## How the numbers were taken",
    ]
    assert "### Many tiny items (tiny)" in markdown
    assert "![tiny](img/bench-tiny.png)" in markdown
    for word in ("PASS", "MISS", "target:", "own targets"):
        assert word not in markdown[: markdown.index("## How the numbers were taken")]
    taken = markdown[markdown.index("## How the numbers were taken") :]
    assert "own performance targets" in taken
    assert "printed by `python -m benchmarks` in the terminal" in taken
    console = io.StringIO()
    report.print_console(made_up, [], console)
    assert "MISS  one-worker parmap >= 0.97 x serial speed: measured 0.800x" in console.getvalue()


def test_page_keeps_its_lines_short() -> None:
    """Read at 1280 px: no table row or code span of the page is overly long."""
    import re

    from benchmarks import report

    made_up = _made_up_report()
    markdown = report.to_markdown(made_up, [])
    for line in markdown.splitlines():
        if line.startswith("|"):
            assert len(line) <= 200, line
            for cell in line.strip("|").split(" | "):
                assert len(cell) <= 130, cell
    for span in re.findall(r"`([^`]+)`", markdown):
        assert len(span) <= 45, span


def test_page_explains_every_contender_label() -> None:
    from benchmarks import contenders, overview, report

    markdown = report.to_markdown(_made_up_report(), [])
    table = markdown[markdown.index("## Contenders") : markdown.index("## Workloads in detail")]
    for name in ("serial", "mp-pool", "ppe", "parmap"):
        cls = contenders.get_contender(name)
        assert f"| {cls.label}<br>`{name}` | {overview.SHORT_CALLS[name]} |" in table
    assert "`mp-pool-cs1`" not in table  # only the contenders of this run
    assert set(overview.SHORT_CALLS) == set(contenders.CONTENDERS)
    assert all(call.startswith("`") and call.endswith(".") for call in overview.SHORT_CALLS.values())


def test_every_workload_is_named_in_plain_words() -> None:
    from benchmarks import overview, workloads

    assert set(overview.WORKLOAD_WORDS) == set(workloads.WORKLOADS)


def test_the_report_survives_its_json_round_trip() -> None:
    """`from_json` is the inverse of `to_json`, through the JSON text as written, and leaves its input alone."""
    from benchmarks import report

    made_up = _made_up_report()
    saved = json.loads(json.dumps(report.to_json(made_up), indent=2))
    copy = json.loads(json.dumps(saved))
    rebuilt = report.from_json(saved)
    assert rebuilt == made_up
    assert saved == copy
    assert report.to_json(rebuilt) == saved
    assert report.to_markdown(rebuilt, []) == report.to_markdown(made_up, [])


def test_render_writes_the_page_again_from_a_saved_json(tmp_path: Path) -> None:
    """`python -m benchmarks --render JSON [--output-dir DIR]`: the page from the saved numbers, nothing run."""
    from benchmarks import report

    made_up = _made_up_report()
    saved = tmp_path / "run" / "benchmarks.json"
    saved.parent.mkdir()
    saved.write_text(json.dumps(report.to_json(made_up), indent=2) + "\n")
    # The plots already next to the JSON are referenced as they are, never drawn again.
    (saved.parent / "img").mkdir()
    for name in ("tiny", "cpu", "one-worker", "ratios"):
        (saved.parent / "img" / f"bench-{name}.png").write_bytes(PNG_SIGNATURE)
    rendered, files = report.render(saved)
    assert rendered == made_up
    assert files == [saved.parent / "benchmarks.md"]
    images = [Path(f"img/bench-{name}.png") for name in ("tiny", "cpu", "one-worker", "ratios")]
    assert files[0].read_text() == report.to_markdown(made_up, images)
    assert (saved.parent / "img" / "bench-tiny.png").read_bytes() == PNG_SIGNATURE

    command = [
        sys.executable,
        "-m",
        "benchmarks",
        "--render",
        str(saved),
        "--output-dir",
        str(tmp_path / "out"),
        "--no-plots",
    ]
    completed = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=50, check=False)
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "out" / "benchmarks.md").read_text() == report.to_markdown(made_up, [])
    assert not (tmp_path / "out" / "benchmarks.json").exists()
    assert "bars missed." in completed.stdout  # the targets: in the terminal


def test_the_committed_page_is_what_render_makes_of_the_committed_json() -> None:
    """docs/benchmarks.md is generated: after a change to its wording, run `python -m benchmarks --render`."""
    from benchmarks import report

    docs = PROJECT_ROOT / "docs"
    rebuilt = report.from_json(json.loads((docs / "benchmarks.json").read_text()))
    images = [
        path.relative_to(docs)
        for name in [*(s.name for s in rebuilt.summaries), "ratios"]
        for path in [docs / "img" / f"bench-{name}.png"]
        if path.is_file()
    ]
    assert (docs / "benchmarks.md").read_text() == report.to_markdown(rebuilt, images)


def test_every_contender_says_what_it_runs() -> None:
    from benchmarks import contenders

    for cls in contenders.CONTENDERS.values():
        assert cls.description.startswith("`")
        assert cls.description.endswith(".")


def test_memory_map_reports_every_contender(tmp_path: Path) -> None:
    """``python -m benchmarks.memory_map`` at a toy size: every contender has a peak, the floor a ratio of 1."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.memory_map",
        "--size",
        "20000",
        "--rounds",
        "1",
        "--output-dir",
        str(tmp_path),
    ]
    completed = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=50, check=False)
    assert completed.returncode == 0, completed.stderr
    data = json.loads((tmp_path / "benchmarks-memory.json").read_text())
    assert {"command", "python", "usable_cpus", "rounds", "size", "workers"} <= set(data["meta"])
    assert data["meta"]["size"] == 20_000
    rows = {row["name"]: row for row in data["results"]}
    assert set(rows) == {"list comprehension", "parmap map", "Pool.map", "Pool.imap, chunksize=1000"}
    for row in rows.values():
        assert row["status"] == "ok", row["reason"]
        assert len(row["samples"]) == 1
        assert row["median_mb"] == row["max_mb"] >= 0
        assert row["result_mb"] > 0
    assert rows["list comprehension"]["to_floor"] == pytest.approx(1.0)
    markdown = (tmp_path / "benchmarks-memory.md").read_text()
    assert "# Benchmark: memory of the caller during one large map" in markdown
    assert "| parmap map |" in markdown


def test_list_bytes_counts_the_list_and_its_own_ints() -> None:
    from benchmarks import memory_map

    values = [10**12 + i for i in range(100)]
    pointer = struct.calcsize("P")
    assert memory_map.list_bytes(values) == sys.getsizeof([]) + 100 * pointer + sum(sys.getsizeof(v) for v in values)
    assert memory_map.list_bytes([1, 2, 3]) == sys.getsizeof([]) + 3 * pointer  # cached small ints: shared
    assert memory_map.sum_of_tiny(1000) == sum(x * x + 1 for x in range(1000))
