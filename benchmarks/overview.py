"""The reader's part of ``benchmarks.md``: at a glance, what it means, each library, the contenders.

Everything is worded from the run's numbers (medians), so the words never drift from the
tables below them: where parmap is faster or slower than the fastest other library on each
workload, and how it fares against each library over the workloads both ran. Only what a
workload stands for and the short form of each contender's call are written here by hand.
The project's own targets (the bars) stay off the page: ``print_console`` shows them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .contenders import CONTENDERS, get_contender
from .formatting import format_seconds
from .summary import SUBJECT, WorkloadSummary, ratio

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

#: Ratios within this fraction of 1 are worded "about as fast": the medians of a full run
#: on the 2 shared cores moved by up to 2 % between runs (the uneven and seed workloads).
SAME_SPEED_MARGIN = 0.02

#: Each workload in plain words: its name in the tables, and the situation it stands for.
WORKLOAD_WORDS: dict[str, tuple[str, str]] = {
    "tiny": ("Many tiny items", "items so cheap that sending them to a worker costs more than computing them"),
    "cpu": ("CPU-bound items", "pure-Python work of about 1 ms per item, the common case"),
    "one-worker": ("One worker", "the same work on a single worker, which shows what a pool costs over a plain loop"),
    "uneven": ("Uneven items", "items of very different lengths, which the workers must share out evenly"),
    "fresh": ("A new pool", "starting a pool, then a first map of a few slow items, all of it timed"),
    "seed": ("Few slow items", "a few slow items that should each get a worker as soon as one is free"),
    "repeat": ("Many small maps", "many maps of a few items, one after another, on the same pool"),
    "cold": ("Cold start", "a new Python process that imports the library, starts a pool and maps a few items"),
    "payload": ("Large arrays", "large NumPy arrays sent to the workers"),
    "stream": ("A long stream", "the results of `imap` over a long generator, used as they come"),
}

#: What each contender runs, short enough for a table cell (`n`: the workload's workers);
#: a contender missing here gets its full ``description``.
SHORT_CALLS: dict[str, str] = {
    "serial": "`[fn(x) for x in items]`: a plain loop, no pool. The baseline, not a competitor.",
    "mp-pool": "`Pool(n).map(fn, items)`, default chunksize (about 4 chunks per worker); "
               "`imap` with chunksize 1000 on the stream.",
    "mp-pool-cs1": "`Pool(n).map(fn, items, chunksize=1)`: one item per task, as written for a "
                   "progress bar that moves per item.",
    "ppe": "`ProcessPoolExecutor(n).map(...)` with Pool's default chunksize (its own is 1).",
    "joblib": "`Parallel(n_jobs=n)(delayed(fn)(x) ...)`: automatic batches, large arrays memory-mapped; "
              "with `n_jobs=1`, in the calling process.",
    "loky": "`get_reusable_executor(n).map(...)` with Pool's default chunksize.",
    "mpire": "`WorkerPool(n_jobs=n, keep_alive=True).map(fn, items)`, its own chunking.",
    "pebble": "`ProcessPool(n).map(...)` with Pool's default chunksize.",
    "parmap": "`parallel(fn, workers=n).map(items)` with its defaults (processes, `chunksize=\"auto\"`); "
              "`imap` on the stream.",
}

#: How the ideal time was found, in plain words.
IDEAL_WORDS = {
    "serial median / workers": "a plain loop's time split evenly over the {workers} workers",
    "total sleep / workers": "the items' total sleep split evenly over the {workers} workers",
}


def compare(parmap_seconds: float, other_seconds: float) -> str:
    """``"1.15x faster"``, ``"1.07x slower"`` or ``"about as fast"``: parmap against another time."""
    relative = parmap_seconds / other_seconds
    if abs(relative - 1.0) <= SAME_SPEED_MARGIN:
        return "about as fast"
    if relative < 1.0:
        return f"{other_seconds / parmap_seconds:.2f}x faster"
    return f"{relative:.2f}x slower"


def plain_name(summary: WorkloadSummary) -> str:
    """The workload's name in plain words (its short name when it has none)."""
    return WORKLOAD_WORDS.get(summary.name, (summary.name, ""))[0]


def ideal_words(summary: WorkloadSummary) -> str:
    """How the workload's ideal time was found, in plain words."""
    if summary.workers == 1 and summary.ideal_basis == "serial median / workers":
        return "a plain loop's own time (one worker has nothing to share)"
    basis = IDEAL_WORDS.get(summary.ideal_basis, summary.ideal_basis)
    return basis.format(workers=summary.workers)


def _than(parmap_seconds: float, other_seconds: float, whom: str) -> str:
    """``"1.30x faster than X"``, ``"about as fast as X"``."""
    verdict = compare(parmap_seconds, other_seconds)
    return f"{verdict} as {whom}" if verdict == "about as fast" else f"{verdict} than {whom}"


def glance_lines(summaries: Sequence[WorkloadSummary], ratio_image: Path | None) -> list[str]:
    """The ``## At a glance`` section: the ratio plot, one sentence, one short row per workload."""
    lines = ["## At a glance", ""]
    if ratio_image is not None:
        lines += [f"![parmap's time over the fastest other library's]({ratio_image.as_posix()})", "",
                  "Each bar is parmap's time over the fastest other library's on that workload: "
                  "below 1 (the dashed line), parmap is faster.", ""]
    lines += [_headline(summaries), "",
              "| workload | parmap | fastest other library | parmap vs it |", "|---|---|---|---|"]
    for summary in summaries:
        subject = summary.stats(SUBJECT)
        peer = summary.stats(summary.best_peer) if summary.best_peer else None
        parmap_cell = format_seconds(subject.median) if subject else "not measured"
        peer_cell = f"{peer.label}, {format_seconds(peer.median)}" if peer else "none measured"
        verdict = "-"
        if subject is not None and subject.median is not None and peer is not None and peer.median:
            verdict = compare(subject.median, peer.median)
        lines.append(f"| {plain_name(summary)} (`{summary.name}`) | {parmap_cell} | {peer_cell} | {verdict} |")
    return [*lines, ""]


def _headline(summaries: Sequence[WorkloadSummary]) -> str:
    """One sentence: on how many workloads parmap beat every other library, matched the fastest, or lost."""
    faster, same, slower = [], [], []
    for summary in summaries:
        if summary.to_best_peer is None:
            continue
        if abs(summary.to_best_peer - 1.0) <= SAME_SPEED_MARGIN:
            same.append(summary.name)
        elif summary.to_best_peer < 1.0:
            faster.append(summary.name)
        else:
            slower.append(summary.name)
    total = len(faster) + len(same) + len(slower)
    if not total:
        return "No workload measured both parmap and another library."
    parts = [f"parmap was faster than every other library on {len(faster)} of the {total} workloads"]
    if same:
        parts.append(f"about as fast as the fastest on {len(same)} ({', '.join(same)})")
    parts.append(f"slower than the fastest on {len(slower)} ({', '.join(slower)})" if slower else "slower on none")
    return ", ".join(parts[:-1]) + " and " + parts[-1] + "."


def meaning_lines(summaries: Sequence[WorkloadSummary]) -> list[str]:
    """The ``## What this means`` section: one paragraph per workload, in plain words."""
    lines = ["## What this means", ""]
    for summary in summaries:
        lines += [_meaning(summary), ""]
    return lines


def _meaning(summary: WorkloadSummary) -> str:
    """What the workload stands for, then parmap against the fastest other library and the ideal."""
    stands_for = WORKLOAD_WORDS.get(summary.name, ("", ""))[1]
    setting = summary.title if "worker" in summary.title else f"{summary.title}, {summary.workers} workers"
    text = f"- **{plain_name(summary)}** (`{summary.name}`): "
    text += f"{stands_for}. Here: {setting}." if stands_for else f"{setting}."
    subject = summary.stats(SUBJECT)
    peer = summary.stats(summary.best_peer) if summary.best_peer else None
    if subject is None or subject.median is None:
        return f"{text} parmap was not measured."
    if peer is None or peer.median is None:
        return f"{text} parmap took {format_seconds(subject.median)}; no other library was measured."
    text += (f" parmap took {format_seconds(subject.median)}, "
             f"{_than(subject.median, peer.median, 'the fastest other library')} "
             f"({peer.label}, {format_seconds(peer.median)}).")
    serial = summary.stats("serial")
    if summary.workers == 1 and serial is not None and serial.median is not None:
        text += (f" Against a plain loop with no pool ({format_seconds(serial.median)}), parmap was "
                 f"{compare(subject.median, serial.median)}.")
    elif summary.to_ideal is not None and summary.ideal_seconds is not None:
        text += (f" The ideal, {ideal_words(summary)}, is {format_seconds(summary.ideal_seconds)}: "
                 f"parmap took {summary.to_ideal:.2f}x that.")
    return text


def head_to_head_lines(summaries: Sequence[WorkloadSummary]) -> list[str]:
    """The ``## parmap against each library`` table: per library, where parmap is faster or slower."""
    rows = []
    for name, cls in CONTENDERS.items():
        if not cls.is_peer:
            continue
        faster, same, slower = [], [], []
        for summary in summaries:
            subject, peer = summary.stats(SUBJECT), summary.stats(name)
            relative = ratio(subject.median if subject else None, peer.median if peer else None)
            if relative is None:
                continue
            if abs(relative - 1.0) <= SAME_SPEED_MARGIN:
                same.append(summary.name)
            elif relative < 1.0:
                faster.append(summary.name)
            else:
                slower.append(f"{summary.name} ({relative:.2f}x)")
        total = len(faster) + len(same) + len(slower)
        if total:
            rows.append(f"| {cls.label} | {len(faster)} of {total} | {', '.join(same) or '-'} "
                        f"| {', '.join(slower) or 'none'} |")
    lines = ["## parmap against each library", ""]
    if not rows:
        return [*lines, "No other library was measured.", ""]
    return [*lines, "Over the workloads both ran. In brackets: how many times longer parmap took.", "",
            "| library | parmap faster | about as fast | parmap slower |", "|---|---|---|---|", *rows, ""]


def contenders_lines(names: Sequence[str]) -> list[str]:
    """The ``## Contenders`` table: each contender's label and short name, and what it runs."""
    lines = [
        "## Contenders",
        "",
        "Each one maps the same module-level function over the same items, with the workload's number of "
        "worker processes (`n`), and its results are checked: a fast wrong answer never counts. Under "
        "each label, the name that `python -m benchmarks --contenders` takes.",
        "",
        "| contender | what it runs |",
        "|---|---|",
    ]
    for name in names:
        cls = get_contender(name)
        lines.append(f"| {cls.label}<br>`{name}` | {SHORT_CALLS.get(name, cls.description)} |")
    return [*lines, ""]
