"""The code in the README and the docs runs, and the docs cover the whole public API.

Every ```` ```python ```` block of ``README.md`` and ``docs/*.md`` is executed: the blocks of
one page run in order, in one fresh interpreter whose working directory is a temporary
directory. They share the ``__main__`` namespace, which has no ``__file__``, as in a
notebook: a page's snippets are short scripts whose calls are not all under the
``if __name__ == "__main__":`` guard, and workers started with ``spawn`` or ``forkserver``
must not import the whole page again. (The examples, run as real scripts, cover the guard.)
A block may be marked by an HTML comment on the line just before it:

* ``<!-- no-run -->``: never executed (needs a cluster, shows a mistake on purpose...);
  keep these rare;
* ``<!-- requires: joblib, mpire -->``: executed only when those modules are importable
  (side-by-side snippets of other libraries on the migration page).

Indented blocks (inside content tabs or admonitions) are found too, and a block's
``--8<-- "path"`` lines (pymdownx.snippets, paths relative to the repository root) are
replaced by that file, as the docs build does. Examples that simulate work with ``sleep``
run with ``PARMAP_EXAMPLE_SLEEP_SCALE`` set, as in ``tests/test_examples.py``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import parmap
from tests.conftest import CTRL_C_AS_IN_A_TERMINAL

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: Seconds one page's blocks may take together; the slowest page (migration) needs ~20 s.
PAGE_TIMEOUT = 150

#: Runs the block files named in ``sys.argv[1:]`` one after another in ``__main__``. Each is
#: compiled on its own (a block may start with ``from __future__ import ...``), under its
#: file name, so tracebacks show the block's source. Ctrl-C acts as in a terminal.
_RUNNER = (
    CTRL_C_AS_IN_A_TERMINAL + "import sys\n"
    "for path in sys.argv[1:]:\n"
    "    exec(compile(open(path, encoding='utf-8').read(), path, 'exec'), vars(sys.modules['__main__']))\n"
)

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>python|py)[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.MULTILINE | re.DOTALL
)
_INCLUDE = re.compile(r'^--8<--[ \t]+"(?P<path>[^"]+)"[ \t]*$', re.MULTILINE)
_MARKER = re.compile(r"<!--\s*(?P<kind>no-run|requires:)(?P<argument>[^>]*?)\s*-->")


@dataclasses.dataclass
class Block:
    """One python code block of a page."""

    page: Path
    line: int  # 1-based line of the opening fence
    code: str
    marker: str | None  # "no-run", "requires:" or None
    argument: str


def extract_blocks(page: Path) -> list[Block]:
    """The python blocks of ``page``, in order, with the marker of the line before each."""
    text = page.read_text(encoding="utf-8")
    blocks = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        marker = _MARKER.fullmatch(before)
        blocks.append(
            Block(
                page=page,
                line=text.count("\n", 0, match.start()) + 1,
                code=_expand_includes(textwrap.dedent(match.group("body"))),
                marker=marker.group("kind") if marker else None,
                argument=marker.group("argument").strip() if marker else "",
            )
        )
    return blocks


def _expand_includes(code: str) -> str:
    """Replace each ``--8<-- "path"`` line by the text of that file, as pymdownx.snippets does."""
    return _INCLUDE.sub(lambda match: (ROOT / match.group("path")).read_text(encoding="utf-8").rstrip("\n"), code)


def missing_modules(block: Block) -> list[str]:
    """Modules a ``requires:`` block names that are not importable here."""
    if block.marker != "requires:":
        return []
    names = [name.strip() for name in block.argument.split(",") if name.strip()]
    return [name for name in names if importlib.util.find_spec(name) is None]


def runnable_blocks(page: Path) -> list[Block]:
    return [b for b in extract_blocks(page) if b.marker != "no-run" and not missing_modules(b)]


def write_block_files(blocks: list[Block], directory: Path) -> list[Path]:
    """One file per block, named after its page and line, in the order they run."""
    paths = []
    for number, block in enumerate(blocks):
        path = directory / f"{number:02}_{block.page.stem}_line{block.line}.py"
        path.write_text(block.code, encoding="utf-8")
        paths.append(path)
    return paths


def _page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


@pytest.mark.timeout(PAGE_TIMEOUT + 30)
@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_page_code_blocks_run(page: Path, tmp_path: Path) -> None:
    blocks = runnable_blocks(page)
    if not blocks:
        pytest.skip(f"{_page_id(page)} has no runnable python block")
    block_files = write_block_files(blocks, tmp_path)
    env = {
        **os.environ,
        "PARMAP_EXAMPLE_SLEEP_SCALE": "0.02",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    try:
        process = subprocess.run(
            [sys.executable, "-c", _RUNNER, *map(str, block_files)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=PAGE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(
            f"the code blocks of {_page_id(page)} ran longer than {PAGE_TIMEOUT} s; "
            f"output so far:\n{expired.stdout!r}\n{expired.stderr!r}"
        )
    assert process.returncode == 0, (
        f"the code blocks of {_page_id(page)} failed (exit code {process.returncode}); "
        f"each block ran from a file named after its page and line.\n"
        f"--- stdout (tail)\n{process.stdout[-3000:]}\n--- stderr (tail)\n{process.stderr[-5000:]}"
    )


#: Characters of one code line that fit the content column at 1280 px: a code block is 688
#: px wide inside its padding and its font 12.8 px; at JetBrains Mono's 0.6 em advance that
#: is 89 characters, 85 with the Chromium fallback font's 7.55 px (measured in headless
#: Chromium by `scripts/screenshots`). A longer line scrolls, and its comment is cut off.
MAX_CODE_LINE = 85

_ANY_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.MULTILINE | re.DOTALL
)


def long_code_lines(text: str, where: str) -> list[str]:
    """Lines of `text`'s fenced code blocks (and the files they include) over `MAX_CODE_LINE`."""
    long = []
    for match in _ANY_FENCE.finditer(text):
        if 'exec="on"' in match.group("info"):
            continue  # prints Markdown (a table), not code
        indent = match.group("indent")
        body = _expand_includes("\n".join(line.removeprefix(indent) for line in match.group("body").split("\n")))
        start = text.count("\n", 0, match.start()) + 2
        long += [
            f"{where}:{start + number}: {len(line)} characters"
            for number, line in enumerate(body.splitlines())
            if len(line) > MAX_CODE_LINE
        ]
    return long


def test_code_lines_fit_the_page() -> None:
    """No code block of the site scrolls sideways at 1280 px: not on a page, not in a
    docstring the reference renders."""
    long = [line for page in PAGES[1:] for line in long_code_lines(page.read_text(encoding="utf-8"), page.name)]
    for name in parmap.__all__:
        value = getattr(parmap, name)
        long += long_code_lines(inspect.getdoc(value) or "", f"parmap.{name}")
        for member, attribute in vars(value).items() if inspect.isclass(value) else ():
            if not member.startswith("_"):
                long += long_code_lines(inspect.getdoc(attribute) or "", f"parmap.{name}.{member}")
    assert not long, f"code lines over {MAX_CODE_LINE} characters:\n" + "\n".join(long)
    assert long_code_lines("```python\n" + "x" * 86 + "\n```\n", "page") == ["page:2: 86 characters"]


def test_markers_are_rare_and_well_formed() -> None:
    """``no-run`` stays the exception; every ``requires:`` names at least one module."""
    blocks = [block for page in PAGES for block in extract_blocks(page)]
    no_run = [f"{b.page.name}:{b.line}" for b in blocks if b.marker == "no-run"]
    assert len(blocks) >= 30
    assert len(no_run) <= len(blocks) // 10, f"too many no-run blocks: {no_run}"
    for block in blocks:
        if block.marker == "requires:":
            assert block.argument, f"{block.page.name}:{block.line}: 'requires:' names no module"


def test_block_extraction_handles_markers_and_indentation(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        textwrap.dedent("""\
        Text.

        ```python
        x = 1
        ```

        <!-- no-run -->
        ```python
        raise SystemExit("never runs")
        ```

        === "Tab"

            <!-- requires: surely_not_a_module_name -->
            ```python
            import surely_not_a_module_name
            ```

            ```python
            y = x + 1
            ```

        ```bash
        echo not python
        ```

        ```python
        --8<-- "examples/quickstart.py"
        ```
        """)
    )
    blocks = extract_blocks(page)
    assert [(b.marker, b.code) for b in blocks[:4]] == [
        (None, "x = 1\n"),
        ("no-run", 'raise SystemExit("never runs")\n'),
        ("requires:", "import surely_not_a_module_name\n"),
        (None, "y = x + 1\n"),
    ]
    assert [b.code for b in runnable_blocks(page)][:2] == ["x = 1\n", "y = x + 1\n"]
    assert blocks[-1].code.strip() == (ROOT / "examples" / "quickstart.py").read_text(encoding="utf-8").strip()


def test_reference_page_covers_the_public_api() -> None:
    """Each public name is rendered by mkdocstrings: ``::: parmap`` or its own ``::: parmap.NAME``."""
    reference = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    directives = set(re.findall(r"^::: (\S+)", reference, re.MULTILINE))
    missing = [name for name in parmap.__all__ if "parmap" not in directives and f"parmap.{name}" not in directives]
    assert not missing, f"docs/reference.md does not render: {missing}"


def test_every_option_is_documented() -> None:
    """The README names every option; the user guide and the reference print the option
    tables from the schema at build time (`tests/test_options_schema.py` checks the tables)."""
    from parmap._options import OPTIONS

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [
        option.name for option in OPTIONS if f"`{option.name}`" not in readme and f"{option.name}=" not in readme
    ]
    assert not missing, f"README.md does not mention the option(s) {missing}"
    for name in ("docs/user-guide.md", "docs/reference.md"):
        text = (ROOT / name).read_text(encoding="utf-8")
        for scope in ("pool", "call"):
            block = f'from parmap._options import options_table\n\nprint(options_table("{scope}"))\n```'
            assert f'```python exec="on"\n{block}' in text, f"{name} does not print the {scope} options table"


def test_reference_lists_every_map_method_with_its_options() -> None:
    from parmap._options import MAP_METHODS

    reference = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    for method in MAP_METHODS:
        assert f"::: parmap.ParallelFunction.{method}\n" in reference, method
        assert f'print(method_reference("{method}"))' in reference, method


def test_every_map_method_is_documented() -> None:
    """Every public method of a decorated function appears in the README and in the user guide."""
    from parmap._decorator import _MapMethods

    methods = sorted(name for name in vars(_MapMethods) if not name.startswith("_"))
    assert "map" in methods
    for name in ("README.md", "docs/user-guide.md"):
        text = (ROOT / name).read_text(encoding="utf-8")
        missing = [method for method in methods if f".{method}(" not in text and f"`{method}`" not in text]
        assert not missing, f"{name} does not mention the method(s) {missing}"


#: The published documentation (mkdocs.yml's `site_url`) and the repository: the README is
#: also the package index's long description, where a relative link leads nowhere.
SITE_URL = "https://parmap-decorator.readthedocs.io/en/latest/"
REPOSITORY_URL = "https://github.com/parmap-decorator/parmap"


def _slug(heading: str) -> str:
    """A heading's anchor, as Python-Markdown's `toc` extension makes it."""
    text = re.sub(r"<[^>]+>|`", "", heading)
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def dead_readme_links(readme: str) -> list[str]:
    """The README's links that are relative, or point to no page, anchor or file."""
    dead = []
    for target in re.findall(r"\]\(([^)\s]+)\)|<(https?://[^>]+)>", readme):
        url = target[0] or target[1]
        path, _, anchor = url.partition("#")
        if url.startswith("#"):
            continue
        if url.startswith(SITE_URL):
            page = path[len(SITE_URL) :].strip("/") or "index"
            source = ROOT / "docs" / f"{page}.md"
            headings = (
                re.findall(r"^#+ (.+)$", source.read_text(encoding="utf-8"), re.MULTILINE) if source.exists() else []
            )
            if not source.exists() or (anchor and anchor not in {_slug(h) for h in headings}):
                dead.append(url)
        elif url.startswith((f"{REPOSITORY_URL}/blob/main/", f"{REPOSITORY_URL}/tree/main/")):
            if not (ROOT / url.split("/main/", 1)[1]).exists():
                dead.append(url)
        elif not url.startswith(("https://", "http://localhost")):
            dead.append(url)
    return dead


def test_readme_links_are_absolute_and_lead_somewhere() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.count(SITE_URL) >= 10
    assert not dead_readme_links(readme)
    assert dead_readme_links("[a](docs/index.md) [b](https://parmap-decorator.readthedocs.io/en/latest/nope/)") == [
        "docs/index.md",
        f"{SITE_URL}nope/",
    ]
    assert dead_readme_links(f"[c]({SITE_URL}configuration/#no-such-heading) [d]({REPOSITORY_URL}/blob/main/NOPE)")


def test_the_site_is_published_from_one_strict_build() -> None:
    """Read the Docs and the README's test command build the site with the same strict command."""
    command = "zensical build --strict --clean"
    readthedocs = (ROOT / ".readthedocs.yaml").read_text(encoding="utf-8")
    assert f"- {command}\n" in readthedocs
    assert "$READTHEDOCS_OUTPUT/html" in readthedocs
    tool, arguments = command.split(" ", 1)
    assert f'"$env_dir/bin/{tool}" {arguments}' in (ROOT / "scripts" / "test").read_text(encoding="utf-8")
    mkdocs = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert f"site_url: {SITE_URL}\n" in mkdocs
    assert "strict: true" in mkdocs


def test_readme_shows_the_two_setup_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/python examples/quickstart.py" in readme
    assert "\nscripts/test\n" in readme
    assert (ROOT / "examples" / "quickstart.py").exists()
    assert os.access(ROOT / "scripts" / "test", os.X_OK)
