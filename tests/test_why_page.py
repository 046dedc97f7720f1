"""The "Why parmap" page (docs/why-parmap.md) backs every parmap claim with a test that exists.

The page compares parmap with six peers in one table. Each row's parmap cell links at least
one test of this suite, as a Markdown link whose text is the test's name and whose URL is
the test file on GitHub (the docs site cannot link outside docs/, and the page must work
once published). The checker below reads the page, finds each such link, and looks the
test up with ``ast`` in that file: a module-level test function, or a method of a test
class. Renaming or deleting a test that the page cites makes this file fail.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "why-parmap.md"
TESTS = ROOT / "tests"

#: Where every linked test file must live: the repository's main branch on GitHub.
TEST_URL = "https://github.com/parmap-decorator/parmap/blob/main/tests/"
REPOSITORY_URL = "https://github.com/parmap-decorator/parmap/"

#: Each peer, and a string only its column's header contains.
PEERS = {
    "multiprocessing.Pool": "multiprocessing.Pool",
    "concurrent.futures": "ProcessPoolExecutor",
    "joblib": "joblib",
    "mpire": "mpire",
    "pebble": "pebble",
    "tqdm.contrib.concurrent": "process_map",
}

#: The longest line a code block on a docs page may have.
MAX_CODE_LINE = 80

_LINK = re.compile(r"\[(?P<text>[^\]]+)\]\((?P<url>[^)\s]+)\)")
_CELL_SEPARATOR = re.compile(r"(?<!\\)\|")
_FENCE = re.compile(r"^(?P<indent>[ \t]*)```[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.MULTILINE | re.DOTALL)


def markdown_links(text: str) -> list[tuple[str, str]]:
    """Every inline Markdown link of ``text``, as (link text, URL)."""
    return [(match.group("text"), match.group("url")) for match in _LINK.finditer(text)]


def _is_test_link(text: str, url: str) -> bool:
    """A link that cites a test: by its text, or by pointing into the repository's tests."""
    return text.strip("`").startswith("test_") or (url.startswith(REPOSITORY_URL) and "/tests/" in url)


def cited_tests(text: str) -> list[tuple[str, str]]:
    """The links of ``text`` that cite a test."""
    return [(name, url) for name, url in markdown_links(text) if _is_test_link(name, url)]


def defined_tests(path: Path) -> set[str]:
    """The tests ``path`` defines: module-level functions and methods of classes, nested classes too.

    Functions defined inside a function (helpers, tasks) are not tests pytest collects.
    """
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                found.add(node.name)
            elif isinstance(node, ast.ClassDef):
                visit(node.body)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body)
    return found


def dead_test_links(text: str, tests: Path = TESTS) -> list[str]:
    """Why each test link of ``text`` leads to no test, one line per bad link ([] when all are good)."""
    problems: list[str] = []
    defined: dict[Path, set[str]] = {}
    for raw_name, url in cited_tests(text):
        name = raw_name.strip("`")
        if not url.startswith(TEST_URL):
            problems.append(f"[{raw_name}]({url}): the URL does not start with {TEST_URL}")
            continue
        relative = url[len(TEST_URL) :].split("#", 1)[0]
        path = tests / relative
        if "/" in relative or not relative.endswith(".py") or not path.is_file():
            problems.append(f"[{raw_name}]({url}): tests/{relative} is not a test file of this repository")
            continue
        if path not in defined:
            defined[path] = defined_tests(path)
        if name not in defined[path]:
            problems.append(f"[{raw_name}]({url}): tests/{relative} defines no test {name}")
    return problems


def split_row(line: str) -> list[str]:
    """The cells of one Markdown table row (a ``\\|`` inside a cell is not a separator)."""
    inner = line.strip()
    inner = inner.removeprefix("|").removesuffix("|")
    return [cell.strip() for cell in _CELL_SEPARATOR.split(inner)]


def first_table(text: str) -> tuple[list[str], list[list[str]]]:
    """The header and the body rows of the first Markdown table of ``text``."""
    lines = text.splitlines()
    for number, line in enumerate(lines[:-1]):
        if line.lstrip().startswith("|") and re.fullmatch(r"\s*\|?(\s*:?-+:?\s*\|)+\s*:?-*:?\s*", lines[number + 1]):
            header = split_row(line)
            rows: list[list[str]] = []
            for body_line in lines[number + 2 :]:
                if not body_line.lstrip().startswith("|"):
                    break
                rows.append(split_row(body_line))
            return header, rows
    raise AssertionError("the page has no Markdown table")


def column_of(header: list[str], needle: str) -> int:
    """The index of the one column whose header contains ``needle`` (backticks ignored)."""
    matches = [index for index, cell in enumerate(header) if needle in cell.replace("`", "")]
    assert len(matches) == 1, f"{len(matches)} columns of {header} name {needle!r}"
    return matches[0]


def parmap_column(header: list[str]) -> int:
    matches = [index for index, cell in enumerate(header) if cell.replace("`", "").strip() == "parmap"]
    assert len(matches) == 1, f"{len(matches)} columns of {header} are headed 'parmap'"
    return matches[0]


def rows_without_a_test(text: str) -> list[str]:
    """The behaviours (first cells) of the table's rows whose parmap cell links no test."""
    header, rows = first_table(text)
    column = parmap_column(header)
    bad: list[str] = []
    for row in rows:
        assert len(row) == len(header), f"the row {row[0]!r} has {len(row)} cells, the header {len(header)}"
        if not cited_tests(row[column]):
            bad.append(row[0])
    return bad


# --------------------------------------------------------------------------- the page


@pytest.fixture(scope="module")
def page() -> str:
    return PAGE.read_text(encoding="utf-8")


def test_the_table_has_a_column_for_parmap_and_each_peer(page: str) -> None:
    header, rows = first_table(page)
    columns = {parmap_column(header)} | {column_of(header, needle) for needle in PEERS.values()}
    assert len(columns) == 1 + len(PEERS), f"a header names two libraries: {header}"
    assert 0 not in columns, "the first column names the behaviours"
    assert len(rows) >= 10


def test_every_row_has_a_parmap_cell_that_links_a_test(page: str) -> None:
    assert rows_without_a_test(page) == []


def test_every_linked_test_exists(page: str) -> None:
    links = cited_tests(page)
    assert len(links) >= 20
    assert dead_test_links(page) == []


def test_the_page_links_the_benchmarks(page: str) -> None:
    assert ("benchmarks", "benchmarks.md") in markdown_links(page)
    for text, url in markdown_links(page):
        if not url.startswith(("https://", "http://", "#")):
            target = url.split("#", 1)[0]
            assert (PAGE.parent / target).is_file(), f"[{text}]({url}) leads to no page"


def test_code_lines_are_short(page: str) -> None:
    long = [
        line
        for match in _FENCE.finditer(page)
        for line in match.group("body").splitlines()
        if len(line) > MAX_CODE_LINE
    ]
    assert long == []


# --------------------------------------------------------------------------- the checker itself

_GOOD = f"[test_plain_call_runs_here_unchanged]({TEST_URL}test_api.py)"


def test_the_checker_accepts_a_good_link() -> None:
    assert cited_tests(f"See {_GOOD}.") == [("test_plain_call_runs_here_unchanged", f"{TEST_URL}test_api.py")]
    assert dead_test_links(f"See {_GOOD} and [`test_map_in_input_order`]({TEST_URL}test_api.py).") == []


@pytest.mark.parametrize(
    ("link", "reason"),
    [
        pytest.param(f"[test_no_such_test_anywhere]({TEST_URL}test_api.py)", "defines no test", id="missing test"),
        pytest.param(f"[test_plain_call_runs_here_unchanged]({TEST_URL}test_nope.py)", "not a test file", id="no file"),
        pytest.param(f"[test_map_in_input_order]({TEST_URL}test_faults.py)", "defines no test", id="wrong file"),
        pytest.param("[test_plain_call_runs_here_unchanged](../tests/test_api.py)", "does not start", id="relative"),
        pytest.param(
            f"[test_plain_call_runs_here_unchanged]({REPOSITORY_URL}blob/dev/tests/test_api.py)",
            "does not start",
            id="other branch",
        ),
        pytest.param(f"[Shape]({TEST_URL}test_api.py)", "defines no test", id="a class, not a test"),
        pytest.param(
            f"[test_plain_call_runs_here_unchanged]({TEST_URL}typing/map_types.py)", "not a test", id="subdir"
        ),
    ],
)
def test_the_checker_fails_a_link_to_a_missing_test(link: str, reason: str) -> None:
    made_up = f"# A page\n\nProven by {_GOOD} and {link}.\n"
    problems = dead_test_links(made_up)
    assert len(problems) == 1, problems
    assert reason in problems[0]


def test_the_checker_fails_a_row_without_a_test() -> None:
    made_up = textwrap.dedent(f"""\
        | behaviour | parmap | joblib |
        |---|---|---|
        | proven | yes<br>{_GOOD} | no |
        | only claimed | yes, see [the guide](user-guide.md) | no |
        | a test in another column | yes | {_GOOD} |
        """)
    assert rows_without_a_test(made_up) == ["only claimed", "a test in another column"]
    header, _ = first_table(made_up)
    with pytest.raises(AssertionError, match="0 columns"):
        column_of(header, "mpire")


def test_the_function_finder_sees_module_functions_methods_and_async_tests(tmp_path: Path) -> None:
    source = tmp_path / "test_sample.py"
    source.write_text(
        textwrap.dedent("""\
            def test_plain() -> None:
                def test_helper_inside() -> None: ...

            async def test_awaiting() -> None: ...

            def helper() -> None: ...

            class TestGroup:
                def test_method(self) -> None: ...

                async def test_async_method(self) -> None: ...

                class TestInner:
                    def test_nested_method(self) -> None: ...
            """)
    )
    assert defined_tests(source) == {
        "test_plain",
        "test_awaiting",
        "test_method",
        "test_async_method",
        "test_nested_method",
    }
    url = TEST_URL + source.name
    assert dead_test_links(f"[test_async_method]({url}) [test_nested_method]({url})", tests=tmp_path) == []
    assert dead_test_links(f"[test_helper_inside]({url})", tests=tmp_path) != []
    assert dead_test_links(f"[helper]({url})", tests=tmp_path) != []
