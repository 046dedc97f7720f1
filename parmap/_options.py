"""The one schema of parmap's options: each option's name, where it may be given, its values,
default and meaning.

Everything that lists options derives from [OPTIONS][parmap._options.OPTIONS] or is checked
against it by a test (`tests/test_options_schema.py`):

| what | how |
|---|---|
| `POOL_OPTIONS`, `CALL_OPTIONS` (validation, the errors that teach) | derived here |
| `_scope.BACKEND_ONLY`, `_scope.ENVIRONMENT_VARIABLES` | derived here |
| `MapOptions` (the job's record) | its fields are the call options, in order (test) |
| `ParallelOptions`, `MapOverrides` (the `TypedDict`s of the signatures) | their keys (test) |
| the option tables of the user guide and the API reference | `options_table()` |
| the signatures of `parallel()` and the map methods on the reference page | `signature()`, `method_reference()` |

The `TypedDict`s are written out because type checkers read them from the source; the test
keeps them equal to the schema. Pure data and pure functions: nothing here imports a
backend, and the rendering functions run only when the docs are built.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Union

#: Where an option may be given: `"pool"` options pick the shared pool (`@parallel(...)`,
#: `parmap.config(...)`, an environment variable, never a map call); `"call"` options shape
#: one job (the decorator's value is the default, a map call overrides it).
SCOPES = ("pool", "call")


class Option:
    """One option of `parallel()`, `parmap.config()` and (for `"call"` options) every map.

    A plain class with `__slots__`, not a dataclass: the schema is built at import, where a
    dataclass would cost code generation (as `_scope.Layer`).

    Attributes:
        name: the keyword.
        scope: `"pool"` or `"call"` (see [SCOPES][parmap._options.SCOPES]).
        values: the values it takes, as Markdown.
        default: its default, as Markdown, beginning with the default as Python in backticks
            (the test checks a call option's against `MapOptions`), or without backticks when
            it has no value to show (`shared`'s).
        meaning: what it does, one Markdown paragraph; links are relative to `docs/`.
        backends: the backends it applies to; a lower layer's value is dropped when a higher
            layer picks another backend (`None`: every backend).
        environment: the `PARMAP_*` variable that sets it, if any, and the values it takes
            (Markdown).
    """

    __slots__ = ("backends", "default", "environment", "meaning", "name", "scope", "values")

    def __init__(
        self,
        name: str,
        scope: str,
        values: str,
        default: str,
        meaning: str,
        *,
        backends: Union[tuple[str, ...], None] = None,
        environment: Union[tuple[str, str], None] = None,
    ) -> None:
        self.name = name
        self.scope = scope
        self.values = values
        self.default = default
        self.meaning = meaning
        self.backends = backends
        self.environment = environment

    def __repr__(self) -> str:
        return f"Option({self.name!r}, {self.scope!r})"


#: Every option, pool options first, each group in the order the docs list them.
OPTIONS: tuple[Option, ...] = (
    Option(
        "workers",
        "pool",
        "int >= 1 or `None`",
        "`None`: the CPUs this process may use ([`default_workers()`][parmap.default_workers]: "
        "its affinity, its container's CPU quota)",
        "Worker processes (or threads, or Dask tasks at once).",
        environment=("PARMAP_WORKERS", "an int >= 1"),
    ),
    Option(
        "backend",
        "pool",
        '`"process"`, `"thread"`, `"serial"` or `"dask"`',
        '`"process"`',
        "Where items run: worker processes, threads of this process, the calling thread (for "
        "debugging), or a Dask cluster; see [backends](user-guide.md#backends).",
        environment=("PARMAP_BACKEND", "`process`, `thread`, `serial`, `dask`"),
    ),
    Option(
        "start_method",
        "pool",
        '`"fork"`, `"spawn"`, `"forkserver"` or `None`',
        "`None`: multiprocessing's default",
        "How worker processes start; see [start methods](user-guide.md#start-methods). The process backend only.",
        backends=("process",),
        environment=("PARMAP_START_METHOD", "`fork`, `spawn`, `forkserver`"),
    ),
    Option(
        "initializer",
        "pool",
        "a callable or `None`",
        "`None`",
        "Called once in each worker, before its first item; see "
        "[the initializer idiom](state-and-shared.md#the-initializer-idiom).",
    ),
    Option("initargs", "pool", "a tuple", "`()`", "The initializer's arguments."),
    Option(
        "max_worker_memory",
        "pool",
        'int of bytes, a string (`"2GB"`, `"512MiB"`) or `None`',
        "`None`: no limit",
        "Resident memory a worker process may use: above it after a chunk the worker is "
        "replaced; far above it (1.5 times) mid-item it is killed and the item fails with "
        "`WorkerLostError` (or is retried). The process backend (Linux) and parmap's own Dask "
        "`LocalCluster`; see [memory limits](state-and-shared.md#per-worker-memory-limits).",
        backends=("process", "dask"),
    ),
    Option(
        "inner_threads",
        "pool",
        'int >= 1, `"auto"` or `None`',
        '`"auto"`: `cpus // workers`, at least 1',
        'Native threads (BLAS, OpenMP, numexpr, numba) per worker process. `"auto"` keeps a '
        "variable such as `OMP_NUM_THREADS` you set yourself, an int overrides it, `None` "
        "leaves the environment and the libraries alone. The process backend only (the "
        "others ignore it); see [native thread pools](performance.md#cpus-and-native-thread-pools).",
    ),
    Option(
        "address",
        "pool",
        "a scheduler address or `None`",
        "`None`: a `LocalCluster` of parmap's own",
        "The Dask scheduler to connect to; see [scaling out](scaling-out.md#which-cluster).",
        backends=("dask",),
    ),
    Option(
        "client",
        "pool",
        "a `distributed.Client` or `None`",
        "`None`",
        "A Dask client to use, yours to close; see [scaling out](scaling-out.md#which-cluster).",
        backends=("dask",),
    ),
    Option(
        "ship_modules",
        "pool",
        "modules or module names",
        "`()`",
        "Modules the Dask workers get by value, besides the caller's own (files under the "
        "script's directory and the current directory), which go automatically; see "
        "[your own modules](scaling-out.md#your-own-modules). The other backends ignore it.",
        backends=("dask",),
    ),
    Option(
        "chunksize",
        "call",
        '`"auto"` or int >= 1',
        '`"auto"`',
        'Items sent to a worker at once: `"auto"` measures the task and shrinks chunks towards '
        "the end; see [chunking](user-guide.md#chunking).",
    ),
    Option(
        "progress",
        "call",
        "bool or a dict of tqdm keyword arguments",
        "`False`",
        "`True` for a tqdm bar; a dict's `tqdm_class` picks the bar's class; see [progress bars](progress.md).",
        environment=(
            "PARMAP_PROGRESS",
            "`0` (every bar off, per-call `progress=True` included) or `1` (bars on); also "
            "`false`/`true`, `no`/`yes`, `off`/`on`",
        ),
    ),
    Option(
        "timeout",
        "call",
        "seconds (a number > 0) or `None`",
        "`None`: no limit",
        "Seconds one item may run; its worker is killed and the item fails with "
        "`TaskTimeoutError` (or is retried); see [timeouts](user-guide.md#timeouts).",
    ),
    Option(
        "retries",
        "call",
        "int >= 0",
        "`0`",
        "Times a failed item is run again before its error counts.",
    ),
    Option(
        "retry_on",
        "call",
        "an exception class or a tuple of them",
        "`(Exception,)`",
        "The task exceptions `retries` applies to (lost workers and timeouts are always retried).",
    ),
    Option(
        "return_exceptions",
        "call",
        "bool",
        "`False`",
        "`True`: a failing item's slot holds its exception, and nothing is raised.",
    ),
    Option(
        "max_tasks_per_worker",
        "call",
        "int >= 1 or `None`",
        "`None`: never",
        "Replace a worker after it has run this many items.",
    ),
    Option(
        "max_in_flight",
        "call",
        "int >= 1 or `None`",
        "`None`: 4 chunks per worker",
        "Chunks sent or waiting to be yielded at once: bounds memory when streaming.",
    ),
    Option(
        "seed",
        "call",
        "int or `None`",
        "`None`",
        "Each item's random numbers depend on `(seed, item index)` only; see [randomness](randomness.md).",
    ),
    Option(
        "checkpoint",
        "call",
        "a file path or `None`",
        "`None`",
        "Finished results are saved there, and a rerun skips them; see [resumable maps](checkpoints.md).",
    ),
    Option(
        "checkpoint_mode",
        "call",
        '`"resume"` or `"overwrite"`',
        '`"resume"`',
        '`"overwrite"` discards a checkpoint written by a different job instead of refusing it.',
    ),
    Option(
        "stats",
        "call",
        "bool",
        "`False`",
        "`True`: `map` returns a list with a `.stats` attribute, a "
        "[`RunStats`][parmap.RunStats]; see [run insights](insights.md).",
    ),
    Option(
        "concurrency",
        "call",
        "int >= 1",
        "`1`",
        "`async def` tasks only: items each worker awaits at once on its event loop (> 1 on a "
        "plain function is a `ValueError`); see [asyncio](asyncio.md#async-def-tasks).",
    ),
    Option(
        "shared",
        "call",
        "any picklable object",
        "not given",
        "One object the tasks read with [`parmap.shared()`][parmap.shared], sent to each worker "
        "once (arrays through shared memory); see "
        "[shared data](state-and-shared.md#shared-data-shared).",
    ),
)

POOL_OPTIONS: tuple[str, ...] = tuple(option.name for option in OPTIONS if option.scope == "pool")
CALL_OPTIONS: tuple[str, ...] = tuple(option.name for option in OPTIONS if option.scope == "call")

#: The map methods of a decorated function, in the order the reference lists them.
MAP_METHODS = (
    "map",
    "imap",
    "imap_unordered",
    "starmap",
    "map_async",
    "starmap_async",
    "aimap",
    "aimap_unordered",
)


def by_name(name: str) -> Option:
    """The option called `name`.

    Raises:
        KeyError: no option has that name.
    """
    for option in OPTIONS:
        if option.name == name:
            return option
    raise KeyError(name)


def _cell(text: str) -> str:
    """`text` fit for one cell of a Markdown table."""
    return text.replace("|", "\\|").replace("\n", " ")


def options_table(scope: str) -> str:
    """The Markdown table of the options of `scope` (`"pool"` or `"call"`), one row each.

    Each row's option carries an anchor, `option-NAME`, that other pages link to.

    Raises:
        ValueError: `scope` is not one of [SCOPES][parmap._options.SCOPES].
    """
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    rows = ["| option | values | default | meaning |", "|---|---|---|---|"]
    for option in OPTIONS:
        if option.scope == scope:
            extra = f" Also `{option.environment[0]}`." if option.environment else ""
            rows.append(
                f'| <span id="option-{option.name}"></span>`{option.name}` | {_cell(option.values)} '
                f"| {_cell(option.default)} | {_cell(option.meaning + extra)} |"
            )
    return "\n".join(rows) + "\n"


def environment_table() -> str:
    """The Markdown table of the `PARMAP_*` variables: each one's option and values."""
    rows = ["| variable | sets | values |", "|---|---|---|"]
    for option in OPTIONS:
        if option.environment:
            variable, values = option.environment
            rows.append(f"| `{variable}` | `{option.name}` | {_cell(values)} |")
    return "\n".join(rows) + "\n"


def default_code(option: Option) -> str:
    """`option`'s default as Python (the schema's first backticked text), `...` for none."""
    return option.default.split("`")[1] if option.default.startswith("`") else "..."


def signature(function: Callable[..., Any], name: str, *, options: tuple[str, ...]) -> str:
    """`function`'s signature as Python, one parameter per line, its `**` parameter replaced
    by the keyword options named in `options` with their defaults (fenced, for a page).

    `name` is how the reader calls it (`parallel`, `task.map`). The first parameter of a
    method (`self`) is left out; annotations are left out too (the tables give the types).
    """
    parameters = list(inspect.signature(function).parameters.values())
    if parameters and parameters[0].name == "self":
        parameters = parameters[1:]
    lines: list[str] = []
    positional_only = False
    star = False
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
            positional_only = True
        elif positional_only:
            lines.append("/")
            positional_only = False
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            if not star:
                lines.append("*")
            lines.extend(f"{option}={default_code(by_name(option))}" for option in options)
            continue
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            star = True
            lines.append(f"*{parameter.name}")
            continue
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and not star:
            star = True
            lines.append("*")
        default = "" if parameter.default is inspect.Parameter.empty else f"={parameter.default!r}"
        lines.append(f"{parameter.name}{default}")
    if positional_only:
        lines.append("/")
    body = "".join(f"    {line},\n" for line in lines)
    return f"```python\n{name}(\n{body})\n```\n"


def method_reference(method: str) -> str:
    """What the reference shows under the map method `method`, after its docstring: its
    signature with every keyword option spelled out, and the list of those options.

    Raises:
        ValueError: `method` is not one of [MAP_METHODS][parmap._options.MAP_METHODS].
    """
    if method not in MAP_METHODS:
        raise ValueError(f"method must be one of {MAP_METHODS}, got {method!r}")
    from ._decorator import ParallelFunction

    function = getattr(ParallelFunction, method)
    own = [
        f"`{parameter.name}`"
        for parameter in inspect.signature(function).parameters.values()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    every = ", ".join(f"[`{name}`](#option-{name})" for name in CALL_OPTIONS)
    return (
        f"{signature(function, f'task.{method}', options=CALL_OPTIONS)}\n"
        f"**Keyword options:** {', '.join(own) + ', and ' if own else ''}every "
        f"[per-call option](#per-call-options): {every}.\n"
    )
