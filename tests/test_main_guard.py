"""A script without the `if __name__ == "__main__":` guard gets one short error (issue 13, point 7).

Under spawn and forkserver every worker imports the main script before it runs any task.
A script that calls a map at module level would start a pool in every worker; parmap's
workers exit quietly instead (`EXIT_UNGUARDED_MAIN`) and the caller gets one
`PoolStartError` saying to add the guard. The scripts run for real, in a subprocess of
their own session, so that what reaches stderr and what is left running can be checked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from parmap.backends._worker import unguarded_main_message

from .conftest import wait_until

#: The longest stderr accepted: one traceback of the caller (about ten lines with Python
#: 3.11's carets) and the one-line message; one worker traceback alone is over 30 lines.
MAX_STDERR_LINES = 15

REPOSITORY = Path(__file__).resolve().parents[1]

UNGUARDED = """\
    import sys

    from parmap import parallel


    @parallel(workers=2, start_method=sys.argv[1])
    def square(x):
        return x * x


    print(square.map(range(8)))
"""


def _session_members(session: int) -> list[int]:
    """Pids of the live (not zombie) processes of `session`."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[3]) == session:
            members.append(int(entry))
    return members


def _run_alone(script: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run `script` in a new session; wait until every process of that session is gone."""
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    child = subprocess.Popen(
        [sys.executable, str(script), *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=script.parent,
        start_new_session=True,
    )
    try:
        stdout, stderr = child.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, 9)
        child.communicate()
        raise AssertionError("the unguarded script hung") from None
    # The session's id is the script's pid: its workers, forkserver and resource tracker
    # are all in it, and none may outlive the script for long.
    wait_until(lambda: not _session_members(child.pid), timeout=15)
    return subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)


@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_unguarded_script_gets_one_short_error(tmp_path: Path, start_method: str) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(UNGUARDED))
    completed = _run_alone(script, start_method)
    assert completed.returncode != 0
    stderr = completed.stderr
    lines = stderr.strip().splitlines()
    assert len(lines) < MAX_STDERR_LINES, stderr
    assert stderr.count("Traceback (most recent call last)") == 1, stderr
    assert "bootstrapping phase" not in stderr, stderr  # multiprocessing's own error
    last = lines[-1]
    assert last.startswith("parmap.PoolStartError: "), stderr
    assert str(script) in last
    assert 'if __name__ == "__main__":' in last
    assert repr(start_method) in last
    assert completed.stdout == ""


def test_guarded_script_runs(tmp_path: Path) -> None:
    script = tmp_path / "guarded.py"
    guarded = UNGUARDED.replace("\n    print(", '\n    if __name__ == "__main__":\n        print(')
    script.write_text(textwrap.dedent(guarded))
    completed = _run_alone(script, "spawn")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == str([x * x for x in range(8)])


def test_other_process_importing_its_main_gets_the_error(tmp_path: Path) -> None:
    """A process that is not a parmap worker (the script's own spawned `Process`) gets the
    error raised in it, without multiprocessing's bootstrapping traceback."""
    script = tmp_path / "own_process.py"
    script.write_text(
        textwrap.dedent(
            """\
            import multiprocessing

            from parmap import parallel


            @parallel(workers=2, start_method="spawn")
            def square(x):
                return x * x


            if __name__ != "__main__":  # only in the spawned child, as it imports this script
                square.map(range(4))


            def nothing():
                pass


            if __name__ == "__main__":
                child = multiprocessing.get_context("spawn").Process(target=nothing)
                child.start()
                child.join()
                print(child.exitcode)
            """
        )
    )
    completed = _run_alone(script)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "1"
    assert "parmap.PoolStartError: " in completed.stderr
    assert "bootstrapping phase" not in completed.stderr


def test_message_names_the_default_start_method_when_none_is_set() -> None:
    message = unguarded_main_message(None)
    assert "start method" in message
    assert 'if __name__ == "__main__":' in message
