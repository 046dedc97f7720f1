"""Progress bars: a tqdm adapter and a no-op stand-in.

tqdm is imported only when a bar is asked for, so workers and bar-less runs never load it.
The caller closes the bar in a `finally` block (see `_decorator`), on success,
failure and Ctrl-C alike.

Policy apart from mechanism: [bar_settings][parmap._progress.bar_settings] decides the
keyword arguments of a bar from plain facts (nested or not, the line below, whether the
bar's stream is a terminal), [shown_count][parmap._progress.shown_count] decides the count
a bar shows, and [landing][parmap._progress.landing] how to put that count into tqdm
exactly; [make_progress][parmap._progress.make_progress] gathers the facts and
[TqdmProgress][parmap._progress.TqdmProgress] applies the decisions.

The count. The engine moves a bar by whole items and, where a running task called
`report_progress`, by fractions of an item (multiples of `1/FRACTION_STEPS`, which add
and subtract exactly), taken back when the item's chunk settles. tqdm prints its count
with `str()`: a float count shows as `8.0/8` even when it is whole, and a fraction as
`0.2900390625/1`. So the bar is kept on the count [shown_count][parmap._progress.shown_count]
gives: an `int` whenever it is whole, otherwise a fraction cut to `SHOWN_DECIMALS`.

Nested maps (a map called inside a task, or inside the loop over another bar's `imap`)
show their bars under the caller's with `leave=False` by default, so that only the
outer bar stays once they finish:

* in the caller's process (thread backend; serial backend; a loop body), tqdm places the
  inner bar on the first free line under the bars open in this process;
* in a worker process, which cannot see the caller's bars, the inner bar is put on line
  `nesting depth` (plus one line per bar already open in that thread): under the
  caller's bar, never over it. Inner bars of several worker processes share that line,
  each drawing when it updates.

The user's own `leave` or `position` in a `progress=` dict wins.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from ._config import ProgressOption
from .backends._worker import in_worker_process, nesting_depth

#: Seconds between two redraws of a bar whose stream is not a terminal (a CI log, a file,
#: a pipe), unless the `progress=` dict sets its own `mininterval`. Such a stream cannot
#: redraw a line: each of tqdm's redraws (every 0.1 s by default) appends about 80 bytes,
#: so a ten-minute map would log 6,000 bar lines (~480 kB). One every 5 s makes 120 lines
#: for ten minutes and 12 for a minute, and still shows a long map is alive; 5 s stays
#: under tqdm's `maxinterval` (10 s), past which tqdm's monitor lowers `miniters` to draw
#: sooner. The final count is always written when the bar closes.
NON_TTY_MININTERVAL = 5.0

#: Decimals a fractional count shows (`7.25/8`): hundredths of an item are as fine as the
#: bar's percentage for a one-item map, and keep the bar's width steady while it moves.
SHOWN_DECIMALS = 2

_SHOWN_SCALE: int = 10**SHOWN_DECIMALS

_local = threading.local()  # .bars: the TqdmProgress bars open in this thread (see _open_bars)


class NullProgress:
    """Stands in when no bar is wanted."""

    def update(self, n: float) -> None:
        pass

    def close(self) -> None:
        pass


def shown_count(done: float) -> int | float:
    """The count a bar shows for `done` items: an `int` when whole (`8`, never `8.0`).

    A fractional count is cut (not rounded) to `SHOWN_DECIMALS`, so a bar shows `8/8` only
    once eight items are done, never for `7.999`; a fraction under a hundredth of an item
    shows as the whole count below it.
    """
    if float(done).is_integer():
        return int(done)
    hundredths = math.floor(done * _SHOWN_SCALE)
    if hundredths % _SHOWN_SCALE == 0:
        return hundredths // _SHOWN_SCALE
    return hundredths / _SHOWN_SCALE


def landing(current: float, target: float) -> tuple[float, float]:
    """`(start, step)`: set the bar's count to `start`, then `update(step)` ends on `target` exactly.

    tqdm's `update(step)` adds `step` to its count. An `int` plus an `int` stays an
    `int`, but anything plus a `float` is a `float` (which shows `8.0`), and two fractions
    may add up one rounding off the target (`0.5700000000000001`). So for a whole target
    both are `int`s (`start` is the whole part of the current count, at most one below
    it); for a fractional one, `step` is the difference when it lands exactly, and `0`
    from the target itself when it would not. A bar that overrides `update` (a
    `tqdm_class` of your own) receives the change of the count, except the fraction
    dropped when the count lands on a whole number: its `n` is the count to read.
    """
    if isinstance(target, int):
        whole = math.floor(current)
        return whole, target - whole
    step = target - current
    start = target - step
    if start + step == target:
        return start, step
    return target, 0


def bar_settings(
    options: Mapping[str, Any],
    total: int | None,
    description: str,
    *,
    nested: bool,
    position: int | None,
    to_terminal: bool,
) -> dict[str, Any]:
    """The keyword arguments of a bar; the user's `options` win over every default.

    Args:
        options: the `progress=` dict without `tqdm_class` (empty for `progress=True`).
        total: the input's length, or `None` for an open-ended bar.
        description: the bar's default label (the function's name).
        nested: the map runs inside a task or inside the loop of another bar: `leave=False`,
            so the inner bar goes once it is done and only the caller's stays.
        position: the line to draw on (inner bars of worker processes), or `None` to let
            tqdm pick the first free line in this process.
        to_terminal: the bar's stream redraws a line in place; when not, the bar draws at
            most every `NON_TTY_MININTERVAL` seconds.
    """
    settings: dict[str, Any] = {"total": total, "unit": "item", "desc": description}
    if nested:
        settings["leave"] = False
        if position is not None:
            settings["position"] = position
    if not to_terminal:
        settings["mininterval"] = NON_TTY_MININTERVAL
    settings.update(options)
    return settings


class TqdmProgress:
    """A tqdm bar counting items (see the module docstring for the count it shows).

    A child forked from the process that made the bar (inside an `imap` loop, say)
    leaves it alone: updating or closing its copy would draw over the parent's bar.
    """

    def __init__(self, bar_class: Any, settings: Mapping[str, Any]) -> None:
        self._bar = bar_class(**settings)
        self._owner_pid = os.getpid()
        self._done: float = self._bar.n  # exact: whole items plus reported fractions
        self._closed = False
        _open_bars().add(self)

    def update(self, n: float) -> None:
        if os.getpid() != self._owner_pid:
            return
        self._done += n
        target = shown_count(self._done)
        bar = self._bar
        if target == bar.n and type(target) is type(bar.n):
            return  # nothing the bar shows changes (a report under a hundredth of an item)
        bar.n, step = landing(bar.n, target)
        bar.update(step)

    def close(self) -> None:
        if os.getpid() != self._owner_pid or self._closed:
            return
        self._closed = True  # it stays in its thread's set until collected: see _open_bars
        self._bar.close()


def _open_bars() -> weakref.WeakSet[TqdmProgress]:
    """The bars made in this thread and not collected yet (closed ones included).

    Only this thread adds to its set, and nothing removes from it but the collection of a
    bar, which a `WeakSet` defers while the set is iterated: a bar closed in another thread
    (an `aimap`'s, say) is only marked closed, so no lock is needed (one held at a fork
    would deadlock the child). Weak references, because the bar of an `imap` iterator
    dropped before its first item is never closed, and must not count as open (or stay
    alive) once it is collected.
    """
    bars: weakref.WeakSet[TqdmProgress] | None = getattr(_local, "bars", None)
    if bars is None:
        bars = _local.bars = weakref.WeakSet()
    return bars


def _open_here() -> int:
    """How many bars of this process are open in this thread (a forked child's copies left out)."""
    pid = os.getpid()
    return sum(1 for bar in _open_bars() if bar._owner_pid == pid and not bar._closed)


def _is_terminal(stream: object) -> bool:
    """Whether `stream` redraws a line in place: a terminal, or a Jupyter kernel's output."""
    if type(stream).__module__.partition(".")[0] == "ipykernel":
        return True  # not a tty, but the notebook redraws `\r` lines as a terminal does
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed file
        return False


def _draws_a_widget(bar_class: Any) -> bool:
    """Whether `bar_class` draws a notebook widget, not text: the stream does not matter."""
    notebook = sys.modules.get("tqdm.notebook")  # a widget bar's class imported it
    return notebook is not None and issubclass(bar_class, notebook.tqdm)


def make_progress(option: ProgressOption, total: int | None, description: str) -> NullProgress | TqdmProgress:
    """A bar for `option` (False, True, or a dict of tqdm keyword arguments).

    The dict's `tqdm_class` (validated by [validate_progress][parmap._config.validate_progress])
    picks the bar's class; by default it is `tqdm.auto.tqdm`, looked up here, when the bar
    is made.
    """
    if option is False:
        return NullProgress()
    options = dict(option) if isinstance(option, Mapping) else {}
    bar_class = options.pop("tqdm_class", None)
    if bar_class is None:
        import tqdm.auto

        bar_class = tqdm.auto.tqdm
    depth = nesting_depth()
    open_here = _open_here()
    stream = options.get("file")
    settings = bar_settings(
        options,
        total,
        description,
        nested=depth > 0 or open_here > 0,
        position=depth + open_here if in_worker_process() else None,
        to_terminal=_draws_a_widget(bar_class) or _is_terminal(sys.stderr if stream is None else stream),
    )
    return TqdmProgress(bar_class, settings)
