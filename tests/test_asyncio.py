"""asyncio: awaitable and cancellable maps, `aimap`, async inputs and `async def` tasks (issue 11).

Every test runs a real event loop (`asyncio.run`). Faults come from the input (an item that
waits for a file, never sleeps racing each other); cancellation is checked by the workers
that ran the cancelled items being gone within a second while another job finishes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import queue
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

import parmap
from parmap import CancelledError, TaskTimeoutError, WorkerLostError, parallel
from tests import tasks, tasks_async
from tests.conftest import PROCESS_BACKENDS, run_script, wait_until
from tests.tasks import processes_gone

T = TypeVar("T")

#: Cancelling must free the cores this fast (the issue's bound).
GONE_WITHIN = 1.0


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def started_pids(directory: Path, count: int) -> list[int]:
    """Wait until `count` items reported their pid in `directory`; return the pids."""
    wait_until(lambda: len(list(directory.glob("started-*"))) >= count)
    return sorted({int(path.read_text()) for path in directory.glob("started-*")})


# --------------------------------------------------------------------------- awaiting


def test_an_awaited_map_gives_its_results_and_keeps_the_multiprocessing_methods(
    backend: Callable[..., Any],
) -> None:
    task = backend(tasks.square)

    async def main() -> list[int]:
        result = task.map_async(range(20))
        values: list[int] = await result
        assert result.ready()
        assert result.successful()
        assert result.get() == values
        result.wait()
        return values

    assert run(main()) == [x * x for x in range(20)]


def test_many_tasks_awaiting_maps_at_once(backend: Callable[..., Any]) -> None:
    task = backend(tasks.square)

    async def main() -> list[list[int]]:
        return list(await asyncio.gather(*(task.map_async(range(n)) for n in range(30))))

    assert run(main()) == [[x * x for x in range(n)] for n in range(30)]


def test_awaiting_parks_no_thread_per_await(tmp_path: Path) -> None:
    """Fifty coroutines await one map: the process has no more threads than with one."""
    task = parallel(tasks.wait_for_file, workers=2)

    async def main() -> list[int]:
        result = task.map_async([(str(tmp_path), x) for x in range(2)])
        one = asyncio.ensure_future(_await(result))
        started_pids(tmp_path, 2)
        await asyncio.sleep(0)
        with_one = threading.active_count()
        others = [asyncio.ensure_future(_await(result)) for _ in range(50)]
        await asyncio.sleep(0.05)  # every awaiter has registered
        assert threading.active_count() == with_one
        (tmp_path / "go").touch()
        values = await one
        assert await asyncio.gather(*others) == [values] * 50
        return values

    assert run(main()) == [0, 1]


async def _await(result: parmap.AsyncResult[list[int]]) -> list[int]:
    return await result


def test_an_awaited_error_has_its_own_type(backend: Callable[..., Any]) -> None:
    task = backend(tasks.fail_on_three)

    async def main() -> None:
        with pytest.raises(ValueError, match="bad item 3"):
            await task.map_async(range(6))

    run(main())
    assert task.map([1, 2]) == [1, 2]


# --------------------------------------------------------------------------- aimap


def test_aimap_is_ordered_and_aimap_unordered_has_every_result(backend: Callable[..., Any]) -> None:
    task = backend(tasks.square)

    async def main() -> tuple[list[int], list[int]]:
        ordered = [value async for value in task.aimap(range(50), chunksize=3)]
        unordered = [value async for value in task.aimap_unordered(iter(range(50)))]
        return ordered, unordered

    ordered, unordered = run(main())
    assert ordered == [x * x for x in range(50)]
    assert sorted(unordered) == ordered


def test_aimap_yields_every_result_before_the_first_error(backend: Callable[..., Any]) -> None:
    task = backend(tasks.fail_on_three)

    async def main() -> list[int]:
        seen: list[int] = []
        with pytest.raises(ValueError, match="bad item 3"):  # noqa: PT012 - the loop is what raises
            async for value in task.aimap(range(8), chunksize=1):
                seen.append(value)
        return seen

    assert run(main()) == [0, 1, 2]


def test_aimap_takes_the_options_of_imap(backend: Callable[..., Any], bars: list[Any]) -> None:
    task = backend(tasks.fail_on_three)

    async def main() -> list[Any]:
        return [value async for value in task.aimap(range(6), return_exceptions=True, progress=True)]

    values = run(main())
    assert isinstance(values[3], ValueError)
    assert values[:3] == [0, 1, 2]
    assert bars[-1].n == 6
    assert bars[-1].disable  # closed: tqdm disables a bar it closes


async def _counted_source(count: int, read: list[int]) -> AsyncIterator[int]:
    for x in range(count):
        await asyncio.sleep(0)
        read.append(x)
        yield x


@pytest.mark.parametrize("ordered", [True, False], ids=["aimap", "aimap_unordered"])
def test_an_async_input_is_read_no_more_than_the_window_ahead(ordered: bool) -> None:
    """max_in_flight=2, chunksize=1: at most the two chunks out, the one being handed over and
    the one read in progress are ahead of the consumer, however slowly it goes."""
    task = parallel(tasks.square, workers=2)
    window = 2

    async def main() -> list[int]:
        read: list[int] = []
        seen: list[int] = []
        method = task.aimap if ordered else task.aimap_unordered
        async for value in method(_counted_source(60, read), chunksize=1, max_in_flight=window):
            seen.append(value)
            assert len(read) - len(seen) <= window + 2, (len(read), len(seen))
            await asyncio.sleep(0.002)  # a slow consumer: the input must wait for it
        return seen

    assert sorted(run(main())) == [x * x for x in range(60)]


def test_an_async_input_error_comes_after_the_results_before_it() -> None:
    task = parallel(tasks.square, workers=2)

    async def source() -> AsyncIterator[int]:
        for x in range(5):
            yield x
        raise OSError("the feed broke")

    async def main() -> list[int]:
        seen: list[int] = []
        with pytest.raises(OSError, match="the feed broke"):  # noqa: PT012 - the loop is what raises
            async for value in task.aimap(source()):
                seen.append(value)
        return seen

    assert run(main()) == [0, 1, 4, 9, 16]


def test_aimap_of_something_not_iterable_is_a_type_error() -> None:
    task = parallel(tasks.square, workers=2)
    with pytest.raises(TypeError, match="iterable or async iterable"):
        task.aimap(42)  # type: ignore[call-overload]
    assert task.map([3]) == [9]


# --------------------------------------------------------------------------- cancellation


@pytest.mark.parametrize("backend", PROCESS_BACKENDS, indirect=True)
def test_cancel_kills_the_workers_running_its_items_and_leaves_other_jobs(
    backend: Callable[..., Any], tmp_path: Path
) -> None:
    waiting = backend(tasks.wait_for_file)
    other = backend(tasks.square)
    result = waiting.map_async([(str(tmp_path), x) for x in range(6)], chunksize=1)
    pids = started_pids(tmp_path, 2)
    queued = other.map_async(range(10))  # waits behind the cancelled job's items
    assert result.cancel() is True
    assert result.cancelled()
    assert result.ready()
    assert processes_gone(pids, GONE_WITHIN), "the workers running the cancelled items still run"
    with pytest.raises(CancelledError) as raised:
        result.get(timeout=5)
    assert isinstance(raised.value, concurrent.futures.CancelledError)
    assert queued.get(timeout=20) == [x * x for x in range(10)]
    assert not list(tmp_path.glob("started-2")), "a queued item of the cancelled job ran"
    assert result.cancel() is True
    assert queued.cancel() is False
    (tmp_path / "go").touch()
    assert waiting.map([(str(tmp_path), 9)]) == [9]


def test_cancel_calls_the_error_callback_and_then_the_pool_works(tmp_path: Path) -> None:
    task = parallel(tasks.wait_for_file, workers=2)
    errors: list[BaseException] = []
    result = task.map_async([(str(tmp_path), x) for x in range(2)], error_callback=errors.append)
    started_pids(tmp_path, 2)
    result.cancel()
    assert len(errors) == 1
    assert isinstance(errors[0], CancelledError)
    (tmp_path / "go").touch()
    assert task.map([(str(tmp_path), 5)]) == [5]


@pytest.mark.parametrize("backend", PROCESS_BACKENDS[:1], indirect=True)
def test_cancelling_the_awaiting_task_cancels_the_map(backend: Callable[..., Any], tmp_path: Path) -> None:
    waiting = backend(tasks.wait_for_file)

    async def main() -> parmap.AsyncResult[list[int]]:
        result: parmap.AsyncResult[list[int]] = waiting.map_async([(str(tmp_path), x) for x in range(4)], chunksize=1)
        awaiting = asyncio.ensure_future(_await(result))
        pids = await asyncio.get_running_loop().run_in_executor(None, started_pids, tmp_path, 2)
        awaiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await awaiting
        assert processes_gone(pids, GONE_WITHIN)
        return result

    result = run(main())
    assert result.cancelled()
    with pytest.raises(CancelledError):
        result.get()
    (tmp_path / "go").touch()
    assert waiting.map([(str(tmp_path), 9)]) == [9]


@pytest.mark.parametrize("how", ["break", "aclose", "task-cancelled"])
def test_leaving_an_aimap_loop_early_cancels_its_running_items(how: str, tmp_path: Path) -> None:
    waiting = parallel(tasks.wait_for_file, workers=2)
    other = parallel(tasks.square, workers=2)

    async def consume(iterator: Any) -> None:
        async for _ in iterator:
            pass

    async def main() -> None:
        queued = other.map_async(range(5))
        iterator = waiting.aimap([(str(tmp_path), x) for x in range(6)], chunksize=1)
        if how == "task-cancelled":
            consumer = asyncio.ensure_future(consume(iterator))
            pids = await asyncio.get_running_loop().run_in_executor(None, started_pids, tmp_path, 2)
            consumer.cancel()
            with pytest.raises(asyncio.CancelledError):
                await consumer
        else:
            first = asyncio.ensure_future(iterator.__anext__())
            pids = await asyncio.get_running_loop().run_in_executor(None, started_pids, tmp_path, 2)
            first.cancel()  # the first item never comes: leave the loop as a `break` would
            with pytest.raises(asyncio.CancelledError):
                await first
            if how == "aclose":
                await iterator.aclose()
            else:
                del iterator
        assert processes_gone(pids, GONE_WITHIN)
        assert await queued == [x * x for x in range(5)]

    run(main())


def test_breaking_out_of_aimap_after_some_results_cancels_the_rest(tmp_path: Path) -> None:
    """Item 0 finishes; the others wait for a file that never comes: `break` after the first result."""
    task = parallel(tasks.return_at_once_or_wait, workers=2)

    async def main() -> list[int]:
        seen: list[int] = []
        async for value in task.aimap([(str(tmp_path), x) for x in range(6)], chunksize=1):
            seen.append(value)
            pids = started_pids(tmp_path, 2)
            break
        assert processes_gone(pids, GONE_WITHIN)  # the iterator was dropped at the break
        return seen

    assert run(main()) == [0]


def test_ctrl_c_during_get_cancels_the_map() -> None:
    completed = run_script(
        """
        import os, signal, tempfile, threading
        from pathlib import Path
        from parmap import parallel
        from tests import tasks
        from tests.conftest import wait_until
        from tests.tasks import processes_gone

        directory = Path(tempfile.mkdtemp())
        task = parallel(tasks.wait_for_file, workers=2)
        result = task.map_async([(str(directory), x) for x in range(4)], chunksize=1)
        wait_until(lambda: len(list(directory.glob("started-*"))) >= 2)
        pids = [int(p.read_text()) for p in directory.glob("started-*")]
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
        try:
            result.get()
        except KeyboardInterrupt:
            print("interrupted", result.cancelled(), processes_gone(pids, 1.0))
        print("after", parallel(tasks.square, workers=2).map([3]))
        """,
        timeout=60,
    )
    assert completed.stdout.split("\n")[:2] == ["interrupted True True", "after [9]"], completed.stderr


def test_ctrl_c_in_a_script_that_awaits_a_map() -> None:
    completed = run_script(
        """
        import asyncio, os, signal, tempfile
        from pathlib import Path
        from parmap import parallel
        from tests import tasks
        from tests.tasks import processes_gone

        directory = Path(tempfile.mkdtemp())
        task = parallel(tasks.wait_for_file, workers=2)

        async def main():
            loop = asyncio.get_running_loop()
            result = task.map_async([(str(directory), x) for x in range(4)], chunksize=1)
            while len(list(directory.glob("started-*"))) < 2:
                await asyncio.sleep(0.01)
            loop.call_later(0.1, os.kill, os.getpid(), signal.SIGINT)
            await result

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            pids = [int(p.read_text()) for p in directory.glob("started-*")]
            print("interrupted", processes_gone(pids, 1.0))
        print("after", parallel(tasks.square, workers=2).map([3]))
        """,
        timeout=60,
    )
    assert completed.stdout.split("\n")[:2] == ["interrupted True", "after [9]"], completed.stderr


@pytest.mark.parametrize("name", ["thread", "serial"])
def test_cancel_on_thread_and_serial_drops_what_is_queued(name: str, tmp_path: Path) -> None:
    """A running plain item cannot be stopped there: it finishes; queued items never run."""
    task = parallel(tasks.wait_for_file, backend=name, workers=1)  # type: ignore[call-overload]
    result = task.map_async([(str(tmp_path), x) for x in range(5)], chunksize=1)
    started_pids(tmp_path, 1)
    assert result.cancel()
    with pytest.raises(CancelledError):
        result.get()
    (tmp_path / "go").touch()
    assert task.map([(str(tmp_path), 9)]) == [9]
    assert not list(tmp_path.glob("started-3")), "a queued item of the cancelled job ran"


@pytest.mark.parametrize("name", ["thread", "serial"])
def test_a_chunk_of_a_cancelled_job_never_starts_even_one_submitted_after_the_cancel(
    name: str, tmp_path: Path
) -> None:
    """Found under load: `cancel()` makes the result ready at once, and the job's thread drops
    its queued chunks a moment later; a worker that went idle in between started one (or the
    job's thread submitted one it had decided on). The job is marked cancelled first, and a
    backend never starts a chunk of a marked job."""
    from parmap._config import PoolConfig
    from parmap.backends import ChunkDone, ChunkTask, JobSpec, get_backend

    backend = get_backend(name)(
        PoolConfig.build(backend=name, workers=1, start_method=None, initializer=None, initargs=())
    )
    outcomes: queue.Queue[Any] = queue.Queue()
    other = JobSpec(job_id=1, function=tasks.wait_for_file, deliver=outcomes.put)
    cancelled = JobSpec(job_id=2, function=tasks.wait_for_file, deliver=outcomes.put)

    def chunk(chunk_id: int, job: JobSpec, x: int) -> ChunkTask:
        return ChunkTask(chunk_id=chunk_id, job=job, indices=[x], items=[(str(tmp_path), x)])

    try:
        if name == "thread":  # the one worker is busy while the cancelled job's chunk waits
            backend.submit(chunk(1, other, 0))
            started_pids(tmp_path, 1)
        else:
            (tmp_path / "go").touch()
        backend.submit(chunk(2, cancelled, 1))  # queued behind the busy worker
        cancelled.cancelled = True
        backend.submit(chunk(3, cancelled, 2))  # submitted after the cancel
        (tmp_path / "go").touch()
        backend.submit(chunk(4, other, 3))
        done = []
        while 4 not in done:
            outcome = outcomes.get(timeout=30)
            assert isinstance(outcome, ChunkDone), outcome
            done.append(outcome.task.chunk_id)
        # Serial runs chunk 2 as it is submitted, before the cancel; nothing else of job 2 runs.
        assert done == ([2, 4] if name == "serial" else [1, 4]), "a chunk of the cancelled job ran"
        if name == "serial":  # it ran chunk 2 at once, as submitted: before the cancel
            assert (tmp_path / "started-1").exists()
        else:
            assert not (tmp_path / "started-1").exists()
        assert not (tmp_path / "started-2").exists()
    finally:
        backend.shutdown()


def test_cancel_on_the_serial_backend_stops_the_chunks_already_decided(tmp_path: Path) -> None:
    """Found under load. The serial backend runs each chunk as it is submitted: a cancel that
    arrives while one runs must stop the sends the driver had already decided on."""
    task = parallel(tasks.wait_for_file, backend="serial")
    result = task.map_async([(str(tmp_path), x) for x in range(5)], chunksize=1, max_in_flight=4)
    started_pids(tmp_path, 1)
    assert result.cancel()
    (tmp_path / "go").touch()
    wait_until(lambda: not result._thread.is_alive())  # the job has wound down
    assert sorted(path.name for path in tmp_path.glob("started-*")) == ["started-0"]


def test_cancel_on_the_thread_backend_stops_running_async_items(tmp_path: Path) -> None:
    """The job's items wait for a file that never comes; after cancel, the pool's one thread
    is free again: the next job runs on it at once."""
    task = parallel(tasks_async.wait_for_file_async, backend="thread", workers=1, concurrency=2)
    result = task.map_async([(str(tmp_path), x) for x in range(4)], chunksize=2)
    started_pids(tmp_path, 2)
    assert result.cancel()
    later = tmp_path / "later"
    later.mkdir()
    (later / "go").touch()
    assert task.map_async([(str(later), 7)]).get(timeout=10) == [7]
    assert not list(tmp_path.glob("started-2")), "a queued item of the cancelled job ran"


# --------------------------------------------------------------------------- async def tasks


def test_async_def_tasks_run_on_every_backend(backend: Callable[..., Any]) -> None:
    task = backend(tasks_async.double, concurrency=4)
    assert task.map(range(40)) == [2 * x for x in range(40)]
    assert sorted(task.imap_unordered(range(10))) == [2 * x for x in range(10)]
    assert backend(tasks_async.double_star).starmap([(1, 2), (3, 4)]) == [6, 14]
    assert backend(tasks_async.AsyncCallable()).map([1, 2]) == [2, 3]
    assert run(tasks_async.double(4)) == 8  # a plain call still returns the coroutine


def test_concurrency_awaits_that_many_items_of_one_worker_at_once(backend: Callable[..., Any], tmp_path: Path) -> None:
    """A barrier of 6 items on one worker: only reachable with 6 of its items in flight together."""
    task = backend(tasks_async.barrier, workers=1, concurrency=6)
    assert task.map([(str(tmp_path), 6, x) for x in range(6)]) == list(range(6))


def test_concurrency_is_a_per_call_option_too(tmp_path: Path) -> None:
    task = parallel(tasks_async.barrier, workers=1)
    assert task.map([(str(tmp_path), 3, x) for x in range(3)], concurrency=3) == [0, 1, 2]


def test_each_worker_keeps_one_event_loop_across_chunks(backend: Callable[..., Any]) -> None:
    task = backend(tasks_async.loop_identity, chunksize=1)
    loops: dict[tuple[int, int], set[int]] = {}
    for _ in range(3):
        for pid, thread, loop in task.map(range(8)):
            loops.setdefault((pid, thread), set()).add(loop)
    assert all(len(ids) == 1 for ids in loops.values()), loops


def test_an_async_item_past_its_timeout_is_cancelled_and_the_worker_lives(backend: Callable[..., Any]) -> None:
    task = backend(tasks_async.sleep_forever_on_one, timeout=0.3, concurrency=3, return_exceptions=True)
    values = task.map(range(4))
    assert values[0] == 0
    assert values[2:] == [2, 3]
    assert isinstance(values[1], TaskTimeoutError)
    assert values[1].index == 1
    assert task.map(range(1)) == [0]  # the pool goes on


@pytest.mark.parametrize("backend", PROCESS_BACKENDS[:1], indirect=True)
def test_an_async_item_that_blocks_its_loop_is_killed_after_its_timeout(backend: Callable[..., Any]) -> None:
    task = backend(tasks_async.block_the_loop_on_one, timeout=0.3)
    with pytest.raises(TaskTimeoutError) as raised:
        task.map(range(3), chunksize=3)
    assert raised.value.index == 1
    assert len(task.map([0, 2])) == 2


@pytest.mark.parametrize("backend", PROCESS_BACKENDS[:1], indirect=True)
def test_a_blocked_loop_among_concurrent_items_charges_only_the_blocker(backend: Callable[..., Any]) -> None:
    """The loop cannot tell who blocks it: the chunk runs again one item at a time, where
    the blocker overruns alone and the items it held up finish."""
    task = backend(tasks_async.block_on_one_else_await, workers=1, timeout=0.3, concurrency=4, return_exceptions=True)
    values = task.map(range(4), chunksize=4)
    assert isinstance(values[1], TaskTimeoutError)
    assert values[1].index == 1
    assert [values[0], *values[2:]] == [0, 2, 3]


def test_another_concurrency_per_call_keeps_what_the_workers_cached(backend: Callable[..., Any]) -> None:
    """`concurrency` travels with each chunk, not with the function: the worker's copy of the
    function, and the client it cached in a global, stay."""
    cache: dict[str, object] = {}

    async def cached_client_id(_: object) -> tuple[int, int]:  # nested: it travels by value
        await asyncio.sleep(0)
        return os.getpid(), id(cache.setdefault("client", object()))

    task = backend(cached_client_id, workers=1)
    first = set(task.map(range(4)))
    assert set(task.map(range(4), concurrency=3)) == first
    assert len(first) == 1


def test_a_new_workers_slot_starts_clean_whatever_the_heap_held() -> None:
    """The shared-memory heap hands out freed blocks again: a stale SLOT_SHARED there would
    turn a plain item's timeout into an unblamed worker loss."""
    from multiprocessing.heap import BufferWrapper

    from parmap.backends._protocol import SLOT_SIZE

    dirty = BufferWrapper(SLOT_SIZE * 8)
    view = dirty.create_memoryview().cast("d")
    for index in range(SLOT_SIZE):
        view[index] = 1.0
    view.release()
    del view, dirty  # freed: the next block of this size is this one
    task = parallel(tasks.sleep_on, workers=1, start_method="fork", timeout=0.3)
    values = task.map([0.0, 30.0], chunksize=2, return_exceptions=True, stats=True)
    assert isinstance(values[1], TaskTimeoutError)
    stats = task.last_stats()
    assert stats is not None
    assert (stats.timeouts, stats.lost_workers) == (1, 0)  # blamed at once, no worker lost


def test_async_items_keep_retries_and_return_exceptions_per_item(backend: Callable[..., Any], tmp_path: Path) -> None:
    retried = backend(tasks_async.fail_first_time, concurrency=4, retries=1)
    assert retried.map([(str(tmp_path), x) for x in range(8)]) == list(range(8))
    failing = backend(tasks_async.raise_on_three, concurrency=4)
    values = failing.map(range(6), return_exceptions=True)
    assert isinstance(values[3], KeyError)
    assert [v for i, v in enumerate(values) if i != 3] == [0, 1, 2, 4, 5]
    with pytest.raises(KeyError):
        failing.map(range(6))


def test_async_item_seeds_do_not_depend_on_concurrency_or_backend(backend: Callable[..., Any]) -> None:
    one = backend(tasks_async.draw, seed=7).map(range(12))
    many = backend(tasks_async.draw, seed=7, concurrency=5).map(range(12))
    reference = parallel(tasks_async.draw, backend="serial", seed=7).map(range(12))
    assert one == many == reference
    assert len(set(one)) == 12


def test_async_items_report_progress(backend: Callable[..., Any], bars: list[Any]) -> None:
    task = backend(tasks_async.report_halfway, concurrency=3)
    assert task.map(range(9), progress=True) == list(range(9))
    assert bars[-1].n == 9


@pytest.mark.parametrize("backend", PROCESS_BACKENDS[:1], indirect=True)
def test_a_worker_dying_among_concurrent_items_is_blamed_on_its_own_item(backend: Callable[..., Any]) -> None:
    task = backend(tasks_async.exit_on_seven, concurrency=4, chunksize=8, return_exceptions=True)
    values = task.map(range(16))
    assert isinstance(values[7], WorkerLostError)
    assert values[7].indices == [7]
    assert [v for i, v in enumerate(values) if i != 7] == [x for x in range(16) if x != 7]


@pytest.mark.parametrize("name", ["process", "thread", "serial"])
def test_async_tasks_work_in_aimap_and_from_inside_a_running_loop(name: str) -> None:
    task = parallel(tasks_async.double, backend=name, workers=2, concurrency=2)  # type: ignore[call-overload]

    async def main() -> tuple[list[int], list[int], list[int]]:
        streamed = [value async for value in task.aimap(range(10))]
        awaited = await task.map_async(range(5))
        blocking = task.map(range(3))  # a blocking call inside a coroutine: runs, blocks this loop
        return streamed, awaited, blocking

    assert run(main()) == ([2 * x for x in range(10)], [0, 2, 4, 6, 8], [0, 2, 4])


# --------------------------------------------------------------------------- refused


def test_generator_functions_are_refused_at_decoration() -> None:
    with pytest.raises(TypeError, match="generator function"):
        parallel(tasks_async.plain_generator)
    with pytest.raises(TypeError, match="async generator function"):
        parallel(workers=2)(tasks_async.async_generator)


def test_concurrency_needs_an_async_def_task() -> None:
    with pytest.raises(ValueError, match="applies to async def tasks"):
        parallel(tasks.square, concurrency=2)
    task = parallel(tasks.square, workers=2)
    with pytest.raises(ValueError, match="applies to async def tasks"):
        task.map([1], concurrency=3)
    assert task.map([2], concurrency=1) == [4]


@pytest.mark.parametrize(
    ("value", "error"), [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError), ("4", TypeError)]
)
def test_bad_concurrency_values_are_refused(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="concurrency"):
        parallel(tasks_async.double, concurrency=value)  # type: ignore[call-overload]
    task = parallel(tasks_async.double, workers=2)
    with pytest.raises(error, match="concurrency"):
        task.map([1], concurrency=value)  # type: ignore[call-overload]
    assert task.map([1]) == [2]


def test_cancelled_error_is_public_and_a_futures_cancelled_error() -> None:
    assert parmap.CancelledError.__module__ == "parmap"
    assert issubclass(CancelledError, parmap.ParmapError)
    assert issubclass(CancelledError, concurrent.futures.CancelledError)
    assert issubclass(CancelledError, Exception)  # unlike asyncio.CancelledError


def test_a_thread_loop_closed_from_two_threads_at_once_closes_once() -> None:
    """Found under load: a loop's thread ending (its `__del__`) and its owner's shutdown
    closed the same loop at once, and asyncio's `close` raised. Now one closer at a time."""
    from parmap.backends._event_loops import _ThreadLoop

    held = _ThreadLoop()
    real_close = held.loop.close
    inside = threading.Event()
    go = threading.Event()
    active: list[int] = []
    most: list[int] = [0]

    def slow_close() -> None:
        active.append(1)
        most[0] = max(most[0], len(active))
        inside.set()
        go.wait(20)
        try:
            real_close()
        finally:
            active.pop()

    held.loop.close = slow_close  # type: ignore[method-assign]
    first = threading.Thread(target=held.close)
    second = threading.Thread(target=held.close)
    first.start()
    assert inside.wait(20)
    second.start()
    second.join(0.2)  # time for the second closer to get in, were nothing to stop it
    go.set()
    first.join(20)
    second.join(20)
    assert most[0] == 1
    assert held.loop.is_closed()
