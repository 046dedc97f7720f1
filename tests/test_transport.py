"""Large buffers travel through shared memory; nothing is left behind, even when a worker dies."""

from __future__ import annotations

import glob
import os
from typing import Any, Callable

import pytest

from parmap import WorkerLostError, _transport
from tests import tasks

Decorate = Callable[..., Any]
BIG = _transport.OUT_OF_BAND_MIN_BYTES * 2


def segments() -> list[str]:
    return glob.glob(os.path.join(_transport._SEGMENT_DIR, f"parmap-{os.getpid()}-*"))


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
