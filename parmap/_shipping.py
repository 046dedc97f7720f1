"""Which of the caller's modules travel by value to a cluster's workers, and how they travel.

A Dask cluster started elsewhere has the packages installed on its machines, not the
user's own files: a function from `tasks.py` next to the script pickles as "`tasks.f`"
and a worker fails with `ModuleNotFoundError: No module named 'tasks'`. So, on the Dask
backend:

* **Which modules** ([modules_to_ship][]): every imported module whose file lies under the
  script's directory or the current directory, and those named by `ship_modules=` (with
  their submodules). Never an installed one: a file under `site-packages`/`dist-packages`
  or the interpreter's own directories ([installed][]), nor parmap (the workers run it).
* **How** ([parmap._transport.shipping][]): a function or class of such a
  module travels as its module's name, its name in the module, the digest of the module's
  file, and its pickle by value (cloudpickle's `register_pickle_by_value`). A worker whose
  own copy of the module has the same digest imports it and uses the real object
  ([load][]): classes stay themselves, an initializer's globals are the task's. A worker
  without the module, or with another version of it, uses the copy by value. So a
  script's modules work on any cluster, and a cluster that has them, identical, behaves as
  if nothing were shipped.

By value, cloudpickle's rules apply: the function carries the module globals it names,
as they are in the caller when it is pickled, and each function pickled apart gets its own
copy of them, so a global one task (or the initializer) sets is not seen by a function
pickled separately. Keep per-worker state in `parmap.worker_state()` instead.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import pickle
import site
import sys
import sysconfig
import threading
import types
from collections.abc import Iterable
from typing import Any

from . import _transport

__all__ = ["attribute", "installed", "load", "module_digest", "modules_to_ship", "validate_ship_modules"]

#: Directory names that hold installed packages, wherever they are (a venv in the project).
_INSTALL_DIRS = frozenset({"site-packages", "dist-packages"})


@functools.cache
def _install_roots() -> tuple[str, ...]:
    """The interpreter's directories: its standard library, site-packages, prefixes."""
    roots: set[str] = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            roots.add(path)
    try:
        roots.update(site.getsitepackages())
    except AttributeError:  # pragma: no cover - a virtualenv's old site module
        pass
    user_site = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if isinstance(user_site, str):
        roots.add(user_site)
    return tuple(sorted({os.path.realpath(path) for path in roots}))


def _file_of(module: types.ModuleType) -> str | None:
    path = getattr(module, "__file__", None)
    return os.path.realpath(path) if isinstance(path, str) else None


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def installed(module: types.ModuleType) -> bool:
    """Whether `module` is installed (or built in), as opposed to one of the user's own files.

    Installed: no file (built in, a namespace package), a file under a `site-packages` or
    `dist-packages` directory, or under the interpreter's standard library or prefixes.
    """
    path = _file_of(module)
    if path is None:
        return True
    if _INSTALL_DIRS.intersection(path.split(os.sep)):
        return True
    prefixes = {os.path.realpath(prefix) for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    return any(_under(path, root) for root in (*_install_roots(), *prefixes))


def _never_shipped(name: str) -> bool:
    """`__main__` (cloudpickle sends it by value already) and parmap (the workers run it)."""
    return name in ("__main__", "__mp_main__", "parmap") or name.startswith("parmap.")


def _search_roots() -> tuple[str, ...]:
    """The script's directory (when a script runs) and the current directory."""
    roots = []
    script = sys.argv[0] if sys.argv else ""
    if script and os.path.isfile(script):
        roots.append(os.path.dirname(os.path.realpath(script)))
    try:
        roots.append(os.path.realpath(os.getcwd()))
    except OSError:  # the current directory was removed
        pass
    return tuple(dict.fromkeys(roots))


#: (module name, search roots) -> whether it is one of the user's own modules. A module's
#: file does not move, and the roots are part of the key, so a decision is never stale.
_decided: dict[tuple[str, tuple[str, ...]], bool] = {}


def modules_to_ship(explicit: Iterable[str] = ()) -> frozenset[str]:
    """The names of the imported modules a cluster's workers get by value (see the module docstring).

    `explicit` are the `ship_modules=` names; each covers its submodules.
    """
    roots = _search_roots()
    chosen = set(explicit)
    for name, module in list(sys.modules.items()):
        if module is None:
            continue
        key = (name, roots)
        own = _decided.get(key)
        if own is None:
            path = _file_of(module) if isinstance(module, types.ModuleType) else None
            own = (
                path is not None
                and not _never_shipped(name)
                and any(_under(path, root) for root in roots)
                and not installed(module)
            )
            _decided[key] = own
        if own or any(name.startswith(parent + ".") for parent in explicit):
            chosen.add(name)
    return frozenset(chosen)


def validate_ship_modules(value: object) -> tuple[str, ...]:
    """The module names of `ship_modules=`: a list or tuple of modules or module names.

    A name is imported if it is not yet.

    Raises:
        TypeError: not a list or tuple, or an element neither a module nor a str.
        ValueError: a name that cannot be imported; parmap itself (the workers must have it
            installed); or an installed package (install it on the workers instead).
    """
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"ship_modules must be a list or tuple of modules or module names, got {type(value).__name__}")
    names = []
    for element in value:
        if isinstance(element, types.ModuleType):
            module = element
        elif isinstance(element, str):
            try:
                module = importlib.import_module(element)
            except ImportError as error:
                raise ValueError(f"ship_modules: cannot import {element!r}: {error}") from error
        else:
            raise TypeError(f"ship_modules takes modules or module names, got {type(element).__name__}")
        name = module.__name__
        if _never_shipped(name):
            raise ValueError(f"ship_modules cannot ship {name!r}: the workers run parmap, so it is installed there")
        if installed(module):
            raise ValueError(
                f"ship_modules: {name!r} is an installed package (or built in), and installed packages are "
                "never shipped: install it on the workers"
            )
        names.append(name)
    return tuple(dict.fromkeys(names))


@functools.lru_cache(maxsize=1024)
def _digest_of_file(path: str) -> bytes | None:
    try:
        with open(path, "rb") as file:
            return _transport.digest(file.read(), 16)
    except OSError:
        return None


def module_digest(module: types.ModuleType) -> bytes | None:
    """The digest of `module`'s file (read once per process), `None` without one."""
    path = _file_of(module)
    return None if path is None else _digest_of_file(path)


_lock = threading.Lock()
#: (module name, digest) -> this process's module with that digest, or None if it has none.
_local: dict[tuple[str, bytes], types.ModuleType | None] = {}


def _local_module(name: str, digest: bytes) -> types.ModuleType | None:
    """This process's module `name` if its file has `digest` (imported if need be), else `None`."""
    key = (name, digest)
    with _lock:
        if key in _local:
            return _local[key]
    module = sys.modules.get(name)
    try:
        if module is None:
            spec = importlib.util.find_spec(name)
            origin = spec.origin if spec is not None else None
            same = origin is not None and _digest_of_file(os.path.realpath(origin)) == digest
            module = importlib.import_module(name) if same else None
        elif module_digest(module) != digest:
            module = None
    except Exception:  # not importable here, or it failed to import: the copy by value is used
        module = None
    with _lock:
        _local[key] = module
    return module


def attribute(module: types.ModuleType, qualname: str) -> Any:
    """What `module` holds under the dotted `qualname` (`None` if nothing)."""
    target: Any = module
    for part in qualname.split("."):
        target = getattr(target, part, None)
    return target


def load(module_name: str, qualname: str, digest: bytes, by_value: bytes) -> Any:
    """Unpickle a shipped function or class: this process's own if its module is the same file, else the copy."""
    module = _local_module(module_name, digest)
    own = attribute(module, qualname) if module is not None else None
    return own if own is not None else pickle.loads(by_value)
