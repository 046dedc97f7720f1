"""Checkpoints: finished results in an SQLite file, so a rerun skips what is already done.

`f.map(items, checkpoint="run.sqlite")` opens a `CheckpointStore` for the job. The
engine asks it, chunk by chunk, which input indices are already done (and fills their
results from it), and hands it every newly finished `(index, result)` pair:

```text
engine ──completed(start, stop)──> SELECT rows in [start, stop) ──> verify digest, unpickle
engine ──save(pairs)─────────────> pickle now, buffer ──> one transaction per batch
                                                          (every COMMIT_ROWS rows, or
                                                           COMMIT_SECONDS after the
                                                           first pending row, by a timer)
```

Why it survives `kill -9` of the parent at any moment:

* Only the parent writes, through one connection, in WAL mode. A transaction is either
  wholly in the WAL or ignored by the next reader, so a kill can lose the last uncommitted
  batch (those items simply run again) but never leaves half of a row behind.
* Every row carries a digest of its pickle. Rows are verified before they are unpickled;
  a row that fails (it cannot happen with SQLite's guarantees, but disks do lie) counts
  as not done, and the item runs again.
* The metadata (function fingerprint, input length, format) is written in the same kind
  of transaction when the file is created, so a file is either a complete, empty
  checkpoint or not a checkpoint at all.

A checkpoint belongs to one job: the fingerprint of the function's code and the length of
the input are recorded, and opening the file for a different job raises
[`CheckpointMismatchError`][parmap.CheckpointMismatchError] unless `checkpoint_mode="overwrite"`.

What goes wrong with the file itself is an `OSError`, never "not a parmap checkpoint"
(that is said only of a file that is not an SQLite database, or an SQLite database without
parmap's tables):

| the file | raises |
|---|---|
| a directory | `IsADirectoryError` |
| in a directory that does not exist | `FileNotFoundError` |
| not readable or writable by this process | `PermissionError` |
| locked by another process past `BUSY_TIMEOUT_SECONDS` | [CheckpointLockedError][] (an `OSError`) |
| full (disk or quota), or another I/O failure | `OSError` |

A commit that fails keeps its rows: they are retried by the next commit (the timer's or the
job's), and the job raises the error at its next result or when it ends, so a map never
returns normally while rows are missing from the file.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import pickle
import sqlite3
import threading
import time
import types
from collections.abc import Callable, Sequence
from typing import Any

import cloudpickle

from .backends._worker import StarCall
from .errors import CheckpointLockedError, CheckpointMismatchError, SerializationError

#: Rows buffered before a commit. One transaction per thousand rows makes the per-row cost
#: of the commit itself negligible (measured: ~2 us per row for small results), while the
#: buffer stays small in memory.
COMMIT_ROWS = 1000

#: Longest time a finished result waits in the buffer before it is committed. A kill loses
#: at most this much finished work (plus what is running); half a second is short for a
#: person and still amortises commits over many fast items.
COMMIT_SECONDS = 0.5

#: Version of the file layout, stored in the metadata.
FORMAT_VERSION = "1"

#: Digest size of a row's checksum, in bytes.
_ROW_DIGEST_SIZE = 16

_SCHEMA = (
    "CREATE TABLE parmap_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE parmap_results (idx INTEGER PRIMARY KEY, digest BLOB NOT NULL, payload BLOB NOT NULL)",
)

_OVERWRITE_HINT = "Use another file, or pass checkpoint_mode='overwrite' to discard the stored results"

#: How long a statement waits for another process's lock on the file before it fails. Ten
#: seconds outlasts any commit of another parmap job (one batch of COMMIT_ROWS rows) by far,
#: while a file held by a process that never lets go is reported before a person wonders.
BUSY_TIMEOUT_SECONDS = 10.0


# SQLite's primary result codes (sqlite3.h), and the messages sqlite3_errstr gives them: on
# Python < 3.11 an sqlite3.Error carries only the message.
_SQLITE_ERROR, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_PERM, _SQLITE_READONLY = 1, 5, 6, 3, 8
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 10, 11, 13, 14, 26
_SQLITE_MESSAGES = {
    "database is locked": _SQLITE_BUSY,
    "database table is locked": _SQLITE_LOCKED,
    "access permission denied": _SQLITE_PERM,
    "attempt to write a readonly database": _SQLITE_READONLY,
    "disk I/O error": _SQLITE_IOERR,
    "database disk image is malformed": _SQLITE_CORRUPT,
    "database or disk is full": _SQLITE_FULL,
    "unable to open database file": _SQLITE_CANTOPEN,
    "file is not a database": _SQLITE_NOTADB,
}


class CheckpointStore:
    """One job's checkpoint file: read what is done, write what finishes.

    Use `open()`; the engine calls `completed()` and `save()` from the job's
    thread and `close()` when the job ends, however it ends. The methods are
    thread-safe: a background timer commits buffered rows while the job waits on slow items.
    """

    def __init__(self, path: str, connection: sqlite3.Connection, *, has_rows: bool) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = connection
        self._has_rows = has_rows
        self._lock = threading.Lock()
        self._pending: list[tuple[int, bytes, bytes]] = []
        self._timer: threading.Thread | None = None
        self._closing = threading.Event()
        #: The timer's last failed commit; the job's thread raises it (after one more try).
        self._failure: Exception | None = None
        #: The process that opened the file: a child forked from it (inside an `imap`
        #: loop, say) inherits the store but must not write or close the parent's file.
        self._owner_pid = os.getpid()

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, function: Callable[..., Any], length: int | None, mode: str = "resume"
    ) -> CheckpointStore:
        """Open (or create) the checkpoint at `path` for `function` over `length` items.

        `length` is `None` for an input of unknown length (a generator); it is then not
        compared. `mode="overwrite"` discards whatever the file holds.

        Raises:
            TypeError: `path` is not a path.
            ValueError: `path` is empty or in-memory, or `mode` is unknown.
            CheckpointMismatchError: the file belongs to a different job (another function or
                another input length), or is not a parmap checkpoint at all.
            CheckpointLockedError: another process holds a lock on the file.
            OSError: the file cannot be opened, created or written (`IsADirectoryError`,
                `FileNotFoundError` for a missing directory, `PermissionError`, ...).
        """
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"checkpoint must be a file path, got {type(path).__name__}")
        text = os.fspath(path)
        if not text or text == ":memory:" or text.startswith("file:"):
            raise ValueError(f"checkpoint must be the path of a file, got {text!r}")
        if os.path.isdir(text):
            raise IsADirectoryError(errno.EISDIR, "the checkpoint must be the path of a file, not a directory", text)
        directory = os.path.dirname(os.path.abspath(text))
        if not os.path.isdir(directory):
            raise FileNotFoundError(errno.ENOENT, "the directory of the checkpoint does not exist", directory)
        if mode not in ("resume", "overwrite"):
            raise ValueError(f"checkpoint_mode must be 'resume' or 'overwrite', got {mode!r}")
        description, fingerprint = function_fingerprint(function)
        expected = {
            "format": FORMAT_VERSION,
            "fingerprint": fingerprint,
            "function": description,
            "length": "unknown" if length is None else str(length),
        }
        connection = _connect(text)
        try:
            has_rows = _prepare_file(connection, text, expected, overwrite=mode == "overwrite")
        except BaseException:
            connection.close()
            raise
        return cls(text, connection, has_rows=has_rows)

    # ------------------------------------------------------------------ the engine's side

    def completed(self, start: int, stop: int) -> dict[int, Any]:
        """Results already stored for input indices in `[start, stop)`.

        A row whose digest does not match its payload, or that cannot be unpickled, is
        left out: its item runs again and its row is replaced.
        """
        if not self._has_rows or stop <= start:
            return {}
        with self._lock:
            connection = self._require_open()
            rows = connection.execute(
                "SELECT idx, digest, payload FROM parmap_results WHERE idx >= ? AND idx < ?", (start, stop)
            ).fetchall()
        found: dict[int, Any] = {}
        for index, digest, payload in rows:
            if _row_digest(payload) != digest:
                continue
            try:
                found[index] = pickle.loads(payload)
            except Exception:
                continue
        return found

    def save(self, results: Sequence[tuple[int, Any]]) -> None:
        """Buffer newly finished `(index, result)` pairs; commit once a batch is full.

        Does nothing in a child forked from the process that opened the store.

        Each result is pickled now (plain pickle, or cloudpickle for what it cannot do), so
        a result the caller mutates later is stored as it was returned.

        Raises:
            SerializationError: a result cannot be pickled (the message names its index).
            CheckpointLockedError: a commit waited for another process's lock in vain.
            OSError: a commit failed (disk full, I/O error); the rows stay buffered.
        """
        if os.getpid() != self._owner_pid:
            return  # a forked child: the parent's job, the parent's rows
        rows = []
        for index, value in results:
            payload = _dumps_result(index, value, self.path)
            rows.append((index, _row_digest(payload), payload))
        with self._lock:
            self._require_open()
            self._pending.extend(rows)
            if len(self._pending) >= COMMIT_ROWS or self._failure is not None:
                self._commit_locked()  # after a failed timer commit: retry now, raise if it fails again
            elif self._pending and self._timer is None:
                self._timer = threading.Thread(target=self._commit_periodically, name="parmap-checkpoint", daemon=True)
                self._timer.start()

    def close(self) -> None:
        """Commit what is buffered and close the file; idempotent.

        Does nothing in a child forked from the process that opened the store: SQLite
        connections must not be used across `fork`, and the rows are the parent's to commit.

        Raises:
            CheckpointLockedError: the last commit waited for another process's lock in vain.
            OSError: the last commit failed; the file is closed all the same, and the rows
                not committed run again next time.
        """
        if os.getpid() != self._owner_pid:
            return  # a forked child: the parent commits its rows and closes its connection
        self._closing.set()
        timer = self._timer
        if timer is not None and timer is not threading.current_thread():
            timer.join()
        with self._lock:
            connection = self._connection
            if connection is None:
                return
            try:
                self._commit_locked()
            finally:
                self._connection = None
                connection.close()

    # ------------------------------------------------------------------ internals

    def _require_open(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError(f"the checkpoint {self.path!r} is closed")
        return self._connection

    def _commit_locked(self) -> None:
        """Commit the buffered rows; they leave the buffer only once they are in the file.

        Raises:
            CheckpointLockedError: another process held the file's lock too long.
            OSError: SQLite could not write the rows (disk full, I/O error, ...).
        """
        if not self._pending or self._connection is None:
            return
        try:
            with _transaction(self._connection):
                self._connection.executemany(
                    "INSERT OR REPLACE INTO parmap_results (idx, digest, payload) VALUES (?, ?, ?)", self._pending
                )
        except sqlite3.Error as error:
            raise _file_error(self.path, error, f"could not save {len(self._pending)} results to") from error
        self._pending = []
        self._failure = None

    def _commit_periodically(self) -> None:
        """Timer thread: commit buffered rows every `COMMIT_SECONDS` until the store closes.

        A failed commit is kept for the job's thread to raise and retried on the next tick.
        """
        while not self._closing.wait(COMMIT_SECONDS):
            with self._lock:
                try:
                    self._commit_locked()
                except Exception as error:  # an OSError, or a file that SQLite now finds corrupt
                    self._failure = error

    def __repr__(self) -> str:
        state = "closed" if self._connection is None else "open"
        return f"<CheckpointStore {self.path!r} {state}>"


def stored_results(path: str | os.PathLike[str]) -> dict[int, Any]:
    """Every verified result in the checkpoint at `path`, by input index (for inspection).

    Raises:
        CheckpointMismatchError: `path` is not a parmap checkpoint.
        OSError: `path` does not exist or cannot be read ([CheckpointLockedError][]: it is
            locked by another process).
    """
    text = os.fspath(path)
    if not os.path.isfile(text):  # sqlite3.connect would create an empty database
        raise FileNotFoundError(errno.ENOENT, "no checkpoint file", text)
    connection = _connect(text)
    try:
        try:
            rows = connection.execute("SELECT idx, digest, payload FROM parmap_results").fetchall()
        except sqlite3.Error as error:
            if _sqlite_code(error) in (None, _SQLITE_ERROR):  # "no such table": not a checkpoint
                raise CheckpointMismatchError(f"{text!r} is not a parmap checkpoint: {error}") from error
            raise _file_error(text, error, "cannot read") from error
    finally:
        connection.close()
    return {index: pickle.loads(payload) for index, digest, payload in rows if _row_digest(payload) == digest}


# --------------------------------------------------------------------------- the file


def _connect(path: str) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; every write is in an explicit one.
    # check_same_thread=False: map_async runs the job (and the timer commits) in other
    # threads than the one that opened the store; the store's lock serialises all use.
    try:
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as error:
        raise _file_error(path, error, "cannot open") from error
    return connection


def _sqlite_code(error: sqlite3.Error) -> int | None:
    """SQLite's primary result code of `error` (from its message before Python 3.11)."""
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF  # an extended code carries the primary one in its low byte
    text = str(error)
    for message, primary in _SQLITE_MESSAGES.items():
        if text.startswith(message):
            return primary
    return None


def _file_error(path: str, error: sqlite3.Error, doing: str) -> Exception:
    """The error to raise for `error`, met while `doing` the checkpoint at `path`.

    A file that SQLite does not recognise is not a parmap checkpoint; everything else is
    about the file itself, an `OSError`, locked files [CheckpointLockedError][].
    """
    code = _sqlite_code(error)
    if code in (_SQLITE_NOTADB, _SQLITE_CORRUPT):
        return CheckpointMismatchError(f"{path!r} is not a parmap checkpoint: {error}")
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return CheckpointLockedError(
            f"{doing} the checkpoint {path!r}: it is locked by another process (another map writing it?) "
            f"and stayed locked for {BUSY_TIMEOUT_SECONDS:g} s ({error})"
        )
    if code in (_SQLITE_READONLY, _SQLITE_CANTOPEN) and _on_read_only_filesystem(path):
        return OSError(errno.EROFS, f"{doing} the checkpoint: it is on a read-only file system ({error})", path)
    if code in (_SQLITE_PERM, _SQLITE_READONLY) or (code == _SQLITE_CANTOPEN and _not_permitted(path)):
        return PermissionError(errno.EACCES, f"{doing} the checkpoint: permission denied ({error})", path)
    if code == _SQLITE_FULL:
        return OSError(errno.ENOSPC, f"{doing} the checkpoint: the disk or the file's quota is full ({error})", path)
    return OSError(f"{doing} the checkpoint {path!r}: {error}")


def _on_read_only_filesystem(path: str) -> bool:
    try:
        return bool(os.statvfs(os.path.dirname(os.path.abspath(path))).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # AttributeError: a platform without statvfs
        return False


def _not_permitted(path: str) -> bool:
    if os.path.exists(path):
        return not os.access(path, os.R_OK | os.W_OK)
    return not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK | os.X_OK)


class _transaction:
    """`BEGIN IMMEDIATE` ... `COMMIT`, or `ROLLBACK` on any error (a failed COMMIT too)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def __enter__(self) -> None:
        self._connection.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: object) -> None:
        if kind is None:
            try:
                self._connection.execute("COMMIT")
                return
            except BaseException:
                self._roll_back()  # a COMMIT that failed (busy) leaves the transaction open
                raise
        self._roll_back()

    def _roll_back(self) -> None:
        if self._connection.in_transaction:
            self._connection.execute("ROLLBACK")


def _prepare_file(connection: sqlite3.Connection, path: str, expected: dict[str, str], *, overwrite: bool) -> bool:
    """Create or check the checkpoint's tables; return whether it already holds results."""
    try:
        # WAL: a committed transaction is complete on disk even if this process is killed a
        # moment later; NORMAL sync is safe against a killed process (only a power loss can
        # drop the last commits, never corrupt the file), and avoids an fsync per commit.
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        with _transaction(connection):
            tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "parmap_meta" not in tables:
                if tables:
                    raise CheckpointMismatchError(
                        f"{path!r} is an SQLite database but not a parmap checkpoint (it has the tables "
                        f"{', '.join(sorted(tables))}); choose another file"
                    )
                for statement in _SCHEMA:
                    connection.execute(statement)
                _write_meta(connection, expected)
                return False
            stored = dict(connection.execute("SELECT key, value FROM parmap_meta").fetchall())
            if overwrite:
                connection.execute("DELETE FROM parmap_results")
                connection.execute("DELETE FROM parmap_meta")
                _write_meta(connection, expected)
                return False
            _check_same_job(path, stored, expected)
            if stored.get("length") == "unknown" and expected["length"] != "unknown":
                connection.execute("UPDATE parmap_meta SET value = ? WHERE key = 'length'", (expected["length"],))
            return connection.execute("SELECT 1 FROM parmap_results LIMIT 1").fetchone() is not None
    except sqlite3.Error as error:
        raise _file_error(path, error, "cannot open") from error


def _write_meta(connection: sqlite3.Connection, values: dict[str, str]) -> None:
    rows = [*values.items(), ("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))]
    connection.executemany("INSERT INTO parmap_meta (key, value) VALUES (?, ?)", rows)


def _check_same_job(path: str, stored: dict[str, str], expected: dict[str, str]) -> None:
    """Raise `CheckpointMismatchError` naming what differs between the file's job and this one."""
    if stored.get("format") != FORMAT_VERSION:
        raise CheckpointMismatchError(
            f"the checkpoint {path!r} has format {stored.get('format')!r}, this parmap writes format "
            f"{FORMAT_VERSION!r}. {_OVERWRITE_HINT}"
        )
    problems = []
    if stored.get("fingerprint") != expected["fingerprint"]:
        before, now = stored.get("function", "?"), expected["function"]
        if before == now:
            problems.append(f"the code of the function {now} has changed since it was written")
        else:
            problems.append(f"it was written by the function {before}, this call runs {now}")
    known = "unknown" not in (stored.get("length"), expected["length"])
    if known and stored.get("length") != expected["length"]:
        problems.append(f"it was written for {stored.get('length')} input items, this call has {expected['length']}")
    if problems:
        raise CheckpointMismatchError(
            f"the checkpoint {path!r} belongs to a different job: {'; and '.join(problems)}. {_OVERWRITE_HINT}"
        )


def _dumps_result(index: int, value: Any, path: str) -> bytes:
    """Pickle one result: plain pickle when it can (ten times faster), else cloudpickle.

    Plain pickle stores classes and functions by reference, which suits a file read back
    by a later run of the same program; cloudpickle handles lambdas and local classes.
    """
    try:
        return pickle.dumps(value, protocol=5)
    except Exception:
        pass
    try:
        payload: bytes = cloudpickle.dumps(value, protocol=5)
    except Exception as error:
        raise SerializationError(
            f"the result of item {index} could not be pickled into the checkpoint {path!r}: "
            f"{type(error).__name__}: {error}"
        ) from error
    return payload


def _row_digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_ROW_DIGEST_SIZE).digest()


# --------------------------------------------------------------------------- fingerprints


def function_fingerprint(function: Callable[..., Any]) -> tuple[str, str]:
    """`(readable name, hex digest)` identifying `function`'s code, stable across runs.

    The digest covers the module, qualified name and code (bytecode, constants and names,
    recursively for nested functions and lambdas, but not line numbers), default
    arguments and closure values; for `functools.partial` the wrapped function and the
    bound arguments; for a bound method its function and class; for any other callable the
    digest of its pickle. Editing comments or moving the function keeps the digest;
    changing what it computes, or upgrading Python (new bytecode), changes it.
    """
    digest = hashlib.blake2b(digest_size=16)
    try:
        _feed_callable(digest, function, set())
    except RecursionError:  # a closure over a self-referencing structure: fall back to the pickle
        digest = hashlib.blake2b(digest_size=16)
        _feed(digest, "object", _pickle_token(function))
    return _describe(function), digest.hexdigest()


def _describe(function: Any) -> str:
    if isinstance(function, StarCall):
        return _describe(function.fn)
    if isinstance(function, functools.partial):
        return f"functools.partial({_describe(function.func)}, ...)"
    target = getattr(function, "__func__", function)
    module = getattr(target, "__module__", None) or "?"
    qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{module}.{qualname}"


def _feed(digest: Any, *parts: str | bytes) -> None:
    """Add length-prefixed parts, so ("ab", "c") and ("a", "bc") differ."""
    for part in parts:
        data = part.encode("utf-8", "surrogatepass") if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)


def _feed_callable(digest: Any, function: Any, seen: set[int]) -> None:
    if isinstance(function, StarCall):
        _feed(digest, "star")
        _feed_callable(digest, function.fn, seen)
        return
    if isinstance(function, functools.partial):
        _feed(digest, "partial", _value_token(function.args, seen), _value_token(function.keywords, seen))
        _feed_callable(digest, function.func, seen)
        return
    if isinstance(function, types.MethodType):
        owner = function.__self__
        owner_type = owner if isinstance(owner, type) else type(owner)
        _feed(digest, "method", f"{owner_type.__module__}.{owner_type.__qualname__}")
        _feed_callable(digest, function.__func__, seen)
        return
    if id(function) in seen:  # a recursive closure: its code is already in the digest
        _feed(digest, "again")
        return
    seen.add(id(function))
    code = getattr(function, "__code__", None)
    if isinstance(code, types.CodeType):
        _feed(
            digest,
            "function",
            _describe(function),
            _code_token(code, seen),
            _value_token(getattr(function, "__defaults__", None), seen),
            _value_token(getattr(function, "__kwdefaults__", None), seen),
        )
        for cell in getattr(function, "__closure__", None) or ():
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell (a name assigned after the function was made)
                _feed(digest, "empty cell")
            else:
                _feed(digest, _value_token(contents, seen))
        return
    owner = getattr(function, "__self__", None)
    if isinstance(function, type) or (
        isinstance(function, types.BuiltinFunctionType) and (owner is None or isinstance(owner, types.ModuleType))
    ):
        _feed(digest, "named", _describe(function))  # a class or a module's builtin: its name says it all
        return
    _feed(digest, "object", _pickle_token(function))  # a callable object: its state matters too


def _code_token(code: types.CodeType, seen: set[int]) -> str:
    parts = [
        code.co_code.hex(),
        repr(code.co_names),
        repr((code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags)),
        ",".join(_const_token(const, seen) for const in code.co_consts),
    ]
    return hashlib.blake2b("\0".join(parts).encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _const_token(const: Any, seen: set[int]) -> str:
    if isinstance(const, types.CodeType):
        return "code:" + _code_token(const, seen)
    return _value_token(const, seen)


_PLAIN_TYPES = (type(None), bool, int, float, complex, str, bytes, type(Ellipsis))


def _value_token(value: Any, seen: set[int]) -> str:
    """A text that is equal for equal values in any process (set order does not leak in)."""
    if isinstance(value, _PLAIN_TYPES):
        return f"{type(value).__name__}:{value!r}"
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__}[{','.join(_value_token(item, seen) for item in value)}]"
    if isinstance(value, (set, frozenset)):
        return f"{type(value).__name__}{{{','.join(sorted(_value_token(item, seen) for item in value))}}}"
    if isinstance(value, dict):
        entries = sorted(f"{_value_token(key, seen)}:{_value_token(item, seen)}" for key, item in value.items())
        return f"dict{{{','.join(entries)}}}"
    if isinstance(value, types.CodeType):
        return "code:" + _code_token(value, seen)
    if isinstance(value, types.ModuleType):
        return f"module:{value.__name__}"
    if callable(value) and (hasattr(value, "__code__") or isinstance(value, (functools.partial, StarCall))):
        nested = hashlib.blake2b(digest_size=16)
        _feed_callable(nested, value, seen)
        return f"callable:{nested.hexdigest()}"
    return _pickle_token(value)


def _pickle_token(value: Any) -> str:
    try:
        data = cloudpickle.dumps(value, protocol=5)
    except Exception:
        return f"unpicklable:{type(value).__module__}.{type(value).__qualname__}"
    return "pickle:" + hashlib.blake2b(data, digest_size=16).hexdigest()
