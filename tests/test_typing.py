"""Type checkers see through the decorator: ``task.map`` gives ``list[R]`` (snapshot test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "typing"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["map_types"])
def test_revealed_types_match_the_snapshot(name: str) -> None:
    pytest.importorskip("mypy", reason="mypy is in the dev extra")
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--hide-error-context",
            "--no-incremental",
            f"{name}.py",
        ],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert process.stdout.splitlines() == (HERE / f"{name}.out").read_text().splitlines(), process.stderr
