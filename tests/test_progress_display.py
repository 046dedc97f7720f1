"""What a progress bar shows (issue 13, point 8): whole counts as integers, the bar's class,
a quiet bar in logs, and inner bars of nested maps under the caller's.

Bars are real tqdm bars writing to a `io.StringIO`; with `mininterval=0, miniters=0` every
update redraws, so the text holds every count the bar showed. Nothing here depends on timing:
the redraw interval is checked on the bar's `mininterval` attribute.
"""

from __future__ import annotations

import functools
import inspect
import io
import re
from typing import Any, Callable

import pytest
import tqdm.std
from hypothesis import given
from hypothesis import strategies as st

from parmap import parallel
from parmap._config import tqdm_keywords, validate_progress
from parmap._progress import (
    NON_TTY_MININTERVAL,
    SHOWN_DECIMALS,
    TqdmProgress,
    bar_settings,
    landing,
    make_progress,
    shown_count,
)
from tests import tasks, tasks_progress
from tests.conftest import RecordingBar
from tests.tasks_progress import FlavouredBar, RecordedBar

Decorate = Callable[..., Any]

#: Redraw on every update, so the buffer holds every count shown.
EVERY_UPDATE = {"mininterval": 0, "miniters": 0}

#: A count as tqdm prints it before `/total`: `8/8`, `7.25/8`.
_COUNT = re.compile(r"(?:^|[|\r ])(-?[0-9.]+)/([0-9]+) \[")


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[RecordedBar]:
    """The `RecordedBar`s made in this process during the test, oldest first."""
    made: list[RecordedBar] = []
    monkeypatch.setattr(RecordedBar, "made", made)
    return made


def shown_counts(text: str) -> list[str]:
    """Every count a bar drew into `text`, in order."""
    return [match.group(1) for match in _COUNT.finditer(text)]


def assert_sane(counts: list[str]) -> None:
    """Whole counts are integers (`8`, never `8.0`); fractions have at most `SHOWN_DECIMALS`."""
    assert counts
    for count in counts:
        assert re.fullmatch(rf"[0-9]+(\.[0-9]{{1,{SHOWN_DECIMALS}}})?", count), count
        assert not count.endswith(".0"), count


# ---------------------------------------------------------------- the count shown


@pytest.mark.parametrize(
    ("done", "shown"),
    [
        (0, 0),
        (8, 8),
        (8.0, 8),
        (7.5, 7.5),
        (7.25, 7.25),
        (0.2900390625, 0.29),  # 297/1024: a report of 0.29, cut to hundredths
        (7.9990234375, 7.99),  # just under 8: never shown as done
        (3.0009765625, 3),  # under a hundredth above a whole count: that count, an int
        (1e6 + 0.5, 1e6 + 0.5),
    ],
)
def test_shown_count(done: float, shown: float) -> None:
    result = shown_count(done)
    assert result == shown
    assert isinstance(result, int) == float(shown).is_integer()


@given(
    current=st.integers(0, 10**6).map(lambda h: h / 100) | st.integers(0, 10**6),
    done=st.integers(0, 10**9).map(lambda k: k / 1024),
)
def test_landing_ends_exactly_on_the_shown_count(current: float, done: float) -> None:
    """Whatever the bar holds, `start + step` is the target, of the target's type (tqdm adds them)."""
    target = shown_count(done)
    start, step = landing(current, target)
    assert start + step == target
    assert type(start + step) is type(target)
    # The bar's count moves by under one item before the step, or straight to the target.
    assert abs(start - current) < 1 or (start, step) == (target, 0)


def test_updates_land_on_integers_and_fractions_stay_short() -> None:
    output = io.StringIO()
    bar = make_progress({"file": output, **EVERY_UPDATE}, 8, "squares")
    assert isinstance(bar, TqdmProgress)
    for n in (1, 1, 1, 1, 1, 1, 1, 0.25, 0.25, 0.0009765625, -0.5009765625, 1):
        bar.update(n)
    assert bar._bar.n == 8
    assert type(bar._bar.n) is int
    bar.close()
    counts = shown_counts(output.getvalue())
    assert_sane(counts)
    assert "7.25" in counts
    assert "7.5" in counts
    assert counts[-1] == "8"
    assert "8/8" in output.getvalue()
    assert "8.0/8" not in output.getvalue()


def test_initial_counts_from_the_bars_own_start() -> None:
    output = io.StringIO()
    bar = make_progress({"file": output, "initial": 2, **EVERY_UPDATE}, 4, "squares")
    bar.update(1)
    bar.update(1)
    bar.close()
    assert shown_counts(output.getvalue())[-1] == "4"


def test_a_map_with_in_task_reports_shows_whole_counts_as_integers(backend: Decorate) -> None:
    output = io.StringIO()
    task = backend(tasks_progress.report_a_quarter, workers=1)
    assert task.map(range(8), chunksize=1, progress={"file": output, **EVERY_UPDATE}) == list(range(8))
    text = output.getvalue()
    assert "8/8" in text
    assert "8.0/8" not in text
    assert not re.search(r"[0-9]\.0/", text)
    assert_sane(shown_counts(text))
    assert "0.25" in shown_counts(text)  # the first item's report (never throttled) was drawn


def test_a_custom_bar_receives_the_changes_of_the_count(recorded: list[RecordedBar]) -> None:
    task = parallel(tasks_progress.report_a_quarter, backend="serial")
    assert task.map(range(6), chunksize=1, progress={"tqdm_class": RecordedBar}) == list(range(6))
    (bar,) = recorded
    assert bar.n == 6
    assert type(bar.n) is int
    # The reported quarters, their taking back, and whole items; a step that lands on a whole
    # count is a whole step (the bar's count is set to its whole part first).
    assert 0.25 in bar.received
    assert all(step in (0.25, -0.25) or float(step).is_integer() for step in bar.received)


# ---------------------------------------------------------------- tqdm_class


def test_tqdm_class_picks_the_bar(backend: Decorate, recorded: list[RecordedBar]) -> None:
    task = backend(tasks.square)
    assert task.map(range(5), progress={"tqdm_class": RecordedBar, "desc": "mine"}) == [x * x for x in range(5)]
    (bar,) = recorded
    assert type(bar) is RecordedBar
    assert (bar.desc, bar.total, bar.n) == ("mine", 5, 5)


def test_tqdm_class_on_the_decorator_and_the_default_class(
    recorded: list[RecordedBar], bars: list[RecordingBar]
) -> None:
    task = parallel(tasks.square, backend="thread", workers=2, progress={"tqdm_class": RecordedBar})
    assert task.map(range(3)) == [0, 1, 4]
    assert list(task.imap(range(3))) == [0, 1, 4]
    assert [type(bar) for bar in recorded] == [RecordedBar, RecordedBar]
    assert not bars  # tqdm.auto's class (here the `bars` fixture's) was not used
    task.map(range(3), progress=True)
    assert len(bars) == 1


def test_a_bar_classes_own_keywords_are_accepted_with_it(recorded: list[RecordedBar]) -> None:
    assert "flavour" in tqdm_keywords(FlavouredBar)
    assert "flavour" not in tqdm_keywords()
    assert "tqdm_class" in tqdm_keywords()
    task = parallel(tasks.square, backend="serial")
    assert task.map([3], progress={"tqdm_class": FlavouredBar, "flavour": "mint"}) == [9]
    assert isinstance(recorded[-1], FlavouredBar)
    assert recorded[-1].flavour == "mint"
    with pytest.raises(TypeError, match=r"'flavour'"):
        task.map([3], progress={"flavour": "mint"})


def test_tqdm_classes_of_tqdm_itself_validate() -> None:
    import tqdm.auto
    import tqdm.notebook

    for bar_class in (tqdm.std.tqdm, tqdm.auto.tqdm, tqdm.notebook.tqdm):
        assert validate_progress({"tqdm_class": bar_class}) == {"tqdm_class": bar_class}
    assert validate_progress({"tqdm_class": tqdm.notebook.tqdm, "display": False})


def test_tqdm_rich_takes_its_options() -> None:
    pytest.importorskip("rich")
    import tqdm.rich

    assert validate_progress({"tqdm_class": tqdm.rich.tqdm, "options": {}})


class _NotABar:
    pass


@pytest.mark.parametrize(
    "bar_class",
    [
        pytest.param(None, id="none"),
        pytest.param("rich", id="a-name"),
        pytest.param(_NotABar, id="another-class"),
        pytest.param(int, id="a-builtin-class"),
        pytest.param(tqdm.std.tqdm(disable=True), id="a-bar-not-its-class"),
        pytest.param(functools.partial(tqdm.std.tqdm, leave=False), id="a-factory"),
    ],
)
def test_a_tqdm_class_that_is_not_a_tqdm_class_is_a_type_error(bar_class: object) -> None:
    with pytest.raises(TypeError, match=r"tqdm_class must be tqdm\.std\.tqdm or a subclass"):
        parallel(tasks.square, progress={"tqdm_class": bar_class})
    task = parallel(tasks.square, backend="thread", workers=2)
    with pytest.raises(TypeError, match="tqdm_class"):
        task.map_async([1], progress={"tqdm_class": bar_class})  # raised by the call, not its thread


# ---------------------------------------------------------------- logs: not a terminal


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Closed(io.StringIO):
    def isatty(self) -> bool:
        raise ValueError("I/O operation on closed file")


_TQDM_DEFAULTS = inspect.signature(tqdm.std.tqdm.__init__).parameters


def _bar_of(option: Any, total: int | None = 3) -> Any:
    bar = make_progress(option, total, "squares")
    assert isinstance(bar, TqdmProgress)
    bar.close()
    return bar._bar


def test_a_bar_in_a_log_draws_at_most_every_few_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr", io.StringIO())  # as in CI: stderr is a file or a pipe
    assert _bar_of(True).mininterval == NON_TTY_MININTERVAL
    assert _bar_of({"desc": "a label"}).mininterval == NON_TTY_MININTERVAL
    assert _bar_of({"file": io.StringIO()}).mininterval == NON_TTY_MININTERVAL
    assert _bar_of({"file": _Closed()}).mininterval == NON_TTY_MININTERVAL
    assert _TQDM_DEFAULTS["maxinterval"].default > NON_TTY_MININTERVAL  # see the constant's comment


def test_the_users_mininterval_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert _bar_of({"mininterval": 0.5}).mininterval == 0.5
    assert _bar_of({"file": io.StringIO(), "mininterval": 0}).mininterval == 0


def test_a_bar_on_a_terminal_keeps_tqdms_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    default = _TQDM_DEFAULTS["mininterval"].default
    monkeypatch.setattr("sys.stderr", _Terminal())
    assert _bar_of(True).mininterval == default
    assert _bar_of({"file": _Terminal()}).mininterval == default
    assert _bar_of({"file": io.StringIO()}).mininterval == NON_TTY_MININTERVAL  # the bar's own file decides
    notebook_stream = type("OutStream", (io.StringIO,), {"__module__": "ipykernel.iostream"})()
    assert _bar_of({"file": notebook_stream}).mininterval == default  # Jupyter redraws lines


def test_a_maps_bar_in_a_log(monkeypatch: pytest.MonkeyPatch, bars: list[RecordingBar]) -> None:
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert parallel(tasks.square, backend="thread", workers=2).map(range(4), progress=True) == [0, 1, 4, 9]
    assert bars[-1].mininterval == NON_TTY_MININTERVAL
    assert bars[-1].n == 4


def test_a_widget_bar_ignores_the_stream() -> None:
    import tqdm.notebook

    from parmap._progress import _draws_a_widget

    assert _draws_a_widget(tqdm.notebook.tqdm)
    assert _draws_a_widget(type("MyWidgetBar", (tqdm.notebook.tqdm,), {}))
    assert not _draws_a_widget(tqdm.std.tqdm)
    assert not _draws_a_widget(RecordedBar)


# ---------------------------------------------------------------- nested maps


def test_bar_settings_policy() -> None:
    top = bar_settings({}, 8, "f", nested=False, position=None, to_terminal=True)
    assert top == {"total": 8, "unit": "item", "desc": "f"}
    inner = bar_settings({}, 8, "f", nested=True, position=None, to_terminal=True)
    assert inner["leave"] is False
    assert "position" not in inner  # tqdm picks the first free line in this process
    in_worker = bar_settings({}, None, "f", nested=True, position=2, to_terminal=False)
    assert (in_worker["leave"], in_worker["position"], in_worker["mininterval"]) == (False, 2, NON_TTY_MININTERVAL)
    mine = bar_settings(
        {"leave": True, "position": 5, "unit": "doc"}, 8, "f", nested=True, position=1, to_terminal=True
    )
    assert (mine["leave"], mine["position"], mine["unit"]) == (True, 5, "doc")


def test_inner_bars_of_a_thread_backend_go_under_the_callers(recorded: list[RecordedBar]) -> None:
    outer = parallel(tasks_progress.inner_bar_on_threads, backend="thread", workers=2)
    inner = outer.map([3, 4, 5], chunksize=1, progress={"tqdm_class": RecordedBar})
    caller = recorded[0]
    assert caller.total == 3
    assert caller.leave is True  # tqdm's default: the caller's bar stays
    for leave, line, count in inner:
        assert leave is False
        assert line >= 1  # under the caller's bar, which was open (on line 0 unless another was)
        assert line != abs(caller.pos)
        assert count in (3, 4, 5)
    assert len(recorded) == 4


def test_inner_bars_of_a_serial_backend_go_under_the_callers(recorded: list[RecordedBar]) -> None:
    outer = parallel(tasks_progress.inner_bar_on_threads, backend="serial")
    inner = outer.map([3, 4], progress={"tqdm_class": RecordedBar})
    assert [(leave, count) for leave, _, count in inner] == [(False, 3), (False, 4)]
    assert all(line >= 1 and line != abs(recorded[0].pos) for _, line, _ in inner)
    assert recorded[0].leave is True


def test_inner_bars_in_worker_processes_go_on_the_line_below(process_backend: Decorate) -> None:
    outer = process_backend(tasks_progress.bar_of_an_inner_map)
    # Each inner map runs serially in its worker process, which cannot see the caller's bar.
    assert outer.map([3, 4], chunksize=1, progress={"disable": True}) == [(False, 1, 3), (False, 1, 4)]


def test_a_map_in_the_loop_over_an_imap_is_an_inner_bar(recorded: list[RecordedBar]) -> None:
    task = parallel(tasks.square, backend="thread", workers=2)
    for _ in task.imap(range(2), progress={"tqdm_class": RecordedBar}):
        assert task.map(range(3), progress={"tqdm_class": RecordedBar}) == [0, 1, 4]
    assert task.map(range(3), progress={"tqdm_class": RecordedBar}) == [0, 1, 4]  # after the loop: not nested
    assert [bar.leave for bar in recorded] == [True, False, False, True]
    assert all(abs(bar.pos) >= 1 and bar.pos != recorded[0].pos for bar in recorded[1:3])


def test_the_users_leave_wins_for_an_inner_bar(recorded: list[RecordedBar]) -> None:
    task = parallel(tasks.square, backend="serial")
    for _ in task.imap(range(1), progress={"tqdm_class": RecordedBar}):
        task.map(range(2), progress={"tqdm_class": RecordedBar, "leave": True})
    assert [bar.leave for bar in recorded] == [True, True]


def test_an_imap_dropped_before_its_first_item_leaves_no_open_bar(recorded: list[RecordedBar]) -> None:
    import gc

    task = parallel(tasks.square, backend="thread", workers=2)
    unstarted = task.imap(range(3), progress={"tqdm_class": RecordedBar})
    del unstarted
    gc.collect()
    assert task.map(range(3), progress={"tqdm_class": RecordedBar}) == [0, 1, 4]
    assert recorded[-1].leave is True  # not taken for a map inside that loop


def test_tqdm_class_through_parmap_config(recorded: list[RecordedBar]) -> None:
    import parmap

    task = parallel(tasks.square, backend="serial")
    with parmap.config(progress={"tqdm_class": RecordedBar}):
        assert task.map(range(3)) == [0, 1, 4]
    assert [type(bar) for bar in recorded] == [RecordedBar]
    with pytest.raises(TypeError, match="tqdm_class"):
        parmap.config(progress={"tqdm_class": int})
