"""The documentation site builds strictly, and its pages show rendered text, not markup.

The site is built as Read the Docs builds it (`zensical build --strict --clean`, see
`.readthedocs.yaml`), from a copy of the pages, into a temporary directory. Then the HTML is
read as a user sees it: the API reference shows every option, map method and error and no
private name; no page shows raw reST, MkDocs directives or unrendered Markdown.

Zensical needs Python 3.11+ and comes with the `docs` extra: elsewhere these tests skip
(the README's test command runs them on the newest Python, in the `dev` environment).
"""

from __future__ import annotations

import html
import importlib.util
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

import parmap
from parmap import _options

ROOT = Path(__file__).resolve().parents[1]
ZENSICAL = Path(sys.executable).parent / "zensical"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("zensical") is None or not ZENSICAL.exists(),
    reason="Zensical is not installed (the docs extra, Python 3.11+)",
)

#: What must never reach a reader: reST roles and literals, `::` blocks, MkDocs and
#: pymdownx directives, and Markdown that did not render (a reference link, an admonition).
RAW_MARKUP = {
    "reST role": re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|exc|data):`"),
    "double backticks": re.compile(r"``"),
    "'::' block": re.compile(r"\w::$", re.MULTILINE),
    "mkdocstrings directive": re.compile(r"^::: ", re.MULTILINE),
    "snippet include": re.compile(r"--8<--"),
    "reference link": re.compile(r"\]\[[\w.]*\]"),
    "admonition": re.compile(r"^!!! ", re.MULTILINE),
}

#: A private name of the package in rendered text: `_MapMethods`, `_Decorator`, `parmap._x`.
PRIVATE_NAME = re.compile(r"(?<![\w.])_[A-Z]\w+|parmap\._[a-z]\w*")


class _Text(HTMLParser):
    """The text of an HTML page's main article, with the text inside `pre`/`code` apart."""

    def __init__(self) -> None:
        super().__init__()
        self.prose: list[str] = []
        self.code: list[str] = []
        self.ids: set[str] = set()
        self._in_article = 0
        self._in_code = 0
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        identifier = dict(attrs).get("id")
        if identifier:
            self.ids.add(identifier)
        if tag == "article":
            self._in_article += 1
        elif tag in ("pre", "code"):
            self._in_code += 1
        elif tag in ("script", "style"):
            self._skip += 1
        elif tag in ("p", "li", "tr", "h1", "h2", "h3", "h4", "div", "br"):
            self.prose.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "article":
            self._in_article -= 1
        elif tag in ("pre", "code"):
            self._in_code -= 1
        elif tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if self._in_article and not self._skip:
            (self.code if self._in_code else self.prose).append(data)


def read_page(path: Path) -> _Text:
    parser = _Text()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def _copy_project(directory: Path) -> Path:
    """The pages, what they include and the config, copied into `directory`."""
    for part in ("docs", "examples"):
        shutil.copytree(ROOT / part, directory / part)
    shutil.copy(ROOT / "CHANGELOG.md", directory / "CHANGELOG.md")
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    # mkdocstrings reads the package from the checkout, not from the copy.
    (directory / "mkdocs.yml").write_text(config.replace('paths: ["."]', f'paths: ["{ROOT}"]'), encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built site: `zensical build --strict --clean` over a copy of the pages."""
    project = _copy_project(tmp_path_factory.mktemp("docs-site"))
    process = subprocess.run(
        [str(ZENSICAL), "build", "--strict", "--clean"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = process.stdout + process.stderr
    assert process.returncode == 0, f"the strict docs build failed:\n{output[-6000:]}"
    assert "No issues found" in output
    assert "end of life" not in output.lower()
    return project / "site"


@pytest.mark.timeout(300)
def test_no_page_shows_raw_markup(site: Path) -> None:
    pages = sorted(site.rglob("index.html"))
    assert len(pages) >= 20
    found = []
    for page in pages:
        prose = "".join(read_page(page).prose)
        found += [f"{page.relative_to(site)}: {kind}" for kind, pattern in RAW_MARKUP.items() if pattern.search(prose)]
    assert not found, "raw markup on the rendered pages:\n" + "\n".join(found)


@pytest.mark.timeout(300)
def test_the_reference_lists_options_methods_and_errors_and_nothing_private(site: Path) -> None:
    reference = read_page(site / "reference" / "index.html")
    text = html.unescape("".join(reference.prose) + "".join(reference.code))
    for option in _options.OPTIONS:
        assert f"option-{option.name}" in reference.ids, option.name
        assert f"{option.name}={_options.default_code(option)}," in text, f"{option.name} not in a signature"
    for method in _options.MAP_METHODS:
        assert f"parmap.ParallelFunction.{method}" in reference.ids, method
        assert f"task.{method}(" in text
    errors = [name for name in parmap.__all__ if name.endswith(("Error", "Iteration", "Warning", "Traceback"))]
    for name in errors:
        assert f"parmap.{name}" in reference.ids, name
    assert "Bases: RuntimeError" in re.sub(r"\s+", " ", text) or "RuntimeError" in text
    private = sorted(set(PRIVATE_NAME.findall(text)))
    assert not private, f"private names on the reference page: {private}"


@pytest.mark.timeout(300)
def test_the_why_page_and_every_nav_page_are_built(site: Path) -> None:
    nav_pages = re.findall(
        r"^\s+- (?:[^:\n]+: )?([\w-]+)\.md$", (ROOT / "mkdocs.yml").read_text(encoding="utf-8"), re.MULTILINE
    )
    assert "why-parmap" in nav_pages
    for page in nav_pages:
        built = site / ("" if page == "index" else page) / "index.html"
        assert built.exists(), page


@pytest.mark.timeout(120)
def test_serve_prints_no_warning(tmp_path: Path) -> None:
    """The README's `zensical serve` builds, serves the home page, and warns of nothing."""
    project = _copy_project(tmp_path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(ZENSICAL), "serve", "--dev-addr", f"127.0.0.1:{port}"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    assert response.status == 200
                    assert "parmap" in response.read().decode()
                    break
            except (OSError, urllib.error.URLError):
                assert server.poll() is None, "zensical serve exited"
                assert time.monotonic() < deadline, "zensical serve served nothing in 90 s"
                time.sleep(0.2)
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    output = re.sub(r"\x1b\[[0-9;]*m", "", output)  # colours, as in a terminal
    assert "No issues found" in output
    assert not re.search(r"^\W*warning\b", output, re.IGNORECASE | re.MULTILINE), output
    assert "end of life" not in output.lower(), output
