"""Peak resident memory of this process over a stretch of code (the stream bar, `memory_map`)."""

from __future__ import annotations

import os
import resource


class PeakMemory:
    """Peak resident memory of this process since :meth:`reset`, above the RSS at that moment.

    On Linux the kernel's high-water mark (``VmHWM``) is reset by writing ``5`` to
    ``/proc/self/clear_refs``, so the peak is exact and costs nothing while measuring.
    Elsewhere ``ru_maxrss`` (the peak since the process started) gives an upper bound.
    """

    def __init__(self) -> None:
        self.method = "VmHWM"
        self._baseline = 0

    def reset(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")
        except OSError:
            self.method = "ru_maxrss (upper bound)"
        self._baseline = _current_rss()

    def growth_bytes(self) -> int:
        """The peak resident memory since :meth:`reset`, above the RSS at that moment."""
        return max(0, _peak_rss(self.method == "VmHWM") - self._baseline)

    def held_bytes(self) -> int:
        """The resident memory now, above the RSS at :meth:`reset` (what is still held)."""
        return max(0, _current_rss() - self._baseline)


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _current_rss() -> int:
    kib = _status_kib("VmRSS")
    if kib is not None:
        return kib * 1024
    return _max_rss()


def _peak_rss(use_hwm: bool) -> int:
    kib = _status_kib("VmHWM") if use_hwm else None
    return kib * 1024 if kib is not None else _max_rss()


def _max_rss() -> int:
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    scale = 1 if os.uname().sysname == "Darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
