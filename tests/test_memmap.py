"""File-backed `numpy.memmap` arrays travel by reference (issue 12, `parmap._reducers`).

A memmap (or a view of one) pickles as its file name, byte offset, layout and mode, and
is mapped again where it is unpickled: a slice of a large file costs a few hundred bytes,
not its size, and writes through an `r+` map in a worker land in the file.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from parmap import _transport

from . import tasks_pickling

numpy = pytest.importorskip("numpy")

ROWS, COLUMNS = 4096, 8  # 256 KiB of float64


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    array = numpy.memmap(path, dtype=numpy.float64, mode="w+", shape=(ROWS, COLUMNS))
    array[:] = numpy.arange(ROWS * COLUMNS, dtype=numpy.float64).reshape(ROWS, COLUMNS)
    array.flush()
    del array
    return path


def round_trip(obj: Any) -> tuple[Any, int]:
    payload = _transport.dumps(obj)
    return pickle.loads(payload), len(payload)


@pytest.mark.parametrize("mode", ["r", "r+", "w+"])
def test_a_slice_travels_as_a_map_of_the_same_file(data_file: Path, mode: str) -> None:
    if mode == "w+":  # w+ would truncate: the copy re-opens r+
        source = numpy.memmap(data_file, dtype=numpy.float64, mode="w+", shape=(ROWS, COLUMNS))
        source[:] = numpy.arange(ROWS * COLUMNS, dtype=numpy.float64).reshape(ROWS, COLUMNS)
    else:
        source = numpy.memmap(data_file, dtype=numpy.float64, mode=mode, shape=(ROWS, COLUMNS))
    view = source[1000:3000]
    copy, size = round_trip(view)
    assert size < 1000  # not the 128 KB of the slice
    assert isinstance(copy, numpy.memmap)
    assert Path(copy.filename) == data_file.resolve()
    assert copy.mode == ("r+" if mode == "w+" else mode)
    numpy.testing.assert_array_equal(copy, view)
    assert copy.flags.writeable == view.flags.writeable


def test_a_copy_on_write_map_travels_with_its_changes(data_file: Path) -> None:
    source = numpy.memmap(data_file, dtype=numpy.float64, mode="c", shape=(ROWS, COLUMNS))
    source[10] = -1.0  # in this process only: the file is unchanged
    copy, size = round_trip(source[:100])
    assert size > 100 * COLUMNS * 8  # the data itself
    numpy.testing.assert_array_equal(copy, source[:100])


def test_a_memmap_with_an_offset_and_a_non_contiguous_view(data_file: Path) -> None:
    offset = 3 * 8 * COLUMNS  # from row 3 on: not a multiple of the allocation granularity
    source = numpy.memmap(data_file, dtype=numpy.float64, mode="r", offset=offset, shape=(ROWS - 3, COLUMNS))
    for view in (source[5:900], source[::-7, 1::3], source.T[2], source[10:20].T):
        copy, size = round_trip(view)
        assert size < 1000
        assert isinstance(copy, numpy.memmap)
        numpy.testing.assert_array_equal(copy, view)
        assert copy.shape == view.shape


def test_what_is_not_backed_by_a_file_pickles_as_an_array(data_file: Path) -> None:
    source = numpy.memmap(data_file, dtype=numpy.float64, mode="r", shape=(ROWS, COLUMNS))
    derived = source[:10] + 1  # a new array: no file behind it
    copy, _ = round_trip(derived)
    numpy.testing.assert_array_equal(copy, derived)
    assert getattr(copy, "_mmap", None) is None
    empty, _ = round_trip(source[:0])
    assert empty.shape == (0, COLUMNS)


def test_items_and_results_travel_by_reference(process_backend: Callable[..., Any], data_file: Path) -> None:
    source = numpy.memmap(data_file, dtype=numpy.float64, mode="r", shape=(ROWS, COLUMNS))
    blocks = [source[start : start + 512] for start in range(0, ROWS, 512)]
    described = process_backend(tasks_pickling.describe_array).map(blocks)
    assert [entry[0] for entry in described] == ["memmap"] * len(blocks)
    assert {Path(entry[1]) for entry in described} == {data_file.resolve()}
    assert [entry[2] for entry in described] == [float(block.sum()) for block in blocks]
    rows = process_backend(tasks_pickling.open_rows).map([(str(data_file), 10, 20), (str(data_file), 100, 101)])
    assert all(isinstance(result, numpy.memmap) for result in rows)
    numpy.testing.assert_array_equal(rows[0], source[10:20])
    numpy.testing.assert_array_equal(rows[1], source[100:101])


def test_a_worker_writes_through_an_r_plus_map(process_backend: Callable[..., Any], data_file: Path) -> None:
    source = numpy.memmap(data_file, dtype=numpy.float64, mode="r+", shape=(ROWS, COLUMNS))
    process_backend(tasks_pickling.fill_with_seven).map([source[100:200], source[300:301, ::2]])
    reread = numpy.fromfile(data_file, dtype=numpy.float64).reshape(ROWS, COLUMNS)
    assert (reread[100:200] == 7).all()
    assert (reread[300, ::2] == 7).all()
    assert (reread[300, 1::2] != 7).all()
    assert (reread[99] != 7).all()


def test_the_chunk_of_a_large_slice_is_tiny(data_file: Path) -> None:
    from parmap.backends._protocol import ChunkCall, encode_call

    source = numpy.memmap(data_file, dtype=numpy.float64, mode="r", shape=(ROWS, COLUMNS))
    call = ChunkCall(1, b"k" * 16, [0, 1], [source[:2048], source[2048:]], None, None, None, False, False)
    assert len(encode_call(call, None)) < 2000
