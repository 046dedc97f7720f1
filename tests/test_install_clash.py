"""`import parmap` warns when the unrelated PyPI project `parmap` shares our files (issue 13, point 10).

Each test builds a fake site directory in `tmp_path`: a copy of our package, plus the
files the other project installs (its `parmap/parmap.py` module and its
`parmap-1.7.0.dist-info`, or the single `parmap.py` of its older releases), and imports
parmap from there in a fresh interpreter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import parmap
from parmap._install_check import REPAIR_COMMAND

PACKAGE = Path(parmap.__file__).resolve().parent

#: What the other project's module says, enough to tell it apart.
OTHER_MODULE = '"""parmap: map and starmap implementations passing additional arguments."""\n'


def _site(tmp_path: Path) -> Path:
    site = tmp_path / "site-packages"
    shutil.copytree(PACKAGE, site / "parmap", ignore=shutil.ignore_patterns("__pycache__"))
    return site


def _install_other_package(site: Path) -> None:
    """What `pip install parmap==1.7.0` leaves beside ours: its module and its metadata."""
    (site / "parmap" / "parmap.py").write_text(OTHER_MODULE)
    info = site / "parmap-1.7.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: parmap\nVersion: 1.7.0\n")
    (info / "RECORD").write_text(
        "parmap/__init__.py,,\nparmap/parmap.py,,\nparmap-1.7.0.dist-info/METADATA,,\nparmap-1.7.0.dist-info/RECORD,,\n"
    )


def _import_from(site: Path, code: str = "import parmap") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", f"{code}; assert parmap.__file__.startswith({str(site)!r})"],
        capture_output=True,
        text=True,
        env=env,
        cwd=site.parent,  # not the repository: `-c` imports from the working directory first
        timeout=30,
        check=False,
    )


def test_other_package_beside_ours_warns_with_the_repair(tmp_path: Path) -> None:
    site = _site(tmp_path)
    _install_other_package(site)
    completed = _import_from(site)
    assert completed.returncode == 0, completed.stderr
    assert "ParmapInstallWarning" in completed.stderr
    assert "parmap-1.7.0.dist-info" in completed.stderr
    assert str(site / "parmap" / "parmap.py") in completed.stderr
    assert REPAIR_COMMAND in completed.stderr
    assert REPAIR_COMMAND == "pip uninstall parmap parmap-decorator && pip install parmap-decorator"


def test_old_single_module_beside_ours_warns(tmp_path: Path) -> None:
    site = _site(tmp_path)
    (site / "parmap.py").write_text(OTHER_MODULE)
    info = site / "parmap-1.2.3.dist-info"
    info.mkdir()
    (info / "RECORD").write_text("parmap.py,,\nparmap-1.2.3.dist-info/RECORD,,\n")
    completed = _import_from(site)
    assert "ParmapInstallWarning" in completed.stderr, completed.stderr
    assert str(site / "parmap.py") in completed.stderr
    assert "parmap-1.2.3.dist-info" in completed.stderr


def test_a_script_named_parmap_beside_a_checkout_is_no_clash(tmp_path: Path) -> None:
    site = _site(tmp_path)
    (site / "parmap.py").write_text("print('my own script')\n")  # no other project's metadata
    completed = _import_from(site, "import warnings; warnings.simplefilter('error'); import parmap")
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""


def test_the_warning_can_be_caught_by_its_class(tmp_path: Path) -> None:
    site = _site(tmp_path)
    _install_other_package(site)
    code = "import warnings; warnings.simplefilter('error'); import parmap\n"
    completed = _import_from(site, "import warnings; warnings.simplefilter('ignore', UserWarning); import parmap")
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""
    completed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(site)},
        cwd=site.parent,
        timeout=30,
        check=False,
    )
    assert completed.returncode != 0
    assert "parmap.ParmapInstallWarning: " in completed.stderr.strip().splitlines()[-1]


def test_clean_install_is_silent(tmp_path: Path) -> None:
    site = _site(tmp_path)
    (site / "parmap_decorator-0.1.0.dist-info").mkdir()  # our own metadata is no clash
    completed = _import_from(site, "import warnings; warnings.simplefilter('error'); import parmap")
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""


def test_the_warning_class_is_public() -> None:
    assert "ParmapInstallWarning" in parmap.__all__
    assert issubclass(parmap.ParmapInstallWarning, UserWarning)
    assert parmap.ParmapInstallWarning.__module__ == "parmap"
