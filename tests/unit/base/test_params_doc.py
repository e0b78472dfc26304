"""docs/params.md is generated from the params models: current, complete, and params.yaml's keys."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field

from sluice.config import Params, between
from sluice.config.reference import describe_type, iter_fields, main, render_page, yaml_value
from sluice.params_yaml import read_yaml

ROOT = Path(__file__).resolve().parents[3]
PAGE = ROOT / "docs" / "params.md"


def yaml_keys(raw: dict, model: type[BaseModel], prefix: str = "") -> list[str]:
    """params.yaml's dotted keys, descending into a mapping only where the model has a section
    (``promote.guards`` is one key; its metrics are values)."""
    keys = []
    for name, value in raw.items():
        keys.append(f"{prefix}{name}")
        field = model.model_fields.get(name)
        section = field.annotation if field else None
        if isinstance(section, type) and issubclass(section, BaseModel) and value is not None:
            keys += yaml_keys(value, section, f"{prefix}{name}.")
    return keys


def test_the_params_page_is_current():
    fresh = render_page() == PAGE.read_text()
    assert fresh, "docs/params.md differs from the params models: run `make params-doc`"


def test_every_param_has_a_description():
    missing = [key for key, field in iter_fields(Params) if not (field.description or "").strip()]
    assert not missing, f"write a docstring under each of these fields in sluice/config/: {missing}"


def test_the_page_lists_exactly_the_keys_of_params_yaml():
    page = render_page()
    sections = re.findall(r"^## (\S+)$", page, flags=re.MULTILINE)
    rows = re.findall(r"^\| `([^`]+)` \|", page, flags=re.MULTILINE)
    on_page = [*sections, *(key for key in rows if key not in sections)]  # seed: both
    in_file = yaml_keys(read_yaml(ROOT / "params.yaml"), Params)
    assert len(on_page) == len(set(on_page))
    assert set(on_page) - set(in_file) == set(), "on docs/params.md, not in params.yaml"
    assert set(in_file) - set(on_page) == set(), "in params.yaml, not on docs/params.md"


def test_check_fails_on_a_stale_page_and_passes_once_written(tmp_path):
    page = tmp_path / "params.md"
    page.write_text("# params.yaml reference\n")
    with pytest.raises(SystemExit, match=r"params\.md is stale: run `make params-doc`"):
        main(["--check", "--output", str(page)])
    main(["--output", str(page)])
    main(["--check", "--output", str(page)])
    assert page.read_text() == render_page()


@pytest.mark.parametrize(
    ("annotation", "words"),
    [
        (between(int, 1, 8), "integer in [1, 8]"),
        (between(float, 0.0, 1e6) | None, "number in [0, 1e+06] or null"),
        (Literal["keep", "drop"], "`keep` | `drop`"),
        (list[Literal["a", "b"]] | None, "list of `a` | `b` or null"),
        (
            Annotated[list[between(int, 1, 9)], Field(min_length=1)],
            "list of integer in [1, 9] (at least 1)",
        ),
        (dict[str, between(float, 0.0, 1.0)], "mapping of string to number in [0, 1]"),
        (bool, "`true` | `false`"),
    ],
)
def test_types_are_described_with_their_choices_and_bounds(annotation, words):
    assert describe_type(annotation) == words


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "null"),
        (False, "false"),
        ([1e-06, 0.01], "[1e-06, 0.01]"),
        ({"f1_macro": 0.01}, "{f1_macro: 0.01}"),
        ({}, "{}"),
        ("models/base", "models/base"),
    ],
)
def test_defaults_are_written_as_yaml(value, text):
    assert yaml_value(value) == text
