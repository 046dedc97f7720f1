"""Count Ctrl-C while jobs are open, so a job closed after one can stop its running items.

A Ctrl-C that lands in the body of a caller's `for r in f.imap(...)` loop raises
`KeyboardInterrupt` in the caller's frame, not in the job's: the job only sees its
generator closed (`GeneratorExit`), exactly as after a `break`. To tell the two apart,
[counting_interrupts][] installs a SIGINT handler that counts interrupts and then behaves as
Python's default one (raises `KeyboardInterrupt`). It is installed only in the main thread
(the only one that may set handlers, and the only one SIGINT reaches) and only over Python's
default handler (a program's own handler is left alone); nested jobs share it (refcounted),
and the last one out restores the default.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

_lock = threading.Lock()
_depth = 0  # open `counting_interrupts` blocks that rely on the handler
_count = 0  # interrupts seen since the process started (only ever grows)


def _count_and_raise(signum: int, frame: FrameType | None) -> None:
    global _count
    _count += 1
    signal.default_int_handler(signum, frame)


def _install() -> bool:
    global _depth
    if threading.current_thread() is not threading.main_thread():
        return False
    with _lock:
        current = signal.getsignal(signal.SIGINT)
        if current is signal.default_int_handler:
            signal.signal(signal.SIGINT, _count_and_raise)
        elif current is not _count_and_raise:
            return False  # the program's own handler (or SIGINT ignored): not ours to replace
        _depth += 1
        return True


def _uninstall() -> None:
    global _depth
    with _lock:
        _depth -= 1
        if _depth or threading.current_thread() is not threading.main_thread():
            return  # still in use, or closed from another thread: the handler stays, harmless
        if signal.getsignal(signal.SIGINT) is _count_and_raise:
            signal.signal(signal.SIGINT, signal.default_int_handler)


@contextlib.contextmanager
def counting_interrupts() -> Iterator[Callable[[], bool]]:
    """Count Ctrl-C for the duration of the block; yield "has one arrived since it began?".

    Outside the main thread, or over a handler the program installed, nothing is installed
    and the answer is always False (the program's handler decides what Ctrl-C does).
    """
    installed = _install()
    start = _count
    try:
        yield lambda: _count != start
    finally:
        if installed:
            _uninstall()
