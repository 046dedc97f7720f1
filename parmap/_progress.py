"""Progress bars: a ``tqdm.auto`` adapter and a no-op stand-in.

tqdm is imported only when a bar is asked for, so workers and bar-less runs never load it.
The caller closes the bar in a ``finally`` block (see ``_decorator``), on success,
failure and Ctrl-C alike.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ._config import ProgressOption


class NullProgress:
    """Stands in when no bar is wanted."""

    def update(self, n: float) -> None:
        pass

    def close(self) -> None:
        pass


class TqdmProgress:
    """A ``tqdm.auto`` bar counting items.

    A child forked from the process that made the bar (inside an ``imap`` loop, say)
    leaves it alone: updating or closing its copy would draw over the parent's bar.
    """

    def __init__(self, total: int | None, options: Mapping[str, Any], description: str) -> None:
        from tqdm.auto import tqdm

        settings: dict[str, Any] = {"total": total, "unit": "item", "desc": description}
        settings.update(options)
        self._bar = tqdm(**settings)
        self._owner_pid = os.getpid()

    def update(self, n: float) -> None:
        if os.getpid() == self._owner_pid:
            self._bar.update(n)

    def close(self) -> None:
        if os.getpid() == self._owner_pid:
            self._bar.close()


def make_progress(option: ProgressOption, total: int | None, description: str) -> NullProgress | TqdmProgress:
    """A bar for ``option`` (False, True, or a dict of tqdm keyword arguments)."""
    if option is False:
        return NullProgress()
    return TqdmProgress(total, option if isinstance(option, Mapping) else {}, description)
