"""The pure scheduling core, without processes: made-up outcomes in, decisions out.

Unit tests of each rule, then a hypothesis state machine that drives random interleavings
of reads, outcomes, retries, timeouts, losses, partial chunks and input errors, checking the
job's invariants after every step.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from parmap._chunking import CostEstimate
from parmap._core import (
    IN_FLIGHT_PER_WORKER,
    Decision,
    Finish,
    Progress,
    Raise,
    Read,
    Save,
    SchedulingCore,
    Send,
    Yield,
)
from parmap.errors import PoolClosedError, SerializationError, TaskTimeoutError, WorkerLostError


class ItemError(Exception):
    """An item's own error (retriable when the job retries on it)."""


def of(decisions: Sequence[Any], kind: type[Any]) -> list[Any]:
    return [d for d in decisions if type(d) is kind]


def index_of(error: BaseException) -> int:
    """The input index the core noted on an error."""
    notes = getattr(error, "__notes__", [])
    found = [int(m.group(1)) for note in notes if (m := re.search(r"input index (\d+)", note))]
    assert len(found) == 1, notes
    return found[0]


def feed_all(core: SchedulingCore, items: list[int], decisions: list[Decision]) -> tuple[list[Send], list[Decision]]:
    """Answer every Read from `items` (a sequence: ended right after its last chunk)."""
    sends: list[Send] = []
    rest: list[Decision] = []
    pending = collections.deque(decisions)
    cursor = 0
    while pending:
        decision = pending.popleft()
        if type(decision) is Read:
            if cursor >= len(items):
                continue
            chunk = items[cursor : cursor + decision.size]
            start, cursor = cursor, cursor + len(chunk)
            pending.extend(core.input_read(start, chunk))
            if cursor >= len(items):
                pending.extend(core.input_ended())
        elif type(decision) is Send:
            sends.append(decision)
        else:
            rest.append(decision)
    return sends, rest


def done(
    core: SchedulingCore, send: Send, errors: dict[int, BaseException] | None = None, completed: int | None = None
) -> list[Decision]:
    completed = len(send.items) if completed is None else completed
    values = [x * 10 for x in send.items[:completed]]
    return core.chunk_done(send.chunk_id, values, errors or {}, completed, 0.001 * completed)


# ---------------------------------------------------------------- sizing and the window


def test_auto_sends_one_probe_per_real_worker() -> None:
    core = SchedulingCore(ordered=True, workers=1)
    reads = of(core.start(), Read)
    assert reads == [Read(1)]  # a serial pool: one probe, whatever workers= it was declared with


def test_probes_respect_max_in_flight() -> None:
    core = SchedulingCore(ordered=True, workers=8, max_in_flight=2)
    assert of(core.start(), Read) == [Read(1), Read(1)]


def test_window_defaults_to_a_few_chunks_per_worker() -> None:
    core = SchedulingCore(ordered=True, workers=3, chunksize=5)
    assert of(core.start(), Read) == [Read(5)] * (IN_FLIGHT_PER_WORKER * 3)


def test_chunks_are_sized_once_every_probe_is_back() -> None:
    cost = CostEstimate()
    core = SchedulingCore(ordered=True, workers=2, length=100_000, cost=cost)
    sends, _ = feed_all(core, list(range(100_000)), core.start())
    assert [len(s.items) for s in sends] == [1, 1]
    more, _ = feed_all(core, [], done(core, sends[0]))
    assert not of(more, Send)  # one probe still out: no sizing yet
    after = core.chunk_done(sends[1].chunk_id, [10], {}, 1, 0.001)
    reads = of(after, Read)
    assert reads
    assert all(r.size > 1 for r in reads)


def test_an_empty_input_of_known_length_finishes_at_once() -> None:
    assert SchedulingCore(ordered=True, workers=2, length=0).start() == [Finish()]


def test_no_read_beyond_a_known_length() -> None:
    core = SchedulingCore(ordered=True, workers=4, chunksize=10, length=15)
    assert of(core.start(), Read) == [Read(10), Read(10)]


def test_max_tasks_per_worker_caps_the_chunk() -> None:
    core = SchedulingCore(ordered=True, workers=1, chunksize=50, max_tasks_per_worker=3)
    assert of(core.start(), Read)[0] == Read(3)


# ---------------------------------------------------------------- ordering and errors


def test_ordered_yields_every_result_before_the_failing_item() -> None:
    core = SchedulingCore(ordered=True, workers=3, chunksize=1)
    sends, _ = feed_all(core, [0, 1, 2, 3], core.start())
    assert not done(core, sends[2], errors={0: ItemError("two")})  # nothing is due yet
    first = done(core, sends[0])
    assert of(first, Yield) == [Yield([0])]
    second = done(core, sends[1])
    assert [type(d) for d in second if type(d) in (Yield, Raise)] == [Yield, Raise]
    assert of(second, Yield) == [Yield([10])]
    assert index_of(of(second, Raise)[0].error) == 2
    assert core.done


def test_ordered_raises_the_lowest_failing_index() -> None:
    core = SchedulingCore(ordered=True, workers=3, chunksize=1)
    sends, _ = feed_all(core, [0, 1, 2], core.start())
    done(core, sends[2], errors={0: ItemError("late")})
    raised = of(done(core, sends[1], errors={0: ItemError("early")}), Raise)
    assert not raised  # item 0 has not come back yet
    out = done(core, sends[0])
    assert of(out, Yield) == [Yield([0])]
    assert str(of(out, Raise)[0].error) == "early"


def test_failure_inside_a_chunk_yields_the_items_before_it() -> None:
    core = SchedulingCore(ordered=True, workers=1, chunksize=4)
    sends, _ = feed_all(core, [0, 1, 2, 3], core.start())
    out = done(core, sends[0], errors={2: ItemError("x")})
    assert of(out, Yield) == [Yield([0, 10])]
    assert index_of(of(out, Raise)[0].error) == 2


def test_input_error_is_raised_after_the_results_of_what_was_read() -> None:
    core = SchedulingCore(ordered=True, workers=2, chunksize=1, max_in_flight=2)
    decisions = core.start()
    sends = []
    for start, read in enumerate(of(decisions, Read)):
        sends += of(core.input_read(start, [start]), Send)
        del read
    failure = ValueError("the input broke")
    assert not of(core.input_ended(failure), Raise)
    assert of(done(core, sends[1]), Yield) == []
    out = done(core, sends[0])
    assert of(out, Yield) == [Yield([0]), Yield([10])]
    assert of(out, Raise) == [Raise(failure)]


def test_unordered_raises_an_item_error_at_once() -> None:
    core = SchedulingCore(ordered=False, workers=2, chunksize=1)
    sends, _ = feed_all(core, [0, 1], core.start())
    out = done(core, sends[1], errors={0: ItemError("x")})
    assert of(out, Raise)


def test_return_exceptions_settles_the_error_in_its_slot() -> None:
    core = SchedulingCore(ordered=True, workers=1, chunksize=3, return_exceptions=True)
    sends, _ = feed_all(core, [0, 1, 2], core.start())
    failure = ItemError("x")
    out = done(core, sends[0], errors={1: failure})
    assert of(out, Yield) == [Yield([0, failure, 20])]
    assert index_of(failure) == 1
    assert of(out, Finish) == [Finish()]


# ---------------------------------------------------------------- triage


def test_retriable_error_is_run_again_alone() -> None:
    core = SchedulingCore(ordered=True, workers=1, chunksize=3, retries=1, retry_on=ItemError)
    sends, _ = feed_all(core, [0, 1, 2], core.start())
    retry = of(done(core, sends[0], errors={1: ItemError("x")}), Send)
    assert [list(s.indices) for s in retry] == [[1]]
    out = done(core, retry[0])
    assert of(out, Yield) == [Yield([0, 10, 20])]
    assert core.retries == 1


def test_parmap_errors_are_not_retried_but_timeouts_are() -> None:
    core = SchedulingCore(ordered=True, workers=1, chunksize=2, retries=3, return_exceptions=True)
    sends, _ = feed_all(core, [0, 1], core.start())
    out = done(core, sends[0], errors={0: SerializationError("no"), 1: TaskTimeoutError("slow")})
    assert [list(s.indices) for s in of(out, Send)] == [[1]]


def test_lost_chunk_charges_the_item_and_resends_the_others_uncharged() -> None:
    core = SchedulingCore(ordered=True, workers=1, chunksize=4, return_exceptions=True)
    sends, _ = feed_all(core, [0, 1, 2, 3], core.start())
    out = core.chunk_lost(sends[0].chunk_id, 2, WorkerLostError("died"))
    assert [list(s.indices) for s in of(out, Send)] == [[0, 1, 3]]
    assert core.lost_workers == 1
    final = done(core, of(out, Send)[0])
    values = of(final, Yield)[0].values
    assert values[:2] == [0, 10]
    assert values[3] == 30
    assert isinstance(values[2], WorkerLostError)


def test_lost_at_an_unknown_position_runs_careful_then_one_by_one() -> None:
    core = SchedulingCore(ordered=True, workers=1, chunksize=3)
    sends, _ = feed_all(core, [0, 1, 2], core.start())
    careful = of(core.chunk_lost(sends[0].chunk_id, None, WorkerLostError("died")), Send)
    assert [(list(s.indices), s.careful) for s in careful] == [([0, 1, 2], True)]
    singles = of(core.chunk_lost(careful[0].chunk_id, None, WorkerLostError("died")), Send)
    assert [list(s.indices) for s in singles] == [[0], [1], [2]]


def test_timeouts_are_counted_and_retried() -> None:
    core = SchedulingCore(ordered=True, workers=1, chunksize=1, retries=1)
    sends, _ = feed_all(core, [0], core.start())
    again = of(core.chunk_lost(sends[0].chunk_id, 0, TaskTimeoutError("slow")), Send)
    assert [list(s.indices) for s in again] == [[0]]
    assert core.timeouts == 1
    assert core.retries == 1


def test_partial_chunk_resends_the_rest() -> None:
    core = SchedulingCore(ordered=True, workers=1, chunksize=5)
    sends, _ = feed_all(core, [0, 1, 2, 3, 4], core.start())
    rest = of(done(core, sends[0], completed=2), Send)
    assert [list(s.indices) for s in rest] == [[2, 3, 4]]
    assert of(done(core, rest[0]), Yield) == [Yield([0, 10, 20, 30, 40])]


def test_undecodable_chunk_runs_careful_then_fails_only_its_item_without_feeding_the_cost() -> None:
    cost = CostEstimate()
    core = SchedulingCore(ordered=True, workers=1, chunksize=3, cost=cost, return_exceptions=True)
    sends, _ = feed_all(core, [0, 1, 2], core.start())
    careful = of(core.chunk_undecodable(sends[0].chunk_id, SerializationError("bad result")), Send)
    assert [(list(s.indices), s.careful) for s in careful] == [([0, 1, 2], True)]
    assert cost.seconds_per_item is None  # no measurement arrived: none recorded
    failure = SerializationError("result 1 cannot be unpickled")
    out = done(core, careful[0], errors={1: failure})
    assert of(out, Yield)[0].values == [0, failure, 20]


def test_undecodable_single_item_fails_without_retry() -> None:
    core = SchedulingCore(ordered=True, workers=1, chunksize=1, retries=5)
    sends, _ = feed_all(core, [0], core.start())
    failure = SerializationError("bad result")
    out = core.chunk_undecodable(sends[0].chunk_id, failure)
    assert of(out, Raise) == [Raise(failure)]
    assert not of(out, Send)


def test_unsendable_items_fail_and_the_others_are_sent_again() -> None:
    core = SchedulingCore(ordered=True, workers=1, chunksize=3, return_exceptions=True)
    sends, _ = feed_all(core, [0, 1, 2], core.start())
    bad = SerializationError("item 1 cannot be pickled")
    again = of(core.chunk_unsendable(sends[0].chunk_id, SerializationError("chunk"), {1: bad}), Send)
    assert [list(s.indices) for s in again] == [[0, 2]]


def test_unsendable_without_a_bad_item_ends_the_job() -> None:
    core = SchedulingCore(ordered=True, workers=1, chunksize=3)
    sends, _ = feed_all(core, [0, 1, 2], core.start())
    error = SerializationError("the function cannot be pickled")
    assert of(core.chunk_unsendable(sends[0].chunk_id, error, {}), Raise) == [Raise(error)]


def test_failed_chunk_ends_the_job_and_later_outcomes_are_ignored() -> None:
    core = SchedulingCore(ordered=True, workers=2, chunksize=1)
    sends, _ = feed_all(core, [0, 1], core.start())
    error = PoolClosedError("closed")
    assert of(core.chunk_failed(sends[0].chunk_id, error), Raise) == [Raise(error)]
    assert done(core, sends[1]) == []
    assert core.chunks_out == 1  # still listed: the driver cancels it


# ---------------------------------------------------------------- resume and progress


def test_resume_settles_stored_results_without_running_them() -> None:
    core = SchedulingCore(ordered=True, workers=1, chunksize=4, saving=True)
    out = core.start()
    decisions = core.input_read(0, [0, 1, 2, 3], {0: "stored", 2: "stored"})
    assert of(decisions, Progress) == [Progress(2)]
    sends = of(decisions, Send)
    assert [list(s.indices) for s in sends] == [[1, 3]]
    core.input_ended()
    final = done(core, sends[0])
    assert of(final, Save) == [Save([(1, 10), (3, 30)])]
    assert of(final, Yield) == [Yield(["stored", 10, "stored", 30])]
    assert core.resumed_items == 2
    del out


def test_fully_stored_record_is_yielded_without_sending() -> None:
    core = SchedulingCore(ordered=False, workers=1, chunksize=2)
    core.start()
    out = core.input_read(0, [0, 1], {0: "a", 1: "b"})
    assert not of(out, Send)
    assert of(out, Yield) == [Yield(["a", "b"])]


def test_progress_fractions_are_taken_back_when_the_chunk_settles() -> None:
    core = SchedulingCore(ordered=True, workers=1, chunksize=2)
    sends, _ = feed_all(core, [0, 1], core.start())
    assert core.chunk_progress(sends[0].chunk_id, 0, 0.5) == [Progress(0.5)]
    assert core.chunk_progress(sends[0].chunk_id, 0, 0.75) == [Progress(0.25)]
    out = done(core, sends[0])
    assert sum(p.amount for p in of(out, Progress)) == 2 - 0.75 == 1.25
    assert core.chunk_progress(sends[0].chunk_id, 1, 0.5) == []  # settled: ignored


# ---------------------------------------------------------------- the state machine


class CoreMachine(RuleBasedStateMachine):
    """A random driver: answers reads, delivers random outcomes, checks the invariants."""

    def __init__(self) -> None:
        super().__init__()
        self.core: SchedulingCore | None = None

    @initialize(
        n=st.integers(min_value=0, max_value=25),
        ordered=st.booleans(),
        workers=st.integers(min_value=1, max_value=4),
        chunksize=st.one_of(st.just("auto"), st.integers(min_value=1, max_value=6)),
        max_in_flight=st.one_of(st.none(), st.integers(min_value=1, max_value=5)),
        retries=st.integers(min_value=0, max_value=2),
        return_exceptions=st.booleans(),
        lazy=st.booleans(),
        max_tasks=st.one_of(st.none(), st.integers(min_value=1, max_value=4)),
    )
    def begin(
        self,
        *,
        n: int,
        ordered: bool,
        workers: int,
        chunksize: Any,
        max_in_flight: int | None,
        retries: int,
        return_exceptions: bool,
        lazy: bool,
        max_tasks: int | None,
    ) -> None:
        self.n = n
        self.ordered = ordered
        self.lazy = lazy
        self.return_exceptions = return_exceptions
        self.core = SchedulingCore(
            ordered=ordered,
            workers=workers,
            chunksize=chunksize,
            length=None if lazy else n,
            max_in_flight=max_in_flight,
            max_tasks_per_worker=max_tasks,
            retries=retries,
            retry_on=ItemError,
            return_exceptions=return_exceptions,
        )
        self.window = self.core.window
        self.reads: collections.deque[int] = collections.deque()
        self.chunks: dict[int, Send] = {}
        self.cursor = 0
        self.records_read = 0
        self.yields = 0
        self.yielded: list[Any] = []
        self.raised: BaseException | None = None
        self.input_error: BaseException | None = None
        self.finished = False
        self.apply(self.core.start())

    # -- applying decisions, as the driver does

    def apply(self, decisions: list[Decision]) -> None:
        pending = collections.deque(decisions)
        while pending:
            decision = pending.popleft()
            assert not self.finished, f"{decision} after the end"
            assert self.raised is None, f"{decision} after the end"
            if type(decision) is Read:
                self.reads.append(decision.size)
            elif type(decision) is Send:
                assert decision.items, "an empty chunk"
                assert list(decision.items) == list(decision.indices), "items and indices disagree"
                assert all(0 <= i < self.cursor for i in decision.indices), "an index never read"
                self.chunks[decision.chunk_id] = decision
            elif type(decision) is Yield:
                self.yields += 1
                self.yielded.extend(decision.values)
            elif type(decision) is Raise:
                self.raised = decision.error
            elif type(decision) is Finish:
                self.finished = True
        outstanding = self.records_read - self.yields + len(self.reads)
        assert outstanding <= self.window or self.raised is not None, "the window overflowed"

    @property
    def live(self) -> bool:
        return self.core is not None and not self.finished and self.raised is None

    # -- the input

    @precondition(lambda self: self.live and self.reads)
    @rule()
    def answer_read(self) -> None:
        assert self.core is not None
        size = self.reads.popleft()
        chunk = list(range(self.cursor, min(self.n, self.cursor + size)))
        if chunk:
            start, self.cursor = self.cursor, self.cursor + len(chunk)
            self.records_read += 1
            self.apply(self.core.input_read(start, chunk))
        if self.cursor >= self.n and self.live:
            self.reads.clear()
            self.apply(self.core.input_ended())

    @precondition(lambda self: self.live and self.lazy and self.cursor < self.n and self.input_error is None)
    @rule()
    def input_raises(self) -> None:
        assert self.core is not None
        self.input_error = ValueError("input broke")
        self.reads.clear()
        self.apply(self.core.input_ended(self.input_error))

    # -- outcomes

    def pick(self, data: st.DataObject) -> Send:
        chunk_id = data.draw(st.sampled_from(sorted(self.chunks)))
        return self.chunks.pop(chunk_id)

    @precondition(lambda self: self.live and self.chunks)
    @rule(data=st.data())
    def chunk_done(self, data: st.DataObject) -> None:
        assert self.core is not None
        send = self.pick(data)
        size = len(send.items)
        completed = data.draw(st.integers(min_value=1, max_value=size)) if data.draw(st.booleans()) else size
        failing = data.draw(st.sets(st.integers(min_value=0, max_value=completed - 1), max_size=2))
        errors: dict[int, BaseException] = {p: ItemError(f"item {send.indices[p]}") for p in failing}
        values = [("v", i) for i in send.indices[:completed]]
        self.apply(self.core.chunk_done(send.chunk_id, values, errors, completed, 0.001))

    @precondition(lambda self: self.live and self.chunks)
    @rule(data=st.data(), timeout=st.booleans())
    def chunk_lost(self, data: st.DataObject, timeout: bool) -> None:
        assert self.core is not None
        send = self.pick(data)
        position = data.draw(st.one_of(st.none(), st.integers(min_value=0, max_value=len(send.items) - 1)))
        if timeout and position is not None:
            error: BaseException = TaskTimeoutError("slow")
        else:
            error = WorkerLostError("died")
        self.apply(self.core.chunk_lost(send.chunk_id, position, error))

    @precondition(lambda self: self.live and self.chunks)
    @rule(data=st.data())
    def chunk_undecodable(self, data: st.DataObject) -> None:
        assert self.core is not None
        send = self.pick(data)
        self.apply(self.core.chunk_undecodable(send.chunk_id, SerializationError("undecodable")))

    @precondition(lambda self: self.live and self.chunks)
    @rule(data=st.data())
    def chunk_unsendable(self, data: st.DataObject) -> None:
        assert self.core is not None
        send = self.pick(data)
        bad = data.draw(st.sets(st.integers(min_value=0, max_value=len(send.items) - 1), min_size=1))
        errors: dict[int, BaseException] = {p: SerializationError(f"item {send.indices[p]}") for p in bad}
        self.apply(self.core.chunk_unsendable(send.chunk_id, SerializationError("chunk"), errors))

    @precondition(lambda self: self.live and self.chunks)
    @rule(data=st.data())
    def chunk_failed(self, data: st.DataObject) -> None:
        assert self.core is not None
        if data.draw(st.integers(min_value=0, max_value=9)):
            return  # rare: a broken pool ends the whole job
        send = self.pick(data)
        error = PoolClosedError("closed")
        self.apply(self.core.chunk_failed(send.chunk_id, error))
        assert self.raised is error

    @precondition(lambda self: self.live and self.chunks)
    @rule(data=st.data())
    def stray_progress(self, data: st.DataObject) -> None:
        assert self.core is not None
        chunk_id = data.draw(st.sampled_from(sorted(self.chunks)))
        for decision in self.core.chunk_progress(chunk_id, 0, data.draw(st.floats(0, 1))):
            assert type(decision) is Progress

    @precondition(lambda self: self.live and not self.reads and not self.chunks)
    @rule()
    def stuck(self) -> None:
        raise AssertionError("the job neither ended nor waits for anything: it would hang")

    @precondition(lambda self: not self.live)
    @rule()
    def nothing_after_the_end(self) -> None:
        assert self.core is not None
        assert self.core.input_ended(ValueError("late")) == []
        assert self.core.chunk_progress(0, 0, 0.5) == []

    # -- the invariants

    @invariant()
    def chunks_agree(self) -> None:
        if self.live:
            assert self.core is not None
            assert self.core.chunks_out == len(self.chunks)

    @invariant()
    def each_index_yielded_at_most_once(self) -> None:
        if self.core is None:
            return
        indices = [self.index(value) for value in self.yielded]
        assert len(indices) == len(set(indices)), "an index was yielded twice"
        if self.ordered:
            assert indices == list(range(len(indices))), "ordered output out of order"

    def index(self, value: Any) -> int:
        if isinstance(value, BaseException):
            return index_of(value)
        assert value[0] == "v"
        return int(value[1])

    def teardown(self) -> None:
        """Drive what is left with clean outcomes: the job must end, and end right."""
        if self.core is None:
            return
        core = self.core
        for _ in range(10_000):
            if not self.live:
                break
            if self.reads:
                size = self.reads.popleft()
                chunk = list(range(self.cursor, min(self.n, self.cursor + size)))
                if chunk:
                    start, self.cursor = self.cursor, self.cursor + len(chunk)
                    self.records_read += 1
                    self.apply(core.input_read(start, chunk))
                if self.cursor >= self.n and self.live:
                    self.reads.clear()
                    self.apply(core.input_ended())
            elif self.chunks:
                send = self.chunks.pop(min(self.chunks))
                self.apply(core.chunk_done(send.chunk_id, [("v", i) for i in send.indices], {}, len(send.items), 0.0))
            else:
                raise AssertionError("the job neither ended nor waits for anything: it would hang")
        assert not self.live, "the job did not terminate"
        indices = [self.index(v) for v in self.yielded]
        if self.finished:
            assert self.input_error is None
            assert sorted(indices) == list(range(self.n)), "not every index was settled exactly once"
        else:
            assert self.raised is not None
            if isinstance(self.raised, PoolClosedError):
                pass  # the pool broke: the job ends at once, whatever is outstanding
            elif self.ordered:
                # Everything before the raised error was yielded, and nothing after it.
                expected = self.cursor if self.raised is self.input_error else index_of(self.raised)
                assert indices == list(range(expected))
            elif self.raised is self.input_error:
                assert sorted(indices) == list(range(self.cursor))


TestCoreMachine = CoreMachine.TestCase
TestCoreMachine.settings = settings(
    max_examples=400, stateful_step_count=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.mark.parametrize("ordered", [True, False])
def test_every_index_once_with_every_chunk_lost_once(ordered: bool) -> None:
    """Every first chunk is lost at no known position: run careful, every index still comes once."""
    core = SchedulingCore(ordered=ordered, workers=2, chunksize=3, length=10, retries=1)
    sends, _ = feed_all(core, list(range(10)), core.start())
    first = {send.chunk_id for send in sends}
    yielded: list[Any] = []
    queue = collections.deque(sends)
    while queue:
        send = queue.popleft()
        if send.chunk_id in first:
            out = core.chunk_lost(send.chunk_id, None, WorkerLostError("died"))
        else:
            out = done(core, send)
        more, rest = feed_all(core, [], out)
        queue.extend(more)
        yielded += [v for d in rest if type(d) is Yield for v in d.values]
    assert sorted(yielded) == [x * 10 for x in range(10)]
