"""`parmap.worker_state()` and `shared=` (issue 12): per-worker state, one object sent once.

On every backend: the state is a per-worker dict kept across chunks and maps (filled by the
initializer where there is one), `parmap.shared()` is the map's `shared=` object, and both
raise `RuntimeError` outside a task. On the process backend: the shared object is pickled
once (counted by its `__reduce__`), unpickled once per worker, arrays are mapped from shared
memory (no copy), it reaches a replacement worker, and passing the same object (or an equal
array) again sends nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import parmap
from parmap import SerializationError, WorkerLostError
from tests import tasks_state
from tests.conftest import process_pool_of
from tests.tasks_state import (
    CountingTable,
    count_calls,
    exit_or_lookup,
    lookup,
    lookup_async,
    lookup_row,
    read_given,
    read_shared_anyway,
    remember_in_state,
    shared_is_mapped,
    shared_kind,
    state_of_thread_at_barrier,
)

pytestmark = pytest.mark.timeout(60)


# --------------------------------------------------------------------------- worker_state


def test_worker_state_outside_a_task_is_a_runtime_error() -> None:
    with pytest.raises(RuntimeError, match="only available inside a task"):
        parmap.worker_state()


def test_shared_outside_a_task_is_a_runtime_error() -> None:
    with pytest.raises(RuntimeError, match="only available inside a task"):
        parmap.shared()


def test_worker_state_is_kept_across_chunks_and_maps(backend: Callable[..., Any]) -> None:
    task = backend(count_calls)
    first = task.map(range(6), chunksize=1)
    second = task.map(range(6), chunksize=1)
    calls: dict[str, list[int]] = {}
    states: dict[str, set[int]] = {}
    for worker, count, state in first + second:
        calls.setdefault(worker, []).append(count)
        states.setdefault(worker, set()).add(state)
    for worker, counts in calls.items():
        # Kept state: each worker's counts are 1..n, one each. Not necessarily in input order:
        # a chunk sent ahead to a busy worker may be taken back and run later (found under load).
        assert sorted(counts) == list(range(1, len(counts) + 1)), f"{worker} lost its state: {counts}"
        assert len(states[worker]) == 1
    assert sum(len(counts) for counts in calls.values()) == 12


def test_the_initializer_fills_the_worker_state(backend: Callable[..., Any]) -> None:
    task = backend(read_given, initializer=remember_in_state, initargs=(7,))
    assert task.map(range(4), chunksize=1) == [7, 7, 7, 7]


def test_each_thread_has_its_own_state() -> None:
    task = parmap.parallel(state_of_thread_at_barrier, backend="thread", workers=2)
    (first_thread, first_state), (second_thread, second_state) = task.map(range(2), chunksize=1)
    assert first_thread != second_thread
    assert first_state != second_state


def test_the_serial_backend_has_one_state() -> None:
    task = parmap.parallel(count_calls, backend="serial")
    results = task.map(range(3)) + task.map(range(2))
    assert [count for _, count, _ in results] == [1, 2, 3, 4, 5]
    assert len({state for _, _, state in results}) == 1


def test_a_replacement_worker_starts_with_an_empty_state(process_backend: Callable[..., Any]) -> None:
    task = process_backend(count_calls, workers=1, max_tasks_per_worker=2)
    results = task.map(range(6), chunksize=1)
    assert [count for _, count, _ in results] == [1, 2, 1, 2, 1, 2]
    assert len({worker for worker, _, _ in results}) == 3


# --------------------------------------------------------------------------- shared=


def test_tasks_read_the_shared_object(backend: Callable[..., Any]) -> None:
    task = backend(lookup)
    table = {i: i * 10 for i in range(20)}
    assert task.map(range(20), shared=table) == [i * 10 for i in range(20)]


def test_shared_given_to_the_decorator_is_the_default(backend: Callable[..., Any]) -> None:
    task = backend(lookup, shared=[5, 6, 7])
    assert task.map(range(3)) == [5, 6, 7]
    assert task.map(range(2), shared=[8, 9]) == [8, 9]


def test_a_map_without_shared_fails_the_items_that_ask(backend: Callable[..., Any]) -> None:
    task = backend(read_shared_anyway)
    results = task.map(range(3), return_exceptions=True)
    assert all(isinstance(result, RuntimeError) for result in results)
    assert "no shared= object" in str(results[0])


def test_shared_none_is_an_object_like_any_other(backend: Callable[..., Any]) -> None:
    assert backend(read_shared_anyway).map(range(2), shared=None) == [None, None]


def test_async_tasks_see_the_shared_object_and_their_state(backend: Callable[..., Any]) -> None:
    task = backend(lookup_async, concurrency=3)
    results = task.map(range(9), shared=list(range(100, 109)))
    assert [value for value, _ in results] == list(range(100, 109))


def test_a_numpy_array_reaches_every_backend_intact(backend: Callable[..., Any]) -> None:
    table = np.arange(300_000, dtype=np.int64) * 3
    assert backend(lookup).map([0, 1, 299_999], shared=table) == [0, 3, 899_997]


def test_the_shared_object_is_pickled_once_and_unpickled_once_per_worker(
    process_backend: Callable[..., Any],
) -> None:
    tasks_state.PICKLED = 0
    table = CountingTable({i: f"row {i}" for i in range(40)})
    task = process_backend(lookup_row, workers=2)
    first = task.map(range(40), shared=table, chunksize=1)
    again = task.map(range(40), shared=table, chunksize=1)
    assert [row for row, _ in first + again] == [f"row {i}" for i in range(40)] * 2
    assert tasks_state.PICKLED == 1, "pickled more than once for one pool"
    assert max(unpickled for _, unpickled in first + again) == 1, "a worker unpickled it twice"


def test_a_numpy_array_is_mapped_from_shared_memory_not_copied(process_backend: Callable[..., Any]) -> None:
    table = np.arange(1 << 20, dtype=np.float64)  # 8 MB: travels out of band
    results = process_backend(shared_is_mapped).map(range(4), shared=table, chunksize=1)
    assert all(mapped for mapped, _ in results), results


def test_bytes_arrive_as_a_read_only_view_without_a_copy(process_backend: Callable[..., Any]) -> None:
    task = process_backend(shared_kind)
    assert task.map(range(2), shared=b"x" * (2 << 20)) == [("memoryview", False)] * 2
    assert task.map(range(2), shared=bytearray(2 << 20)) == [("memoryview", True)] * 2


def test_an_array_changed_in_place_is_sent_again(backend: Callable[..., Any]) -> None:
    table = np.zeros(1000, dtype=np.int64)
    task = backend(lookup)
    assert task.map([0, 1], shared=table) == [0, 0]
    table[1] = 42
    assert task.map([0, 1], shared=table) == [0, 42]


def test_an_equal_array_is_not_sent_again(process_backend: Callable[..., Any]) -> None:
    table = np.arange(1000)
    task = process_backend(lookup, workers=1)
    assert task.map([5], shared=table) == [5]
    assert task.map([6], shared=table.copy()) == [6]
    assert len(process_pool_of(task)._shared_payloads) == 1


def test_a_replacement_worker_receives_the_shared_object(process_backend: Callable[..., Any]) -> None:
    table = {i: -i for i in range(8)}
    results = process_backend(exit_or_lookup).map(range(8), shared=table, chunksize=1, return_exceptions=True)
    assert isinstance(results[3], WorkerLostError)
    assert [result for i, result in enumerate(results) if i != 3] == [-i for i in range(8) if i != 3]


def test_a_retired_worker_replacement_receives_it_too(process_backend: Callable[..., Any]) -> None:
    task = process_backend(lookup, workers=1, max_tasks_per_worker=1)
    assert task.map(range(4), shared=[9, 8, 7, 6], chunksize=1) == [9, 8, 7, 6]


def test_an_unpicklable_shared_object_is_a_serialization_error_and_the_pool_lives(
    process_backend: Callable[..., Any],
) -> None:
    task = process_backend(lookup)
    with pytest.raises(SerializationError, match="shared object could not be pickled"):
        task.map(range(3), shared=threading.Lock())
    assert task.map(range(3), shared=[1, 2, 3]) == [1, 2, 3]


def test_a_shared_object_that_cannot_be_unpickled_fails_the_items_and_the_pool_lives(
    process_backend: Callable[..., Any],
) -> None:
    task = process_backend(lookup)
    results = task.map(range(3), shared=_UnloadableInWorkers(), return_exceptions=True)
    assert all(isinstance(result, SerializationError) for result in results), results
    assert "shared object could not be unpickled" in str(results[0])
    assert task.map(range(3), shared=[1, 2, 3]) == [1, 2, 3]


class _UnloadableInWorkers:
    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse, ())


def _refuse() -> None:
    raise ValueError("not here")


def test_a_worker_that_dies_unpickling_the_shared_object_fails_that_map_only(
    process_backend: Callable[..., Any],
) -> None:
    task = process_backend(lookup, workers=1)
    with pytest.raises(SerializationError, match="died unpickling it"):
        task.map(range(3), shared=_ExitsInWorkers())
    assert task.map(range(3), shared=[1, 2, 3]) == [1, 2, 3]


class _ExitsInWorkers:
    def __reduce__(self) -> tuple[Any, ...]:
        import os

        return (os._exit, (3,))


def test_letting_go_of_the_array_frees_its_shared_memory(process_backend: Callable[..., Any]) -> None:
    import gc
    import os

    task = process_backend(lookup, workers=1)
    table = np.arange(1 << 20, dtype=np.float64)
    assert task.map([3], shared=table) == [3.0]
    pool = process_pool_of(task)
    prefix = pool._encode_prefix
    segments = [name for name in os.listdir("/dev/shm") if name.startswith(prefix)]
    assert segments
    assert len(pool._shared_payloads) == 1
    del table
    gc.collect()
    assert not pool._shared_payloads
    assert not [name for name in os.listdir("/dev/shm") if name.startswith(prefix)]


def test_immutable_buffers_passed_again_need_no_new_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    from parmap import _sharing

    digests: list[int] = []
    real = _sharing.digest_of

    def counting(value: Any) -> bytes | None:
        digests.append(id(value))
        return real(value)

    monkeypatch.setattr(_sharing, "digest_of", counting)
    table = np.arange(1000)
    first = _sharing.identify(table).key
    assert _sharing.identify(table).key == first
    assert len(digests) == 2, "a writable array is hashed at every call"
    table.setflags(write=False)
    assert _sharing.identify(table).key == first
    assert len(digests) == 3, "a read-only array that owns its memory may be made writable again"
    table.setflags(write=True)
    table[0] = 7
    table.setflags(write=False)
    assert _sharing.identify(table).key != first, "changed while writable: a new key"
    data = bytes(8000)
    frozen = np.frombuffer(data, dtype=np.int64)
    keys = {_sharing.identify(data).key, _sharing.identify(data).key}
    keys |= {_sharing.identify(frozen).key, _sharing.identify(frozen).key}
    assert len(digests) == 6, "bytes, and an array over bytes, are hashed once"
    assert len(keys) == 2


def test_a_large_array_is_hashed_in_blocks_and_any_change_shows() -> None:
    from parmap import _sharing

    table = np.zeros((_sharing.PARALLEL_DIGEST_MIN_BYTES // 40 + 12_345) * 5, dtype=np.float64)
    first = _sharing.digest_of(table)
    assert _sharing.digest_of(table.copy()) == first
    table[-1] = 1.0  # in the last, partial block
    assert _sharing.digest_of(table) != first
    assert _sharing.digest_of(table.reshape(-1, 5)) != _sharing.digest_of(table.reshape(5, -1))


def test_a_read_only_view_of_a_writable_array_is_hashed_each_time(process_backend: Callable[..., Any]) -> None:
    table = np.zeros(100, dtype=np.int64)
    view = table[:]
    view.setflags(write=False)
    task = process_backend(lookup, workers=1)
    assert task.map([1], shared=view) == [0]
    table[1] = 5  # through the writable base
    assert task.map([1], shared=view) == [5]


def _keep_table(table: CountingTable) -> None:
    parmap.worker_state()["table"] = table


def _row_from_state(i: int) -> str:
    table: CountingTable = parmap.worker_state()["table"]
    return table.rows[i]


def test_under_fork_the_initializers_arguments_are_inherited_not_pickled() -> None:
    tasks_state.PICKLED = 0
    table = CountingTable({0: "zero", 1: "one"})
    task = parmap.parallel(_row_from_state, workers=2, start_method="fork", initializer=_keep_table, initargs=(table,))
    assert task.map([0, 1, 0]) == ["zero", "one", "zero"]
    assert tasks_state.PICKLED == 0


def test_shutdown_lets_go_of_the_shared_objects_parmap_remembers() -> None:
    import gc
    import weakref

    from parmap import _sharing

    class Table(dict[int, int]):
        pass  # a dict subclass takes weak references: the probe that it was let go of

    table = Table({0: 1})
    probe = weakref.ref(table)
    rows = [table]  # held by a list, which takes no weak reference: parmap holds the list
    assert parmap.parallel(lookup, backend="serial").map([0], shared=rows) == [table]
    assert _sharing._by_identity
    del table, rows
    parmap.shutdown()
    gc.collect()
    assert not _sharing._by_identity
    assert probe() is None
