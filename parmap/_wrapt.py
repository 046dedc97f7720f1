"""wrapt's two proxy classes, without running wrapt's package `__init__` at `import parmap`.

parmap subclasses `FunctionWrapper` and `BoundFunctionWrapper` and uses nothing else of
wrapt. They live in `wrapt.__wrapt__` (wrapt 1.16+ and 2.x), which imports only
`wrapt.wrappers`, `wrapt.exceptions` and the C extension. wrapt 2's package `__init__`
imports every other submodule as well, `asyncio` (through `wrapt.synchronization`) and
`importlib.metadata` (through `wrapt.importer`) among them: about 45 ms of a cold start on
a 2-core machine (Python 3.12, wrapt 2.0; `python -X importtime -c "import wrapt"`), more
than the whole cold start of `multiprocessing.Pool`. wrapt 1's costs about 3 ms.

So, when nothing has imported `wrapt` yet, [proxy_classes][] puts the package's module
object into `sys.modules` *unexecuted* (made from its spec, as the import system makes it),
with a module `__getattr__` (PEP 562), and imports `wrapt.__wrapt__` under it. The first
read of any other attribute of `wrapt` (`import wrapt; wrapt.decorator`, `from wrapt
import ObjectProxy`, `wrapt.__version__`) runs the package's own `__init__` in that module
first, once, under a lock; its `from .__wrapt__ import ...` finds the submodule already
imported, so `wrapt.FunctionWrapper` is the very class parmap subclassed. A program that
uses wrapt itself therefore sees the package as it always is, only imported a little later.
If the package is already imported (or being imported), or anything in this goes wrong,
wrapt is imported the ordinary way.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from typing import Any

#: Held while the package is set up here, and while its `__init__` runs on first use.
_lock = threading.RLock()


def proxy_classes() -> tuple[Any, Any]:
    """`(wrapt.FunctionWrapper, wrapt.BoundFunctionWrapper)`, importing as little as possible.

    Raises:
        ImportError: wrapt is not installed.
    """
    with _lock:
        if "wrapt" not in sys.modules:
            try:
                core = _import_core_only()
            except Exception:  # an unusual install (a zip, a custom finder): the ordinary way
                _forget_package()
            else:
                return core.FunctionWrapper, core.BoundFunctionWrapper
    wrapt = importlib.import_module("wrapt")  # untyped under wrapt 1: looked up as `Any`
    return wrapt.FunctionWrapper, wrapt.BoundFunctionWrapper


def _import_core_only() -> Any:
    """Import `wrapt.__wrapt__` under wrapt's package module, left unexecuted until used.

    Raises:
        ImportError: wrapt is not installed, or its layout is not the one described above.
    """
    spec = importlib.util.find_spec("wrapt")
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        raise ImportError("wrapt is not an ordinary package here")
    package = importlib.util.module_from_spec(spec)
    package.__getattr__ = _completer(package, spec)  # type: ignore[method-assign]
    sys.modules["wrapt"] = package
    return importlib.import_module("wrapt.__wrapt__")


def _completer(package: Any, spec: Any) -> Any:
    """The package's `__getattr__`: run wrapt's `__init__` in it, then look `name` up again."""

    def __getattr__(name: str) -> Any:
        with _lock:
            if package.__dict__.get("__getattr__") is __getattr__:
                del package.__getattr__  # before running `__init__`, which may define its own
                try:
                    spec.loader.exec_module(package)
                except BaseException:
                    # As a failed import leaves it: gone from sys.modules, so the next
                    # `import wrapt` tries again (and raises the error itself).
                    if sys.modules.get("wrapt") is package:
                        del sys.modules["wrapt"]
                    raise
        try:
            return package.__dict__[name]
        except KeyError:
            raise AttributeError(f"module 'wrapt' has no attribute {name!r}") from None

    return __getattr__


def _forget_package() -> None:
    """Undo a failed [_import_core_only][]: wrapt is then imported from scratch."""
    for name in [name for name in sys.modules if name == "wrapt" or name.startswith("wrapt.")]:
        del sys.modules[name]


__all__ = ["proxy_classes"]
