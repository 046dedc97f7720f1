"""The top of ``benchmarks.md``, for people choosing a library: a plain summary and the contenders.

Everything is worded from the run's numbers (medians), so the summary never drifts from
the tables below it: where parmap is faster or slower than the fastest peer on each
workload, and how it fares against each peer over the workloads both ran. The project's own
targets stay out of the page (the console prints them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .contenders import CONTENDERS, get_contender
from .formatting import format_seconds
from .summary import SUBJECT, WorkloadSummary, ratio

if TYPE_CHECKING:
    from collections.abc import Sequence


#: Ratios within this fraction of 1 are worded "about as fast": the medians of a full run
#: on the 2 shared cores moved by up to 2 % between runs (the uneven and seed workloads).
SAME_SPEED_MARGIN = 0.02


def compare(parmap_seconds: float, other_seconds: float) -> str:
    """``"1.15x faster"``, ``"1.07x slower"`` or ``"about as fast"``: parmap against another time."""
    relative = parmap_seconds / other_seconds
    if abs(relative - 1.0) <= SAME_SPEED_MARGIN:
        return "about as fast"
    if relative < 1.0:
        return f"{other_seconds / parmap_seconds:.2f}x faster"
    return f"{relative:.2f}x slower"


def summary_lines(summaries: Sequence[WorkloadSummary]) -> list[str]:
    """The ``## What this means`` section: per workload, then per library; Markdown lines."""
    lines = [
        "## What this means",
        "",
        '"The fastest peer" is the fastest of the other libraries on that workload (a plain loop, '
        "`serial`, is not one); every figure is a median over the rounds.",
        "",
    ]
    lines += [_headline(summaries), "", *_per_workload(summaries)]
    lines += [""]
    head_to_head = _per_peer(summaries)
    if head_to_head:
        lines += [
            "Against each peer, over the workloads both ran (parmap's time over the peer's):",
            "",
            *head_to_head,
            "",
        ]
    return lines


def _headline(summaries: Sequence[WorkloadSummary]) -> str:
    """One sentence: on how many workloads parmap beat every peer, matched the fastest, or lost."""
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
        return "No workload measured both parmap and a peer."
    parts = [f"parmap was faster than every peer on {len(faster)} of the {total} workloads"]
    if same:
        parts.append(f"about as fast as the fastest on {len(same)} ({', '.join(same)})")
    parts.append(f"slower than the fastest on {len(slower)} ({', '.join(slower)})" if slower else "slower on none")
    return ", ".join(parts[:-1]) + " and " + parts[-1] + "."


def _per_workload(summaries: Sequence[WorkloadSummary]) -> list[str]:
    """One line per workload: parmap against the fastest peer (and the ideal, or serial at 1 worker)."""
    lines = []
    for summary in summaries:
        subject = summary.stats(SUBJECT)
        peer = summary.stats(summary.best_peer) if summary.best_peer else None
        head = f"- **{summary.name}**, {summary.title}:"
        if subject is None or subject.median is None:
            lines.append(f"{head} parmap was not measured.")
            continue
        if peer is None or peer.median is None:
            lines.append(f"{head} parmap {format_seconds(subject.median)}; no peer was measured.")
            continue
        text = (
            f"{head} parmap {format_seconds(subject.median)}, the fastest peer {peer.label} (`{peer.name}`) "
            f"{format_seconds(peer.median)}: parmap is {compare(subject.median, peer.median)}"
        )
        if summary.workers != 1 and summary.to_ideal is not None:
            text += f"; {summary.to_ideal:.2f}x the ideal time ({summary.ideal_basis})"
        serial = summary.stats("serial")
        if summary.workers == 1 and serial is not None and serial.median is not None:
            text += f"; against no pool at all (serial), {compare(subject.median, serial.median)}"
        lines.append(text + ".")
    return lines


def _per_peer(summaries: Sequence[WorkloadSummary]) -> list[str]:
    """One line per peer: on how many workloads parmap was faster, and the ones it was slower on."""
    lines = []
    for name, cls in CONTENDERS.items():
        if not cls.is_peer:
            continue
        faster, slower, same = [], [], []
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
        total = len(faster) + len(slower) + len(same)
        if not total:
            continue
        text = f"- {cls.label} (`{name}`): parmap faster on {len(faster)} of {total}"
        if same:
            text += f", about as fast on {', '.join(same)}"
        text += f"; slower on {', '.join(slower)}." if slower else "; slower on none."
        lines.append(text)
    return lines


def contenders_lines(names: Sequence[str]) -> list[str]:
    """The ``## Contenders`` table: each contender's short name, its label in the tables, and what it runs."""
    lines = [
        "## Contenders",
        "",
        "Each contender maps the same module-level function over the same items, with the workload's number "
        "of worker processes (`workers`), and its results are checked. The short name is used in the ratio "
        "tables and the targets; the label in the per-workload tables and plots.",
        "",
        "| short name | label | what it runs |",
        "|---|---|---|",
    ]
    for name in names:
        cls = get_contender(name)
        lines.append(f"| `{name}` | {cls.label} | {cls.description} |")
    return [*lines, ""]
