"""The job driver on real backends: ordering before errors, cancellation, streams, contexts.

Regression tests of issue 10's engine defects (6, 9, 10, 12, 13, 14, 21, 23, 24, 32).
"""

from __future__ import annotations

import contextvars
import decimal
import gc
import queue
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Literal

import pytest

from parmap import parallel
from parmap._config import MapOptions
from parmap._engine import Job
from parmap.backends import Backend, ChunkTask, ChunkUndecodable
from parmap.backends.process import ProcessBackend
from parmap.backends.serial import SerialBackend, run_in_this_thread
from parmap.backends.thread import ThreadBackend
from parmap.errors import SerializationError
from tests import tasks
from tests.conftest import run_script

Decorate = Callable[..., Any]

#: A backend fixture's ids that run in this process (closures and shared state work there).
IN_PROCESS = ["serial", "thread"]


def results_and_error(results: Iterator[Any]) -> tuple[list[Any], BaseException | None]:
    """Every result the loop saw, and the error that ended it."""
    seen: list[Any] = []
    try:
        for result in results:
            seen.append(result)
    except Exception as error:
        return seen, error
    return seen, None


# ---------------------------------------------------------------- defect 6: results before the error


def test_imap_yields_every_result_before_the_failing_item(backend: Decorate) -> None:
    results, error = results_and_error(backend(tasks.slow_first_fail_three).imap(range(8), chunksize=1))
    assert results == [0, 1, 2]
    assert isinstance(error, ValueError)
    assert str(error) == "bad item 3"


def test_map_raises_the_first_failing_item_in_input_order(backend: Decorate) -> None:
    # Item 4 fails at once while item 1 still runs, then fails: item 1's error is raised,
    # as the first in input order (as `Executor.map`), not the first to arrive.
    with pytest.raises(ValueError, match="item 1 failed"):
        backend(tasks.fail_one_late_and_four_at_once).map(range(8), chunksize=1)


def _squares_then_raise(n: int) -> Iterator[int]:
    yield from range(n)
    raise RuntimeError("the input broke")


def test_input_error_is_raised_after_every_result_read_before_it(backend: Decorate) -> None:
    task = backend(tasks.slow_first_fail_three)
    results, error = results_and_error(task.imap(_squares_then_raise(3), chunksize=1))
    assert results == [0, 1, 2]
    assert isinstance(error, RuntimeError)
    with pytest.raises(RuntimeError, match="the input broke"):
        task.map(_squares_then_raise(3), chunksize=1)


def test_unordered_input_error_comes_after_the_items_read(backend: Decorate) -> None:
    results, error = results_and_error(backend(tasks.identity).imap_unordered(_squares_then_raise(5), chunksize=2))
    assert sorted(results) == [0, 1, 2, 3, 4]
    assert isinstance(error, RuntimeError)


# ---------------------------------------------------------------- defect 9: Ctrl-C in the loop body


def test_ctrl_c_in_the_body_of_an_imap_loop_stops_the_running_items(tmp_path: Path) -> None:
    code = f"""
        import os, signal, time
        from pathlib import Path
        from parmap import parallel
        from tests import tasks
        if __name__ == "__main__":
            directory = {str(tmp_path)!r}
            task = parallel(tasks.return_at_once_or_wait, workers=2)
            items = [(directory, i) for i in range(8)]
            try:
                for result in task.imap(items, chunksize=1):
                    # In the caller's loop body, while two items run, one on each worker.
                    while len(list(Path(directory).glob("started-*"))) < 2:
                        time.sleep(0.01)
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(20)
            except KeyboardInterrupt:
                print("interrupted", flush=True)
            running = [int(p.read_text()) for p in Path(directory).glob("started-*")]
            started = time.monotonic()
            print("next call", task.map([(directory, 0)]), flush=True)
            print("took", time.monotonic() - started, flush=True)
            print("running tasks stopped", tasks.processes_gone(running, within=5), flush=True)
            Path(directory, "go").write_text("")
    """
    process = run_script(code, timeout=50)
    assert "interrupted" in process.stdout, process.stderr
    assert "next call [0]" in process.stdout, process.stderr
    assert float(process.stdout.split("took")[1].split()[0]) < 10
    assert "running tasks stopped True" in process.stdout, process.stderr


def test_a_programs_own_sigint_handler_is_left_alone() -> None:
    import signal

    def mine(signum: int, frame: Any) -> None:
        del signum, frame

    previous = signal.signal(signal.SIGINT, mine)
    try:
        results = parallel(tasks.square, backend="thread", workers=2).imap(range(5))
        assert next(results) == 0
        assert signal.getsignal(signal.SIGINT) is mine
        assert list(results) == [1, 4, 9, 16]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_the_sigint_handler_is_restored_however_the_job_ends() -> None:
    import signal

    before = signal.getsignal(signal.SIGINT)
    task = parallel(tasks.square, backend="thread", workers=2)
    assert list(task.imap(range(10))) == [x * x for x in range(10)]
    for _ in task.imap(range(10)):
        break
    with pytest.raises(ValueError, match="bad item 3"):
        parallel(tasks.fail_on_three, backend="thread", workers=2).map(range(5))
    assert signal.getsignal(signal.SIGINT) is before


# ---------------------------------------------------------------- defect 10: break


_BACKEND_CLASSES = {"serial": SerialBackend, "thread": ThreadBackend, "process": ProcessBackend}


def test_break_out_of_imap_withdraws_and_submits_nothing_more(
    backend: Decorate, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = backend(tasks.identity)
    cls = _BACKEND_CLASSES[task._self_config.backend]
    calls: list[tuple[str, int, Any]] = []
    original_submit, original_cancel = cls.submit, cls.cancel

    def submit(self: Backend, chunk: ChunkTask) -> None:
        calls.append(("submit", chunk.job.job_id, None))
        original_submit(self, chunk)

    def cancel(self: Backend, job_id: int, *, stop_running: bool) -> None:
        calls.append(("cancel", job_id, stop_running))
        original_cancel(self, job_id, stop_running=stop_running)

    monkeypatch.setattr(cls, "submit", submit)
    monkeypatch.setattr(cls, "cancel", cancel)
    for value in task.imap(range(10_000), chunksize=1, max_in_flight=4):
        if value == 3:
            break
    job_id = calls[0][1]
    mine = [call for call in calls if call[1] == job_id]
    assert mine[-1] == ("cancel", job_id, False)
    assert [call for call in mine if call[0] == "cancel"] == [("cancel", job_id, False)]
    assert len(mine) - 1 <= 4 + 4  # the window, refilled once per yielded result
    assert task.map([1, 2]) == [1, 2]
    assert [call for call in calls if call[1] == job_id] == mine  # nothing of it after the loop


# ---------------------------------------------------------------- defect 12: slow streams


@pytest.mark.parametrize("name", ["thread", "process"])
def test_a_slow_stream_keeps_yielding(name: Literal["thread", "process"]) -> None:
    task = parallel(tasks.identity, backend=name, workers=2)
    task.map(range(2000))  # the cost is known now: chunks would be thousands of items
    fed: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    sent_at: dict[int, float] = {}

    def feed() -> None:
        for i in range(15):
            sent_at[i] = time.monotonic()
            fed.put(i)
            time.sleep(0.1)  # 10 items/s
        fed.put(None)

    feeder = threading.Thread(target=feed)
    feeder.start()
    delays = []
    for result in task.imap(iter(fed.get, None)):
        delays.append(time.monotonic() - sent_at[result])
    feeder.join()
    assert len(delays) == 15
    # ~0.02 s of stall detection plus a round trip; 0.5 s leaves room for a loaded machine,
    # and is far below the 1.5 s the stream lasts (a chunk cut only when full or ended).
    assert sorted(delays)[len(delays) // 2] < 0.5, delays
    assert max(delays) < 1.4, delays  # an item waiting for the end of the stream: 1.5 s


def test_a_fast_generator_is_still_read_in_large_chunks() -> None:
    task = parallel(tasks.identity, backend="thread", workers=2)
    task.map(range(2000))
    results = task.imap((x for x in range(50_000)), stats=True)
    assert sum(results) == sum(range(50_000))
    stats = task.last_stats()
    assert stats is not None
    assert stats.chunks < 200, stats.chunk_sizes  # 50,000 items in chunks of hundreds or more


# ---------------------------------------------------------------- defect 13: the window from the start


def test_max_in_flight_holds_for_the_probes() -> None:
    lock = threading.Lock()
    running = peak = 0

    def watch(x: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return x

    assert parallel(watch, backend="thread", workers=4).map(range(8), max_in_flight=1) == list(range(8))
    assert peak == 1


# ---------------------------------------------------------------- defects 7 and 14: undecodable results


class _UndecodableBackend(SerialBackend):
    """Runs chunks inline; results of a chunk not run `careful` "cannot be decoded" when it
    holds item 2, and a careful chunk fails item 2 alone, as the process backend does."""

    def submit(self, task: ChunkTask) -> None:
        if 2 in task.items and (len(task.items) == 1 or not task.careful):
            task.job.deliver(ChunkUndecodable(task, SerializationError("results could not be unpickled")))
            return
        done = run_in_this_thread(task)
        if 2 in task.items:
            done.errors[list(task.items).index(2)] = SerializationError("result 2 could not be unpickled")
        task.job.deliver(done)


def test_undecodable_results_fail_only_their_item_and_do_not_feed_the_cost() -> None:
    from parmap._chunking import CostEstimate
    from parmap._config import PoolConfig

    config = PoolConfig.build(backend="serial", workers=1, start_method=None, initializer=None, initargs=())
    backend = _UndecodableBackend(config)
    cost = CostEstimate()
    job = Job(lambda: backend, tasks.square, [2], MapOptions(return_exceptions=True), ordered=True, cost=cost)
    (result,) = list(job)
    assert isinstance(result, SerializationError)
    assert cost.seconds_per_item is None  # no measurement arrived: the next map still probes
    job = Job(
        lambda: backend, tasks.square, list(range(5)), MapOptions(chunksize=5, return_exceptions=True), ordered=True
    )
    results = list(job)
    assert [r for i, r in enumerate(results) if i != 2] == [0, 1, 9, 16]
    assert isinstance(results[2], SerializationError)


# ---------------------------------------------------------------- defect 21: forked children


def test_a_job_closed_in_a_forked_child_touches_nothing(tmp_path: Path) -> None:
    code = f"""
        import os, warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: the point here
        from parmap import parallel
        from parmap.backends.thread import ThreadBackend
        from tests import tasks
        calls = []
        original = ThreadBackend.cancel
        def cancel(self, job_id, *, stop_running):
            calls.append(os.getpid())
            original(self, job_id, stop_running=stop_running)
        ThreadBackend.cancel = cancel
        if __name__ == "__main__":
            task = parallel(tasks.identity, backend="thread", workers=2)
            results = task.imap(range(1000), chunksize=1, max_in_flight=4,
                                checkpoint={str(tmp_path / "ck.sqlite")!r})
            assert next(results) == 0
            pid = os.fork()
            if pid == 0:
                results.close()
                del results
                import gc; gc.collect()
                mine = [c for c in calls if c == os.getpid()]
                with open({str(tmp_path / "child")!r}, "w") as out:
                    out.write(f"{{len(mine)}} {{task.last_stats() is None}}")
                os._exit(0)
            os.waitpid(pid, 0)
            print("rest", sum(results) == sum(range(1, 1000)), flush=True)
    """
    process = run_script(code, timeout=60)
    assert "rest True" in process.stdout, process.stderr
    assert (tmp_path / "child").read_text() == "0 True"


# ---------------------------------------------------------------- defect 23: no reference kept


@pytest.mark.parametrize("name", ["thread", "process"])
def test_imap_keeps_no_reference_to_a_yielded_result(name: Literal["thread", "process"]) -> None:
    task = parallel(tasks.make_box, backend=name, workers=2)
    alive = []
    for box in task.imap(range(40), chunksize=8):
        ref = weakref.ref(box)
        del box
        alive.append(ref() is not None)
    assert not any(alive)
    gc.collect()


# ---------------------------------------------------------------- defect 24: where the input is read

_where = contextvars.ContextVar("where", default="unset")


def _context_source(n: int) -> Iterator[tuple[str, str]]:
    for _ in range(n):
        yield _where.get(), str(decimal.Decimal(1) / decimal.Decimal(3))


@pytest.mark.parametrize("method", ["map", "imap", "imap_unordered", "map_async"])
def test_a_generator_is_read_in_the_callers_context(backend: Decorate, method: str) -> None:
    task = backend(tasks.identity)
    token = _where.set("caller")
    try:
        with decimal.localcontext() as context:
            context.prec = 5
            call = getattr(task, method)
            results = call(_context_source(3))
            results = results.get(timeout=20) if method == "map_async" else list(results)
    finally:
        _where.reset(token)
    assert results == [("caller", "0.33333")] * 3


def test_map_reads_an_sqlite_cursor_in_the_calling_thread(backend: Decorate) -> None:
    connection = sqlite3.connect(":memory:")
    try:
        connection.execute("create table t (x integer)")
        connection.executemany("insert into t values (?)", [(x,) for x in range(50)])
        cursor = connection.execute("select x from t order by x")
        assert backend(tasks.identity).map(cursor, chunksize=7) == [(x,) for x in range(50)]
    finally:
        connection.close()


# ---------------------------------------------------------------- defect 32: real parallelism


def test_a_serial_pool_declared_with_eight_workers_sends_one_probe() -> None:
    task = parallel(tasks.square, backend="serial", workers=8)
    assert task.map(range(1000), stats=True) == [x * x for x in range(1000)]
    stats = task.last_stats()
    assert stats is not None
    sizes = stats.chunk_sizes
    assert sizes[0] == 1
    assert sizes[1] > 1, sizes
