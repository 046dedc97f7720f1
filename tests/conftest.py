"""Shared fixtures: every backend and start method, and a leak check after every test."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import pytest
import tqdm.auto
import tqdm.std

import parmap

if TYPE_CHECKING:
    from parmap.backends.process import ProcessBackend

#: The values ``parallel`` accepts for ``backend`` and ``start_method``.
BackendName = Literal["process", "thread", "serial", "dask"]
StartMethod = Literal["fork", "spawn", "forkserver"]

BACKENDS = [
    pytest.param(("serial", None), id="serial"),
    pytest.param(("thread", None), id="thread"),
    pytest.param(("process", "fork"), id="fork"),
    pytest.param(("process", "spawn"), id="spawn"),
    pytest.param(("process", "forkserver"), id="forkserver"),
]
PROCESS_BACKENDS = [p for p in BACKENDS if p.values[0][0] == "process"]  # type: ignore[index]

#: Prepended to a script a test runs in a subprocess: Ctrl-C raises KeyboardInterrupt there, as
#: in a terminal, even when the test run itself was started in the background (a shell's
#: background job inherits SIGINT ignored, and Python then installs no handler).
CTRL_C_AS_IN_A_TERMINAL = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"


@contextlib.contextmanager
def mounted(arguments: list[str], target: Path, what: str) -> Iterator[Path]:
    """`mount ARGUMENTS TARGET` for the block, unmounted after; skips the test where mounting
    is not permitted (it needs root or CAP_SYS_ADMIN)."""
    completed = subprocess.run(["mount", *arguments, str(target)], capture_output=True, check=False)
    if completed.returncode != 0:
        pytest.skip(f"cannot {what} here: {completed.stderr.decode(errors='replace').strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


def run_script(code: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run `code` (dedented) in a fresh Python that can import `tests`, Ctrl-C as in a terminal."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run(
        [sys.executable, "-c", CTRL_C_AS_IN_A_TERMINAL + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def run_script_file(directory: Path, files: dict[str, str], *arguments: str, timeout: float = 50) -> Any:
    """Write `files` (name -> dedented source) into `directory` and run the first as a real
    script there (`python script.py ARGUMENTS`, the repository and `directory` importable);
    return what its last line of output holds, as JSON. Fails with the script's stderr."""
    for name, source in files.items():
        (directory / name).write_text(textwrap.dedent(source))
    script = directory / next(iter(files))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), str(directory)])}
    completed = subprocess.run(
        [sys.executable, str(script), *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=directory,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


#: Helper processes of multiprocessing itself, which outlive pools by design.
_INFRASTRUCTURE = ("resource_tracker", "forkserver")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            found.extend(int(child) for child in text.split())
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _is_fork_server(pid: int) -> bool:
    """parmap's fork server (`parmap.backends._zygote`): it lives while a fork pool does."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "parmap-forksrv"
    except (FileNotFoundError, ProcessLookupError):
        return False


def worker_processes() -> list[int]:
    """Every live descendant of this process, except multiprocessing's helpers and parmap's fork server."""
    result = []
    pending = _children(os.getpid())
    while pending:
        pid = pending.pop()
        pending.extend(_children(pid))
        if not any(name in _cmdline(pid) for name in _INFRASTRUCTURE) and not _is_fork_server(pid):
            result.append(pid)
    return result


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait for ``condition`` (state, not time); fail with a clear message after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {condition}")
        time.sleep(0.01)


def shutdown_promptly() -> None:
    """``parmap.shutdown()``, asserting it takes under 10 s."""
    started = time.monotonic()
    parmap.shutdown()
    assert time.monotonic() - started < 10, "parmap.shutdown() took 10 s or more"


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    """After each test: shutdown is prompt and leaves no worker process behind."""
    yield
    shutdown_promptly()
    wait_until(lambda: not [pid for pid in worker_processes() if not _is_zombie(pid)], timeout=10)
    assert not [pid for pid in worker_processes() if _is_zombie(pid)], "zombie worker processes left"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``backend(fn, **options)``: ``parallel(fn, ...)`` on one backend / start method."""
    name, start_method = request.param
    return functools.partial(_decorate, name, start_method)


@pytest.fixture(params=PROCESS_BACKENDS)
def process_backend(request: pytest.FixtureRequest) -> Callable[..., Any]:
    name, start_method = request.param
    return functools.partial(_decorate, name, start_method)


def _decorate(name: BackendName, start_method: StartMethod | None, fn: Callable[..., Any], **options: Any) -> Any:
    options.setdefault("workers", 2)
    if start_method is not None:
        options.setdefault("start_method", start_method)
    return parmap.parallel(fn, backend=name, **options)


def process_pool_of(task: parmap.ParallelFunction[Any, Any]) -> ProcessBackend:
    """The process pool the registry holds for ``task`` (which must use the process backend)."""
    # Imported here: loading conftest must not load the process backend, which parmap imports lazily.
    from parmap.backends.process import ProcessBackend

    pool = parmap._registry._pools[task._self_config]
    assert isinstance(pool, ProcessBackend), pool
    return pool


class RecordingBar(tqdm.std.tqdm):  # type: ignore[misc]
    """A tqdm bar that writes to a buffer and remembers every update it received."""

    instances: ClassVar[list[RecordingBar]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("file", io.StringIO())
        super().__init__(*args, **kwargs)
        self.received: list[float] = []
        RecordingBar.instances.append(self)

    def update(self, n: float = 1) -> bool | None:
        self.received.append(n)
        return super().update(n)  # type: ignore[no-any-return]


@pytest.fixture
def bars(monkeypatch: pytest.MonkeyPatch) -> list[RecordingBar]:
    """The progress bars parmap creates during the test (as ``RecordingBar``), newest last."""
    monkeypatch.setattr(tqdm.auto, "tqdm", RecordingBar)
    instances: list[RecordingBar] = []
    monkeypatch.setattr(RecordingBar, "instances", instances)
    return instances
