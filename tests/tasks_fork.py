"""Tasks for tests/test_fork_warnings.py (importable, so workers load them by reference)."""

from __future__ import annotations

import os


def close_every_descriptor_on_one(x: int) -> int:
    """Item 1 closes every descriptor of its worker (its socket and sentinel among them)."""
    if x == 1:
        os.closerange(3, 65536)
    return x
