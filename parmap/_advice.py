"""The text of errors that teach: what went wrong, and the change that fixes it.

Pure functions from what the caller gave (and the option names that exist) to one
message; the raising stays with the validation in [parmap._config][] and
[parmap._decorator][]. They run only on an error, so what they import (`difflib`,
`inspect`, `reprlib`) is imported here, lazily, never on `import parmap`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

#: How similar a misspelt option must be to a real one to be suggested (the ratio of
#: `difflib.SequenceMatcher`, compared with underscores dropped from both names):
#: `chunk_size` -> `chunksize` is 1.0, `worker` -> `workers` 0.92, `retry` -> `retries`
#: 0.67; `factor` -> `retries` or `timeout` (0.31) are no typos.
CLOSE_MATCH_CUTOFF = 0.65

#: Close matches named at most: `retry` is as near `retry_on` (0.83) as it may be meant for
#: `retries` (0.67), so both are named; more would be a list to read, not a suggestion.
MAX_CLOSE_MATCHES = 2

#: What other pools call parmap's options, looked up before any close match:
#: `multiprocessing.Pool(processes=)`, `concurrent.futures`' `max_workers`, joblib's and
#: mpire's `n_jobs`, PyTorch's `num_workers` (`processes` would otherwise read as a typo
#: of `progress`, 0.71).
ALIASES = {
    "processes": "workers",
    "max_workers": "workers",
    "n_jobs": "workers",
    "num_workers": "workers",
    "n_workers": "workers",
    "initializer_args": "initargs",
    "chunk_size": "chunksize",
}

#: Longest value shown in a suggested fix (`factor=...`): the caller's value as they wrote
#: it when short, elided when long (a whole array is no help in one line).
MAX_VALUE_CHARS = 40


def close_matches(name: str, candidates: Iterable[str]) -> list[str]:
    """The candidates `name` most likely means, best first: its [ALIASES][] entry, else the
    closest spellings (`chunk_size` -> `chunksize`, `worker` -> `workers`); none if far from all."""
    import difflib

    candidates = list(candidates)
    if ALIASES.get(name) in candidates:
        return [ALIASES[name]]
    by_key = {candidate.replace("_", "").lower(): candidate for candidate in candidates}
    key = name.replace("_", "").lower()
    found = difflib.get_close_matches(key, list(by_key), n=MAX_CLOSE_MATCHES, cutoff=CLOSE_MATCH_CUTOFF)
    return [by_key[match] for match in found]


def _either(names: list[str]) -> str:
    return " or ".join(map(repr, names))


def unknown_call_options(
    given: Mapping[str, Any],
    *,
    label: str,
    function: Callable[..., Any] | None,
    per_call: Sequence[str],
    pool: Sequence[str],
) -> str:
    """The message for keywords of a map call that are no per-call option.

    Each unknown keyword is one of three mistakes, each with its fix: a pool option (set at
    decoration or with `parmap.config`), a misspelt option (the close match is named), or a
    value meant for the function itself (bind it with `functools.partial`, or give each item
    its own arguments with `starmap`).

    Args:
        given: the unknown keywords and their values, as the caller passed them.
        label: the decorated function's name, as the messages name it.
        function: the undecorated function (its parameters are read), if known.
        per_call: the names of the per-call options.
        pool: the names of the options that pick a pool.
    """
    names = sorted(given)
    plural = "s" if len(names) > 1 else ""
    quoted = ", ".join(map(repr, names))
    head = f"a map call of {label} got {'' if plural else 'an '}unexpected keyword argument{plural} {quoted}"
    guesses = {name: [name] if name in pool else close_matches(name, [*per_call, *pool]) for name in names}
    # A name is taken for a pool option only when that is its one reading (`processes`).
    meant = {name: found[0] if len(found) == 1 and found[0] in pool else None for name, found in guesses.items()}
    pool_given: dict[str, Any] = {}
    for name in names:
        meaning = meant[name]
        if meaning is not None:
            pool_given[meaning] = given[name]

    def about(name: str) -> str:  # one unknown keyword needs no naming again
        return f"{name!r}: " if plural else ""

    advice = [
        f"{about(name)}parmap calls it {meaning!r}"
        for name, meaning in meant.items()
        if meaning in pool and meaning != name
    ]
    if pool_given:
        settings = _keywords(pool_given, list(pool_given))
        several = len(pool_given) > 1
        advice.append(
            f"{', '.join(pool_given)} {'are pool options' if several else 'is a pool option'}, chosen with "
            f"the pool, never per call: set {'them' if several else 'it'} where {label} is decorated, "
            f"`@parallel({settings})`, or for every decorated function in a block, "
            f"`with parmap.config({settings}):`"
        )
    typos = {name: found for name, found in guesses.items() if found and meant[name] is None}
    advice.extend(f"{about(name)}did you mean {_either(found)}?" for name, found in typos.items())
    unplaced = [name for name in names if not guesses[name]]
    options = f"parmap's options ({', '.join(per_call)})"
    arguments = [name for name in unplaced if _accepts(function, name)]
    if arguments:
        values = _keywords(given, arguments)
        short = label.rsplit(".<locals>.", 1)[-1]  # the name as the caller's code spells it
        advice.append(
            f"a map call takes only {options} and calls {short}(item) with each item alone; to pass "
            f"{values} to every call, bind {'them' if len(arguments) > 1 else 'it'} first: "
            f"`parallel(functools.partial({short}, {values})).map(items)`, or put per-item arguments "
            f"in the items: `{short}.starmap([(item, arg), ...])`"
        )
    strangers = [name for name in unplaced if name not in arguments]
    if strangers:
        advice.append(
            (", ".join(map(repr, strangers)) + ": " if plural else "it is ")
            + f"neither a parameter of {label} nor one of "
            + ("the options above" if arguments else options)
        )
    return f"{head}: " + "; ".join(advice)


def unknown_decorator_options(names: Iterable[str], valid: Sequence[str], where: str = "parallel()") -> str:
    """The message for options `parallel()` (or `where`: `config()`) does not know, with the close matches named."""
    hints = []
    for name in sorted(names):
        found = close_matches(name, valid)
        hints.append(f"{name!r} (did you mean {_either(found)}?)" if found else repr(name))
    plural = "s" if len(hints) > 1 else ""
    return f"{where} got unexpected option{plural} {', '.join(hints)}; its options are {', '.join(valid)}"


def _keywords(given: Mapping[str, Any], names: Sequence[str]) -> str:
    """`name=value, ...` as a caller would write them, each value shortened when long."""
    import reprlib

    shortener = reprlib.Repr()
    shortener.maxstring = shortener.maxother = MAX_VALUE_CHARS
    return ", ".join(f"{name}={shortener.repr(given[name])}" for name in names)


def _accepts(function: Callable[..., Any] | None, name: str) -> bool:
    """Whether `function` takes a keyword `name` (True when its signature cannot be read)."""
    if function is None:
        return True
    import inspect

    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return True
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values()):
        return True
    parameter = parameters.get(name)
    return parameter is not None and parameter.kind is not inspect.Parameter.POSITIONAL_ONLY
