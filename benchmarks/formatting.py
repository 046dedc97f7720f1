"""How the main report writes its numbers: seconds, ratios and a bar's measured value."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .bars import BarResult


def format_seconds(seconds: float | None) -> str:
    """``"66.9 ms"`` below a second, ``"1.415 s"`` above, ``"-"`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 1.0:
        return f"{seconds * 1000:.3g} ms"
    return f"{seconds:.3f} s"


def format_ratio(value: float | None) -> str:
    """``"0.87x"``, or ``"-"`` when unknown."""
    return "-" if value is None else f"{value:.2f}x"


def format_measured(bar: BarResult) -> str:
    """A bar's measured value in its unit: ``"0.866x"``, ``"3.44 MB"``, or ``"-"``."""
    if bar.measured is None:
        return "-"
    if bar.unit == "x":
        return f"{bar.measured:.3f}x"
    return f"{bar.measured:.3g}{bar.unit}"
