"""The one option schema (`parmap._options`) and everything that must agree with it.

The `TypedDict`s type checkers read, the job's record, the validation, the environment
variables, the docstrings that name the options and the tables and signatures printed on the
docs pages: each is derived from the schema or compared with it here, so an option added in
one place and forgotten in another fails a test.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

import parmap
from parmap import _options, _scope
from parmap._config import POOL_OPTIONS, MapOptions, validate_map_options
from parmap._decorator import OPTION_NAMES, MapOverrides, ParallelOptions, _MapMethods, _split_settings
from tests.test_docs import _slug

ROOT = Path(__file__).resolve().parents[1]
NAMES = [option.name for option in _options.OPTIONS]


def test_names_are_unique_and_scopes_known() -> None:
    assert len(NAMES) == len(set(NAMES))
    assert {option.scope for option in _options.OPTIONS} == set(_options.SCOPES)
    assert POOL_OPTIONS == _options.POOL_OPTIONS
    assert (*_options.POOL_OPTIONS, *_options.CALL_OPTIONS) == OPTION_NAMES
    assert _options.by_name("workers").scope == "pool"
    with pytest.raises(KeyError):
        _options.by_name("chunk_size")


def test_the_typed_dicts_hold_exactly_the_schemas_options() -> None:
    assert set(ParallelOptions.__annotations__) == set(NAMES)
    assert set(MapOverrides.__annotations__) == set(_options.CALL_OPTIONS)


def test_the_jobs_record_has_a_field_per_call_option_with_the_documented_default() -> None:
    fields = dataclasses.fields(MapOptions)
    assert [field.name for field in fields] == list(_options.CALL_OPTIONS)
    defaults = MapOptions()
    for option in _options.OPTIONS:
        if option.scope != "call" or option.name == "shared":
            continue
        # The documented default, evaluated, is the record's default.
        assert eval(_options.default_code(option)) == getattr(defaults, option.name), option.name
        assert validate_map_options({option.name: getattr(defaults, option.name)}) is not None


def test_the_documented_pool_defaults_are_the_pools() -> None:
    config, _ = _split_settings({"workers": 2})
    assert config.backend == eval(_options.default_code(_options.by_name("backend")))
    assert config.start_method == eval(_options.default_code(_options.by_name("start_method")))
    assert config.initargs == eval(_options.default_code(_options.by_name("initargs")))


def test_backend_only_options_and_environment_variables_come_from_the_schema() -> None:
    assert _scope.BACKEND_ONLY["address"] == ("dask",)
    assert _scope.BACKEND_ONLY["start_method"] == ("process",)
    assert set(_scope.BACKEND_ONLY) == {"start_method", "max_worker_memory", "address", "client", "ship_modules"}
    assert _scope.ENVIRONMENT_VARIABLES == {
        "PARMAP_WORKERS": "workers",
        "PARMAP_BACKEND": "backend",
        "PARMAP_START_METHOD": "start_method",
        "PARMAP_PROGRESS": "progress",
    }


@pytest.mark.parametrize("scope", _options.SCOPES)
def test_an_options_table_has_one_anchored_row_per_option(scope: str) -> None:
    table = _options.options_table(scope)
    rows = [line for line in table.splitlines() if line.startswith('| <span id="option-')]
    expected = [option.name for option in _options.OPTIONS if option.scope == scope]
    assert [re.search(r'id="option-([a-z_]+)"', row).group(1) for row in rows] == expected  # type: ignore[union-attr]
    assert all(row.count(" | ") == 3 for row in rows), "a cell holds an unescaped |"


def test_an_unknown_scope_or_method_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="scope must be one of"):
        _options.options_table("job")
    with pytest.raises(ValueError, match="method must be one of"):
        _options.method_reference("apply")


def test_the_environment_table_lists_the_variables() -> None:
    table = _options.environment_table()
    for variable, option in _scope.ENVIRONMENT_VARIABLES.items():
        assert f"| `{variable}` | `{option}` |" in table


def test_the_signature_of_parallel_spells_out_every_option() -> None:
    text = _options.signature(parmap.parallel, "parallel", options=tuple(NAMES))
    assert text.startswith("```python\nparallel(\n    function=None,\n    /,\n    *,\n    workers=None,\n")
    for option in _options.OPTIONS:
        assert f"\n    {option.name}={_options.default_code(option)},\n" in text
    assert "settings" not in text


def test_the_map_methods_are_every_public_method_and_list_every_call_option() -> None:
    public = {name for name in vars(_MapMethods) if not name.startswith("_")}
    assert public == {*_options.MAP_METHODS, "last_stats"}
    for method in _options.MAP_METHODS:
        text = _options.method_reference(method)
        assert f"task.{method}(\n    items,\n" in text
        for option in _options.CALL_OPTIONS:
            assert f"\n    {option}=" in text, (method, option)
            assert f"(#option-{option})" in text, (method, option)
        assert "overrides" not in text
    assert "`callback`, `error_callback`, and every" in _options.method_reference("map_async")


def test_the_docstrings_that_name_the_options_name_them_all() -> None:
    doc = parmap.parallel.__doc__ or ""
    missing = [name for name in NAMES if f"`{name}`" not in doc]
    assert not missing, f"parallel()'s docstring does not name {missing}"


def test_the_links_in_the_schema_lead_to_pages_and_headings() -> None:
    """The meanings link to pages under docs/ (the tables are printed on pages there)."""
    for option in _options.OPTIONS:
        for target in re.findall(r"\]\(([^)]+)\)", option.meaning + option.default):
            page, _, anchor = target.partition("#")
            source = ROOT / "docs" / page
            assert source.exists(), (option.name, target)
            headings = re.findall(r"^#+ (.+)$", source.read_text(encoding="utf-8"), re.MULTILINE)
            assert not anchor or anchor in {_slug(heading) for heading in headings}, (option.name, target)
