"""The distribution builds, installs into a fresh virtual environment, and works from there.

The wheel is built from a copy of the source tree (so the build never writes into the
checkout), installed with pip into a new virtual environment (pip fetches the runtime
dependencies from the package index), and an example runs from a directory outside the
checkout, so an accidental import from the source tree would be caught. The sdist must
carry the package and its ``py.typed`` marker.
"""

from __future__ import annotations

import email.parser
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import parmap

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTION = "parmap-decorator"
#: Where the documentation is published (mkdocs.yml's `site_url`, .readthedocs.yaml).
SITE_URL = "https://parmap-decorator.readthedocs.io/en/latest/"

#: Not part of a source distribution's inputs: virtual environments, caches, build outputs.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    ".venvs",
    "venv",
    "build",
    "dist",
    "site",
    "*.egg-info",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "*.sqlite",
    "*.sqlite-*",
)


def _installed(module: str) -> bool:
    """`module` is importable as a package of its own (not a `build/` output folder that
    the current directory makes a namespace package)."""
    spec = importlib.util.find_spec(module)
    return spec is not None and spec.origin is not None


pytestmark = pytest.mark.skipif(
    not _installed("build"),
    reason="the 'build' package is not installed (pip install build, or the dev extra)",
)


def _run(command: list[str], *, cwd: Path, timeout: float, env: dict[str, str] | None = None) -> str:
    process = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert process.returncode == 0, (
        f"{' '.join(command)} failed ({process.returncode})\n"
        f"--- stdout\n{process.stdout[-4000:]}\n--- stderr\n{process.stderr[-4000:]}"
    )
    return process.stdout


def _clean_env() -> dict[str, str]:
    """The environment without anything that could make Python find the checkout."""
    return {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH")
    }


@pytest.fixture(scope="module")
def dist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An sdist and a wheel, built by ``python -m build`` from a copy of the source tree."""
    base = tmp_path_factory.mktemp("packaging")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE)
    dist = base / "dist"
    _run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(dist), str(source)], cwd=base, timeout=240
    )
    return dist


def _one(directory: Path, pattern: str) -> Path:
    found = sorted(directory.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {directory}, found {found}"
    return found[0]


@pytest.mark.timeout(300)
def test_wheel_installs_and_runs_outside_the_checkout(dist_dir: Path, tmp_path: Path) -> None:
    wheel = _one(dist_dir, "parmap_decorator-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, timeout=120)
    python = venv / "bin" / "python"
    _run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        cwd=tmp_path,
        timeout=240,
        env=_clean_env(),
    )

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(ROOT / "examples" / "quickstart.py", elsewhere / "quickstart.py")
    probe = (
        "import pathlib, sysconfig, parmap; "
        "print(pathlib.Path(parmap.__file__).resolve()); "
        "print(pathlib.Path(sysconfig.get_paths()['purelib']).resolve()); "
        "print(parmap.__version__); "
        "print((pathlib.Path(parmap.__file__).parent / 'py.typed').exists())"
    )
    location, site_packages, version, typed = _run(
        [str(python), "-c", probe], cwd=elsewhere, timeout=60, env=_clean_env()
    ).split()
    assert Path(location).is_relative_to(Path(site_packages)), f"parmap imported from {location}"
    assert not Path(location).is_relative_to(ROOT), f"parmap imported from the checkout: {location}"
    assert version == parmap.__version__
    assert typed == "True"

    output = _run([str(python), "quickstart.py"], cwd=elsewhere, timeout=120, env=_clean_env())
    assert "is_prime(97) = True" in output


@pytest.mark.timeout(300)
def test_sdist_contains_the_package_and_py_typed(dist_dir: Path) -> None:
    sdist = _one(dist_dir, "parmap_decorator-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    expected = {
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "parmap/__init__.py",
        "parmap/py.typed",
        "parmap/errors.py",
        "parmap/backends/__init__.py",
        "parmap/backends/process.py",
    }
    assert expected <= names, f"missing from the sdist: {sorted(expected - names)}"
    packaged = {name for name in names if name.startswith("parmap/") and name.endswith(".py")}
    in_tree = {path.relative_to(ROOT).as_posix() for path in (ROOT / "parmap").rglob("*.py")}
    assert in_tree <= packaged, f"modules missing from the sdist: {sorted(in_tree - packaged)}"


@pytest.mark.timeout(300)
def test_wheel_metadata(dist_dir: Path) -> None:
    wheel = _one(dist_dir, "parmap_decorator-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata_name = next(name for name in names if name.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(archive.read(metadata_name).decode())
    assert "parmap/py.typed" in names
    assert {path.relative_to(ROOT).as_posix() for path in (ROOT / "parmap").rglob("*.py")} <= names
    assert not any(name.startswith(("tests/", "benchmarks/", "examples/")) for name in names)

    assert metadata["Name"] == DISTRIBUTION
    assert metadata["Version"] == parmap.__version__
    assert metadata["License-Expression"] == "MIT" or "MIT" in (metadata["License"] or "")
    assert metadata["Requires-Python"] == ">=3.9"
    classifiers = metadata.get_all("Classifier") or []
    for minor in range(9, 14):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    assert "Typing :: Typed" in classifiers
    urls = dict(entry.split(", ", 1) for entry in metadata.get_all("Project-URL") or [])
    assert {"Homepage", "Documentation", "Changelog", "Issues", "Source"} <= set(urls)
    # The documentation links go to the published site, not to the repository's docs/ folder
    # (where the site's directives would show as raw text).
    for name in ("Homepage", "Documentation", "Changelog"):
        assert urls[name].startswith(SITE_URL), f"{name}: {urls[name]}"
    extras = set(metadata.get_all("Provides-Extra") or [])
    assert {"dask", "test", "docs", "dev", "bench"} <= extras
    requires = " ".join(metadata.get_all("Requires-Dist") or [])
    for dependency in ("wrapt", "cloudpickle", "tqdm"):
        assert dependency in requires
    assert "distributed" in requires
    assert 'extra == "dask"' in requires
    assert "pip install parmap-decorator" in metadata.get_payload()
    assert metadata["Description-Content-Type"] == "text/markdown"


@pytest.mark.timeout(300)
@pytest.mark.skipif(not _installed("twine"), reason="twine is not installed (the dev extra)")
def test_readme_renders_as_the_long_description(dist_dir: Path) -> None:
    """`twine check --strict`: the package index can render the README of both distributions."""
    dists = [str(_one(dist_dir, "parmap_decorator-*.whl")), str(_one(dist_dir, "parmap_decorator-*.tar.gz"))]
    output = _run([sys.executable, "-m", "twine", "check", "--strict", *dists], cwd=dist_dir, timeout=120)
    assert output.count("PASSED") == 2, output
