"""Large buffers travel through shared memory; nothing is left behind, even when a worker dies."""

from __future__ import annotations

import errno
import gc
import glob
import itertools
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

import parmap
from parmap import WorkerLostError, _transport, parallel
from tests import tasks
from tests.conftest import _cmdline, mounted, wait_until, worker_processes

Decorate = Callable[..., Any]
BIG = _transport.OUT_OF_BAND_MIN_BYTES * 2


REPO = Path(__file__).resolve().parents[1]


def segments(pid: int | None = None) -> list[str]:
    return glob.glob(os.path.join(_transport._SEGMENT_DIR, f"parmap-{os.getpid() if pid is None else pid}-*"))


def test_encode_decode_round_trip_small_stays_in_band() -> None:
    data = _transport.encode({"a": [1, 2, 3]}, "parmap-test-")
    assert data[:1] == b"\x00"
    assert _transport.decode(data) == {"a": [1, 2, 3]}


def test_large_buffers_go_out_of_band_and_are_released_by_the_reader() -> None:
    payload = bytearray(os.urandom(BIG))
    prefix = _transport.segment_prefix(os.getpid(), "unit")
    data = _transport.encode([payload, b"small"], prefix)
    assert data[:1] == b"\x01"
    assert len(data) < 10_000  # the megabytes are not in the message
    assert len(segments()) == 1
    restored = _transport.decode(data)
    assert restored == [payload, b"small"]
    assert segments() == []  # the reader unlinked it


def test_discard_releases_segments_of_an_unread_message() -> None:
    prefix = _transport.segment_prefix(os.getpid(), "unit")
    data = _transport.encode(bytearray(BIG), prefix)
    assert segments()
    _transport.discard(data)
    assert segments() == []


def test_numpy_arrays_round_trip_through_the_pool(process_backend: Decorate) -> None:
    numpy = pytest.importorskip("numpy")
    arrays = [numpy.full(BIG // 8, float(i)) for i in range(4)]
    total = process_backend(numpy.sum).map(arrays)
    assert total == [float(i) * (BIG // 8) for i in range(4)]
    doubled = process_backend(tasks.identity).map(arrays)
    for original, back in zip(arrays, doubled):
        assert numpy.array_equal(original, back)
    back = doubled[0]
    back[0] = -1.0  # the received array is writable and private to the receiver
    assert arrays[0][0] == 0.0
    assert segments() == []


def test_bytes_and_memoryview_results(process_backend: Decorate) -> None:
    blobs = [bytes([i]) * BIG for i in range(3)]
    assert process_backend(tasks.identity).map(blobs) == blobs
    assert process_backend(bytes).map([memoryview(b) for b in blobs]) == blobs
    assert segments() == []


def test_no_segment_outlives_a_dead_worker(process_backend: Decorate) -> None:
    big = bytes(BIG)

    def die_with(blob: bytes) -> bytes:
        if blob[:1] == b"\x01":
            os._exit(1)
        return blob

    items = [big, b"\x01" + big, big, big]
    results = process_backend(die_with).map(items, chunksize=1, return_exceptions=True)
    assert isinstance(results[1], WorkerLostError)
    assert results[0] == results[2] == results[3] == big
    assert segments() == []


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_every_buffer_type_travels_out_of_band(kind: Any) -> None:
    original = os.urandom(BIG)
    prefix = _transport.segment_prefix(os.getpid(), "unit")
    data = _transport.encode([kind(original), 1], prefix)
    assert data[:1] == b"\x01"
    assert len(data) < 10_000
    restored = _transport.decode(data)
    assert type(restored[0]) is kind
    assert bytes(restored[0]) == original
    assert segments() == []


def test_small_memoryview_is_pickled_in_band() -> None:
    restored = _transport.decode(_transport.encode([memoryview(b"abc")], "parmap-test-"))
    assert bytes(restored[0]) == b"abc"


def test_array_and_large_bytes_in_one_message_keep_their_own_buffers() -> None:
    numpy = pytest.importorskip("numpy")
    array = numpy.arange(BIG // 8, dtype="float64")
    blob = os.urandom(BIG)
    prefix = _transport.segment_prefix(os.getpid(), "unit")
    restored = _transport.decode(_transport.encode([array, blob, array * 2], prefix))
    assert numpy.array_equal(restored[0], array)
    assert restored[1] == blob
    assert numpy.array_equal(restored[2], array * 2)
    assert segments() == []


# ---------------------------------------------------------------- /dev/shm too small (issue 10: 18)


def _buffers_in_cycles() -> list[object]:
    """The memoryviews and pickle buffers that only the cyclic garbage collector would free."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return [obj for obj in gc.garbage if isinstance(obj, (memoryview, pickle.PickleBuffer))]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def _no_room(prefix: str, raw: memoryview) -> str:
    raise OSError(errno.ENOSPC, "No space left on device", _transport._SEGMENT_DIR)


def _room_for_one_segment() -> Callable[[str, memoryview], str]:
    """A segment writer that writes the first segment for real, then finds the device full."""
    real = _transport._write_segment
    calls = itertools.count()  # next() is atomic: several writer threads may call at once

    def write(prefix: str, raw: memoryview) -> str:
        if next(calls):
            raise OSError(errno.ENOSPC, "No space left on device", _transport._SEGMENT_DIR)
        return real(prefix, raw)

    return write


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_a_message_that_does_not_fit_in_shared_memory_goes_in_band(kind: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_transport, "_write_segment", _room_for_one_segment())
    first, second = os.urandom(BIG), os.urandom(BIG)
    prefix = _transport.segment_prefix(os.getpid(), "unit")
    gc.collect()
    data = _transport.encode([kind(first), kind(second), 3], prefix)
    # No reference cycle holds the buffers: the cyclic GC crashes clearing memoryviews cast
    # from one another, so the failed writes must be freed by reference counting alone.
    # (Only buffers count: threads left by earlier tests, Dask's, may make garbage meanwhile.)
    assert _buffers_in_cycles() == []
    assert data[:1] == b"\x00"  # in band, through the pipe
    assert segments() == []  # the segment written before the device was full is gone
    restored = _transport.decode(data)
    assert [type(restored[0]), bytes(restored[0]), bytes(restored[1]), restored[2]] == [kind, first, second, 3]


def test_a_numpy_array_that_does_not_fit_goes_in_band(monkeypatch: pytest.MonkeyPatch) -> None:
    numpy = pytest.importorskip("numpy")
    monkeypatch.setattr(_transport, "_write_segment", _no_room)
    array = numpy.arange(BIG // 8, dtype="float64")
    data = _transport.encode((array, "x"), _transport.segment_prefix(os.getpid(), "unit"))
    assert data[:1] == b"\x00"
    restored = _transport.decode(data)
    assert numpy.array_equal(restored[0], array)
    assert restored[1] == "x"
    assert segments() == []


def test_too_little_free_space_goes_in_band_without_writing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_transport, "_free_bytes", lambda directory: BIG - 1)

    def must_not_write(prefix: str, raw: memoryview) -> str:
        raise AssertionError("a segment was written although it could not fit")

    monkeypatch.setattr(_transport, "_write_segment", must_not_write)
    payload = os.urandom(BIG)
    data = _transport.encode(payload, _transport.segment_prefix(os.getpid(), "unit"))
    assert data[:1] == b"\x00"
    assert _transport.decode(data) == payload


def test_when_not_even_the_pipe_can_take_it_the_error_names_the_segment_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_transport, "_write_segment", _no_room)
    real_dumps = _transport.dumps

    def dumps(obj: Any, buffer_callback: Any = None, restart: Any = None) -> bytes:
        if buffer_callback is None:
            raise MemoryError
        return real_dumps(obj, buffer_callback, restart)

    monkeypatch.setattr(_transport, "dumps", dumps)
    with pytest.raises(MemoryError, match=f"could neither be written to {_transport._SEGMENT_DIR}.*No space left"):
        _transport.encode(bytes(BIG), _transport.segment_prefix(os.getpid(), "unit"))
    assert segments() == []


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (mounting needs root or CAP_SYS_ADMIN: skipped where it is not permitted)."""
    directory = tmp_path / "shm"
    directory.mkdir()
    with mounted(["-t", "tmpfs", "-o", "size=4m", "tmpfs"], directory, "mount a tmpfs") as target:
        yield target


def test_a_full_tmpfs_falls_back_to_the_pipe(small_tmpfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_transport, "_SEGMENT_DIR", str(small_tmpfs))
    prefix = _transport.segment_prefix(os.getpid(), "unit")
    fits = os.urandom(BIG)
    data = _transport.encode(fits, prefix)
    assert data[:1] == b"\x01"  # 2 MiB fits in 4 MiB: shared memory as usual
    assert _transport.decode(data) == fits
    too_big = os.urandom(3 * BIG)
    data = _transport.encode(too_big, prefix)  # refused by the free-space check
    assert data[:1] == b"\x00"
    assert _transport.decode(data) == too_big
    # Past the free-space check (another writer filled the device meanwhile): the write
    # itself hits ENOSPC part-way, and the partial file is removed.
    monkeypatch.setattr(_transport, "_free_bytes", lambda directory: sys.maxsize)
    data = _transport.encode(too_big, prefix)
    assert data[:1] == b"\x00"
    assert _transport.decode(data) == too_big
    assert os.listdir(small_tmpfs) == []


def test_a_map_whose_segments_cannot_be_written_travels_through_the_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Items in the caller and results in the (forked) workers both fall back."""
    numpy = pytest.importorskip("numpy")
    monkeypatch.setattr(_transport, "_write_segment", _no_room)  # inherited by the forked workers
    blobs = [bytes([i]) * (BIG + i) for i in range(4)]
    arrays = [numpy.full(BIG // 8, float(i)) for i in range(3)]
    task = parallel(tasks.identity, workers=2, start_method="fork")
    assert task.map(blobs, chunksize=1) == blobs
    for original, back in zip(arrays, task.map(arrays, chunksize=1)):
        assert numpy.array_equal(original, back)
    assert parallel(tasks.payload_length, workers=2, start_method="fork").map(blobs) == [len(b) for b in blobs]
    assert segments() == []


# ---------------------------------------------------------------- a killed caller (issue 10: 19)

_CALLER = """
    import sys
    from parmap import parallel
    from tests import tasks

    directory = sys.argv[1]
    payload = bytes({size})
    task = parallel(tasks.wait_for_file_with_payload, workers=1, start_method="fork")
    # One item runs (waiting for the go file); the others wait in shared memory.
    print(list(task.imap([(directory, x, payload) for x in range(4)], chunksize=1)), flush=True)
"""


def _watchers_of(pid: int) -> list[int]:
    return [child for child in worker_processes() if f"parmap-{pid}-" in _cmdline(child)]


@pytest.mark.parametrize("signal_number", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_caller_leaves_no_segment_behind(signal_number: int, tmp_path: Path) -> None:
    script = tmp_path / "caller.py"
    script.write_text(textwrap.dedent(_CALLER.format(size=BIG)))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    caller = subprocess.Popen(
        [sys.executable, "-W", "ignore::DeprecationWarning", str(script), str(tmp_path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: (tmp_path / "started-0").exists() or caller.poll() is not None)
        assert caller.poll() is None, caller.communicate()[1].decode()
        wait_until(lambda: len(segments(caller.pid)) >= 1)  # queued items wait in /dev/shm
        caller.send_signal(signal_number)
        assert caller.wait(timeout=20) == -signal_number
        wait_until(lambda: segments(caller.pid) == [], timeout=10)
    finally:
        (tmp_path / "go").touch()  # a worker that somehow survived finishes and exits
        if caller.poll() is None:
            caller.kill()
            caller.wait()
        assert caller.stderr is not None
        caller.stderr.close()


@pytest.fixture
def room_in_shared_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Segments are written whatever other programs left free in /dev/shm meanwhile."""
    monkeypatch.setattr(_transport, "_free_bytes", lambda directory: sys.maxsize)


@pytest.mark.usefixtures("room_in_shared_memory")
def test_segments_are_watched_from_the_first_one_and_shutdown_reaps_the_watcher() -> None:
    task = parallel(tasks.payload_length, workers=2, start_method="fork")
    assert task.map([b"small"] * 4) == [5] * 4
    assert _watchers_of(os.getpid()) == []  # small items: no segment, no watcher, nothing to pay
    assert task.map([bytes(BIG)] * 2) == [BIG] * 2
    watcher = _transport._watcher
    assert watcher is not None, f"no watcher started (start failed: {_transport._watcher_failed})"
    assert watcher.poll() is None, f"the watcher exited with {watcher.returncode}"
    watchers = _watchers_of(os.getpid())
    assert watchers == [watcher.pid]
    parmap.shutdown()
    assert _watchers_of(os.getpid()) == []
    assert not os.path.exists(f"/proc/{watchers[0]}"), "the watcher was not reaped"
    assert task.map([bytes(BIG)]) == [BIG]  # a later segment starts a new one
    assert len(_watchers_of(os.getpid())) == 1


@pytest.mark.usefixtures("room_in_shared_memory")
def test_a_watcher_killed_from_outside_is_replaced_by_the_next_segment() -> None:
    task = parallel(tasks.payload_length, workers=1, start_method="fork")
    assert task.map([bytes(BIG)]) == [BIG]
    (first,) = _watchers_of(os.getpid())
    os.kill(first, signal.SIGKILL)  # its SIGTERM is ignored by design
    wait_until(lambda: _transport._watcher is not None and _transport._watcher.poll() is not None)
    assert task.map([bytes(BIG)]) == [BIG]
    assert [pid for pid in _watchers_of(os.getpid()) if pid != first] != []


@pytest.mark.usefixtures("room_in_shared_memory")
def test_the_first_large_result_starts_the_watcher_too() -> None:
    """Small items, large results: the workers may write more segments under the caller's name."""
    task = parallel(tasks.zero_bytes, workers=2, start_method="fork")
    assert task.map([10, 20]) == [bytes(10), bytes(20)]
    assert _watchers_of(os.getpid()) == []
    assert task.map([BIG, 5]) == [bytes(BIG), bytes(5)]
    assert len(_watchers_of(os.getpid())) == 1


def test_a_watcher_told_of_a_normal_close_removes_nothing() -> None:
    """After shutdown() the caller lives on and may write segments again: none are swept."""
    _transport.watch_segments()
    prefix = _transport.segment_prefix(os.getpid(), "unit")
    data = _transport.encode(bytes(BIG), prefix)
    parmap.shutdown()  # the watcher reads the close byte and exits without sweeping
    assert len(segments()) == 1
    assert _transport.decode(data) == bytes(BIG)


_LEAVES_A_SEGMENT = """
    import os, sys
    from parmap import _transport

    # Encoded for a message that is never sent: nobody will ever read or discard it.
    _transport.encode(bytes({size}), _transport.segment_prefix(os.getpid(), "lost"))
    print(os.getpid(), flush=True)
    {ending}
"""


@pytest.mark.parametrize(
    "ending",
    ["", "sys.exit(3)", "raise RuntimeError('user error')"],
    ids=["end-of-script", "sys.exit", "unhandled-exception"],
)
def test_interpreter_exit_leaves_no_segment_behind(ending: str) -> None:
    code = textwrap.dedent(_LEAVES_A_SEGMENT.format(size=BIG, ending=ending))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == {"": 0, "sys.exit(3)": 3}.get(ending, 1), done.stderr
    assert segments(int(done.stdout)) == []  # swept by the watcher as the interpreter exited


# ---------------------------------------------------------------- a child forked by the caller (issue 10: 21)

_FORKING_CALLER = """
    import os, sys
    from parmap import _transport, parallel
    from tests import tasks

    ending = sys.argv[1]
    payload = bytes({size})
    task = parallel(tasks.payload_length, workers=2, start_method="fork")
    results = []
    for number, result in enumerate(task.imap([payload] * 12, chunksize=1)):
        results.append(result)
        if number == 2:
            child = os.fork()
            if child == 0:
                if ending == "own map, sys.exit":
                    mine = parallel(tasks.payload_length, workers=2, start_method="fork")
                    assert mine.map([payload] * 3) == [len(payload)] * 3
                    sys.exit(0)
                if ending == "sys.exit":
                    sys.exit(0)
                if ending == "os._exit":
                    os._exit(0)
                break  # "end of script": the child leaves the loop and the script ends
            _, status = os.waitpid(child, 0)
            assert os.waitstatus_to_exitcode(status) == 0, status
            watcher = _transport._watcher
            assert watcher is not None and watcher.poll() is None, "the child stopped the parent's watcher"
    else:
        assert results == [len(payload)] * 12, results
        print("complete", flush=True)
"""


@pytest.mark.parametrize("ending", ["sys.exit", "end of script", "os._exit", "own map, sys.exit"])
def test_a_child_forked_inside_imap_leaves_the_parents_work_alone(ending: str, tmp_path: Path) -> None:
    script = tmp_path / "forking.py"
    script.write_text(textwrap.dedent(_FORKING_CALLER.format(size=BIG + 1)))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", str(script), ending],
        env=env,
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "complete\n", "")
