"""Docstrings are Markdown in Google style, as mkdocstrings renders them: no reStructuredText.

A reST role (`:func:`...``), a double-backtick literal, a `::` literal-block marker or a
directive (`.. note::`) would show as raw text on the API reference page. Every docstring of
the package is checked (modules, classes, functions and methods, private ones included: one
style throughout), and so is every docstring a user reaches from `parmap`'s public names,
which includes the map methods a `ParallelFunction` inherits.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import parmap

PACKAGE = Path(parmap.__file__).resolve().parent

#: What reStructuredText looks like in a docstring, with what it should be in Markdown.
_REST_MARKUP = {
    "a reST role (use `name` or [name][parmap.name])": re.compile(r":(?:py:)?[a-z]+:`"),
    "a double-backtick literal (use single backticks)": re.compile(r"(?<!`)``(?!`)"),
    "a '::' literal block (use a fenced code block)": re.compile(r"::[ \t]*$", re.MULTILINE),
    "a reST directive (use an admonition or plain text)": re.compile(r"^[ \t]*\.\. [a-z-]+::", re.MULTILINE),
}


def rest_markup(docstring: str) -> list[tuple[str, str]]:
    """What reST `docstring` holds: the kind of each markup, and the line it is on."""
    found = []
    for kind, pattern in _REST_MARKUP.items():
        for match in pattern.finditer(docstring):
            start = docstring.rfind("\n", 0, match.start()) + 1
            end = docstring.find("\n", match.end())
            found.append((kind, docstring[start : end if end >= 0 else None].strip()))
    return found


def _package_docstrings() -> Iterator[tuple[str, str]]:
    """(where, docstring) for every module, class and function of the package's source."""
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nodes: list[ast.AST] = [tree, *ast.walk(tree)]
        for node in nodes:
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                docstring = ast.get_docstring(node, clean=False)
                if docstring:
                    name = getattr(node, "name", "<module>")
                    yield f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', 1)} {name}", docstring


def _public_docstrings() -> Iterator[tuple[str, str]]:
    """(name, docstring) for `parmap`, each public name and each public member of a class."""
    yield "parmap", parmap.__doc__ or ""
    yield "parmap.errors", parmap.errors.__doc__ or ""
    for name in parmap.__all__:
        value = getattr(parmap, name)
        yield f"parmap.{name}", inspect.getdoc(value) or ""
        if inspect.isclass(value):
            for member, attribute in inspect.getmembers(value):
                if not member.startswith("_") and (inspect.isroutine(attribute) or isinstance(attribute, property)):
                    yield f"parmap.{name}.{member}", inspect.getdoc(attribute) or ""


def test_the_detector_finds_each_kind_of_rest_markup() -> None:
    docstring = "Like :meth:`map`, returning ``list``.\n\nExample::\n\n    f.map(x)\n\n.. note::\n    Careful.\n"
    assert [kind for kind, _ in rest_markup(docstring)] == [
        "a reST role (use `name` or [name][parmap.name])",
        "a double-backtick literal (use single backticks)",
        "a double-backtick literal (use single backticks)",
        "a '::' literal block (use a fenced code block)",
        "a '::' literal block (use a fenced code block)",
        "a reST directive (use an admonition or plain text)",
    ]
    markdown = "Like [`map`][parmap.ParallelFunction.map], returning `list`:\n\n```python\nf.map(x)\n```\n"
    assert rest_markup(markdown) == []


@pytest.mark.parametrize("source", [_package_docstrings, _public_docstrings], ids=["package", "public"])
def test_docstrings_hold_no_restructuredtext(source: object) -> None:
    assert callable(source)
    docstrings = list(source())
    assert len(docstrings) > 40
    offending = [
        f"{where}: {kind}: {line!r}" for where, docstring in docstrings for kind, line in rest_markup(docstring)
    ]
    assert not offending, "reStructuredText in docstrings (they render as Markdown):\n" + "\n".join(offending)
