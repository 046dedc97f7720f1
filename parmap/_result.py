"""``AsyncResult``: the handle ``map_async`` returns, with ``multiprocessing``'s semantics."""

from __future__ import annotations

import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .errors import ResultTimeoutError

R = TypeVar("R")

#: Callbacks run in the job's thread; an exception there is printed, never lost silently,
#: and never keeps ``get()`` waiting.
_CALLBACK_FAILED = "parmap: exception in a map_async {} (ignored):\n"


class AsyncResult(Generic[R]):
    """The future result of ``map_async``.

    ``callback`` receives the whole ordered result list, ``error_callback`` the exception;
    both run in the job's background thread before ``get()`` returns, as with
    ``multiprocessing.pool.AsyncResult``.
    """

    def __init__(
        self,
        run: Callable[[], R],
        callback: Callable[[R], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
    ) -> None:
        for name, function in (("callback", callback), ("error_callback", error_callback)):
            if function is not None and not callable(function):
                raise TypeError(f"{name} must be callable or None, got {type(function).__name__}")
        self._run = run
        self._callback = callback
        self._error_callback = error_callback
        self._done = threading.Event()
        self._value: R | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="parmap-map-async", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            try:
                self._value = self._run()
            except BaseException as error:
                self._error = error
                if self._error_callback is not None:
                    self._call(self._error_callback, error, "error_callback")
            else:
                if self._callback is not None:
                    self._call(self._callback, self._value, "callback")
        finally:
            self._done.set()

    @staticmethod
    def _call(function: Callable[[Any], object], argument: object, name: str) -> None:
        try:
            function(argument)
        except BaseException:
            sys.stderr.write(_CALLBACK_FAILED.format(name) + traceback.format_exc())

    def ready(self) -> bool:
        """True once the job has finished, successfully or not."""
        return self._done.is_set()

    def successful(self) -> bool:
        """True if the job finished without error.

        Raises:
            ValueError: the job has not finished yet.
        """
        if not self.ready():
            raise ValueError("the result is not ready yet")
        return self._error is None

    def wait(self, timeout: float | None = None) -> None:
        """Block until the job finishes, or ``timeout`` seconds pass."""
        self._done.wait(timeout)

    def get(self, timeout: float | None = None) -> R:
        """The ordered result list; re-raises a task's exception.

        Raises:
            ResultTimeoutError: the job did not finish within ``timeout`` seconds (it goes
                on). It is also the builtin ``TimeoutError`` and ``multiprocessing.TimeoutError``.
        """
        if not self._done.wait(timeout):
            raise ResultTimeoutError(f"the result was not ready within {timeout} s")
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]
