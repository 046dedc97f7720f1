"""The wire protocol (issue 10, A4): the docstring's table matches the message types, and the
chunk codec replaces, per item, what cannot travel."""

from __future__ import annotations

import os
import re
import socket
from typing import Any

import pytest

from parmap import RemoteTraceback, SerializationError
from parmap.backends import _protocol
from parmap.backends._protocol import ChunkCall, ChunkResult, Timings
from parmap.backends.process import _Frames
from tests import tasks

PREFIX = f"parmap-test-{os.getpid()}-protocol-"


def _table() -> dict[str, tuple[str, str, tuple[str, ...]]]:
    """The protocol table of the module docstring: tag -> (message, direction, fields)."""
    doc = _protocol.__doc__
    assert doc is not None
    rows: dict[str, tuple[str, str, tuple[str, ...]]] = {}
    for line in doc.splitlines():
        match = re.fullmatch(r"\| `(.)` \| (\w+) \| ([\w ]+) \|\s*([\w, ]*?)\s*\|", line.strip())
        if match:
            tag, name, direction, fields = match.groups()
            rows[tag] = (name, direction.strip(), tuple(f.strip() for f in fields.split(",") if f.strip()))
    return rows


def test_protocol_table_matches_the_message_types() -> None:
    table = _table()
    assert len(table) == len(_protocol.MESSAGES) >= 10
    for tag, message in _protocol.MESSAGES.items():
        name, direction, fields = table[tag.decode()]
        assert name == message.__name__, tag
        assert fields == message._fields, name  # type: ignore[attr-defined]
        assert direction in ("to worker", "to manager")


def test_every_tag_the_backend_sends_or_reads_is_in_the_table() -> None:
    sources = ""
    for module in ("process", "_worker"):
        with open(os.path.join(os.path.dirname(_protocol.__file__), f"{module}.py")) as handle:
            sources += handle.read()
    used = set(re.findall(r'b"([A-Za-z])"', sources))
    assert used <= {tag.decode() for tag in _protocol.MESSAGES}


def _call(items: list[Any], careful: bool = False) -> ChunkCall:
    return ChunkCall(41, b"k" * 16, list(range(10, 10 + len(items))), items, None, None, None, False, careful)


def test_a_chunk_call_round_trips() -> None:
    call = _call([1, "two", (3,)])
    assert _protocol.decode_call(_protocol.encode_call(call, PREFIX)) == call


def _result(values: list[Any], errors: dict[int, Any] | None = None) -> ChunkResult:
    return ChunkResult(41, 1234, len(values), False, Timings(0.5, 0.1, None), values, errors or {})


@pytest.mark.parametrize("careful", [False, True])
def test_results_carry_chunk_id_pid_and_remote_tracebacks(careful: bool) -> None:
    try:
        raise ValueError("bad")
    except ValueError as error:
        entry = (error, _protocol.format_traceback(error))
    message = _protocol.encode_result(_result([1, None, 3], {1: entry}), [10, 11, 12], careful, PREFIX)
    assert _protocol.result_header(message) == (41, 1234)
    decoded = _protocol.decode_result(message, [10, 11, 12], careful)
    assert decoded.values[0] == 1
    assert decoded.values[2] == 3
    assert type(decoded.errors[1]) is ValueError
    assert isinstance(decoded.errors[1].__cause__, RemoteTraceback)
    assert decoded.timings == Timings(0.5, 0.1, None)


@pytest.mark.parametrize("careful", [False, True])
def test_a_value_that_cannot_be_pickled_fails_only_its_item(careful: bool) -> None:
    message = _protocol.encode_result(_result([1, tasks.Unpicklable(), 3]), [10, 11, 12], careful, PREFIX)
    decoded = _protocol.decode_result(message, [10, 11, 12], careful)
    assert decoded.values[0] == 1
    assert decoded.values[2] == 3
    assert isinstance(decoded.errors[1], SerializationError)
    assert "item 11" in str(decoded.errors[1])


def test_careful_results_decode_each_item_on_its_own() -> None:
    """A result whose unpickling raises SystemExit here fails its own item only (defect 7)."""
    values = [1, tasks.ExitWhenUnpickledInCaller(), 3]
    message = _protocol.encode_result(_result(values), [10, 11, 12], True, PREFIX)
    decoded = _protocol.decode_result(message, [10, 11, 12], True)
    assert decoded.values[0] == 1
    assert decoded.values[2] == 3
    assert isinstance(decoded.errors[1], SerializationError)
    assert "item 11" in str(decoded.errors[1])
    assert "SystemExit" in str(decoded.errors[1])
    whole = _protocol.encode_result(_result(values), [10, 11, 12], False, PREFIX)
    with pytest.raises(SystemExit):
        _protocol.decode_result(whole, [10, 11, 12], False)  # the caller sends it again, careful


def test_an_exception_whose_str_raises_is_described_not_fatal() -> None:
    error = tasks.BadStrUnpicklableError("x")
    message = _protocol.encode_result(
        _result([None], {0: (error, _protocol.format_traceback(error))}), [5], False, PREFIX
    )
    decoded = _protocol.decode_result(message, [5], False)
    assert isinstance(decoded.errors[0], SerializationError)
    assert "BadStrUnpicklableError" in str(decoded.errors[0])


def test_frames_are_reassembled_from_partial_reads() -> None:
    left, right = socket.socketpair()
    try:
        right.setblocking(False)
        frames = _Frames()
        bodies = [b"D" + bytes(range(200)) * 5000, b"P" + b"x" * 10, b"R1234"]
        data = b"".join(_protocol.frame(body) + body for body in bodies)
        received: list[bytes] = []
        for start in range(0, len(data), 70_001):  # header and bodies split across writes
            left.sendall(data[start : start + 70_001])
            while len(received) < len(bodies):
                got = frames.read(right.fileno())
                received.extend(bytes(message) for message in got)
                if not got:
                    break
        while len(received) < len(bodies):
            received.extend(bytes(message) for message in frames.read(right.fileno()))
        assert received == bodies
        assert list(_protocol.iter_frames(data)) == bodies
    finally:
        left.close()
        right.close()


def test_a_frame_no_worker_writes_is_refused() -> None:
    left, right = socket.socketpair()
    try:
        right.setblocking(False)
        left.sendall(b"\xff" * 8 + b"garbage")
        with pytest.raises(ValueError, match="frame"):
            _Frames().read(right.fileno())
    finally:
        left.close()
        right.close()
