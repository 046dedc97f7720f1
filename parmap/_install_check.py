"""Whether the unrelated PyPI project `parmap` is installed over (or under) this one.

Two distributions provide the import name `parmap`: this project, `parmap-decorator`, and
an older, unrelated project published on PyPI as `parmap` (`parmap.map(f, items, arg)`).
Installed into the same directory, their files mix: the last one installed owns
`parmap/__init__.py`, and uninstalling either deletes files of the other. When ours is the
one imported, the other's module files sit beside ours; `import parmap` looks for them and
warns with [ParmapInstallWarning][parmap.ParmapInstallWarning], saying how to repair it.

The check must keep `import parmap` fast, so it never imports `importlib.metadata`
(measured: 10-80 ms to import, against 2-20 µs here): it tests whether the files the other
project installs exist where ours live, two `stat` calls, and reads the directory listing
(to name the other project's version) only once one is found.
"""

from __future__ import annotations

import os
import warnings

from .errors import ParmapInstallWarning

#: Where the other project's code lives, relative to the directory holding our `parmap`
#: package: its module inside the package (its recent releases, 1.7 among them, install
#: `parmap/__init__.py` and `parmap/parmap.py`), or a single module beside it (its older
#: releases, 1.2 among them, install `parmap.py` alone).
OTHER_PROJECT_FILES = (os.path.join("parmap", "parmap.py"), "parmap.py")

#: What fixes it: both removed (each uninstall deletes files of the other), ours reinstalled.
REPAIR_COMMAND = "pip uninstall parmap parmap-decorator && pip install parmap-decorator"


def clashing_files(site_dir: str) -> list[str]:
    """The other project's files in `site_dir`, the directory that holds our `parmap` package."""
    return [path for path in (os.path.join(site_dir, name) for name in OTHER_PROJECT_FILES) if os.path.exists(path)]


def other_distribution(site_dir: str) -> str | None:
    """The name of the other project's metadata directory in `site_dir`
    (`parmap-1.7.0.dist-info`, or an `.egg-info`), if there is one."""
    try:
        names = os.listdir(site_dir)
    except OSError:
        return None
    found = sorted(name for name in names if name.startswith("parmap-") and name.endswith((".dist-info", ".egg-info")))
    return found[0] if found else None


def clash_message(files: list[str], distribution: str | None) -> str:
    """What the warning says: what was found, why it matters, and the command that fixes it."""
    installed = f" ({distribution})" if distribution else ""
    return (
        f"the unrelated PyPI project 'parmap'{installed} is installed in the same place as "
        "'parmap-decorator' (this library): both use the import name 'parmap', so their files "
        f"overwrite each other (found {', '.join(files)}), and `import parmap` may load either. "
        f"Remove both, then reinstall this one: `{REPAIR_COMMAND}`"
    )


def warn_if_clashing() -> None:
    """Warn with [ParmapInstallWarning][parmap.ParmapInstallWarning] if the other project's
    files lie beside this package (run once, by `import parmap`)."""
    site_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    files = clashing_files(site_dir)
    if not files:
        return
    distribution = other_distribution(site_dir)
    # Only an install puts a module inside our package; a `parmap.py` beside it may be the
    # user's own script beside a checkout, so it counts with the other project's metadata.
    inside = files[0].endswith(OTHER_PROJECT_FILES[0])
    if (inside or distribution is not None) and not _in_spawned_worker():
        warnings.warn(clash_message(files, distribution), ParmapInstallWarning, stacklevel=3)


def _in_spawned_worker() -> bool:
    """A worker importing parmap as it starts (spawn, forkserver): its caller has warned."""
    import multiprocessing  # only once a clash is found

    from .backends._worker import WORKER_NAME_PREFIX

    return multiprocessing.current_process().name.startswith(WORKER_NAME_PREFIX)
