"""docs/params.md, the reference of every params.yaml key, rendered from the pydantic models.

Each field's description is the docstring under it in ``sluice/config/``; its type, allowed values
and bounds come from its annotation, its default from the model. ``python -m
sluice.config.reference`` writes the page; ``--check`` exits 1 when the page is stale.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from sluice.config import Params

PAGE = Path("docs/params.md")
REGENERATE = "make params-doc"
TITLE = "# params.yaml reference"
INTRO = (
    "Every key of [`params.yaml`](../params.yaml), one section per params.yaml section, with its "
    "type or allowed values, its default and what it does (`dvc exp run -S key=value` overrides "
    "any). This page is generated from the pydantic models in `sluice/config/` (the docstring "
    "under each field): do not edit it, change the field and run `{regenerate}` "
    "(`python -m sluice.config.reference`); a unit test fails while the page is stale."
)
HEADER = "| key | type / allowed values | default | description |\n|---|---|---|---|"


def iter_fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    """Every field of ``model`` as (dotted key, field), a nested section's own keys after it."""
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        yield key, field
        if _is_section(field.annotation):
            yield from iter_fields(field.annotation, f"{key}.")


def describe_type(annotation: Any, metadata: typing.Sequence[Any] = ()) -> str:
    """The type in words: ``Literal`` choices, ``between()`` bounds, lists, mappings and null,
    e.g. ``integer in [1, 8] or null``."""
    if typing.get_origin(annotation) is Annotated:
        inner, *extra = typing.get_args(annotation)
        return describe_type(inner, [*metadata, *extra])
    metadata = [
        m for item in metadata for m in (item.metadata if isinstance(item, FieldInfo) else [item])
    ]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        named = [describe_type(a) for a in args if a is not type(None)]
        return " or ".join(named) + (" or null" if type(None) in args else "")
    if origin is Literal:
        return " | ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {describe_type(args[0])}" + _constraints(metadata)
    if origin is dict:
        return f"mapping of {describe_type(args[0])} to {describe_type(args[1])}"
    if _is_section(annotation):
        return "section (keys below)"
    names = {int: "integer", float: "number", str: "string", bool: "`true` | `false`"}
    if annotation not in names:
        raise TypeError(f"no words for the type {annotation!r}: add them to describe_type")
    return names[annotation] + _constraints(metadata)


def yaml_value(value: Any) -> str:
    """``value`` in YAML flow style, as params.yaml writes it (``null``, ``[a, b]``, ``{}``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def render_page() -> str:
    """The whole page: title, introduction, then one table per params.yaml section."""
    parts = [TITLE, INTRO.format(regenerate=REGENERATE)]
    for name, field in Params.model_fields.items():
        parts.append(f"## {name}")
        if _is_section(field.annotation):
            parts.append(_one_line(field.description))
            rows = iter_fields(field.annotation, f"{name}.")
        else:
            rows = iter([(name, field)])
        parts.append("\n".join([HEADER, *(_row(key, f) for key, f in rows)]))
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Write docs/params.md; with ``--check``, exit 1 in one line if it differs from the code."""
    parser = argparse.ArgumentParser(prog="python -m sluice.config.reference", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the page is stale")
    parser.add_argument("--output", type=Path, default=PAGE, help=f"default: {PAGE}")
    args = parser.parse_args(argv)
    page = render_page()
    if args.check:
        current = args.output.read_text() if args.output.is_file() else None
        if current != page:
            raise SystemExit(f"{args.output} is stale: run `{REGENERATE}`")
        return
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(page)


def _row(key: str, field: FieldInfo) -> str:
    nested = _is_section(field.annotation)
    default = "" if nested else f"`{yaml_value(field.get_default(call_default_factory=True))}`"
    cells = [f"`{key}`", describe_type(field.annotation, field.metadata), default]
    cells.append(_one_line(field.description))
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _constraints(metadata: typing.Sequence[Any]) -> str:
    """`` in [low, high]`` from ``between()``, `` (at least n)`` for lists, a pattern."""
    found = {
        k: getattr(m, k)
        for m in metadata
        for k in ("ge", "le", "min_length", "pattern")
        if getattr(m, k, None) is not None
    }
    text = ""
    if "ge" in found or "le" in found:
        text += f" in [{_number(found.get('ge', '-inf'))}, {_number(found.get('le', 'inf'))}]"
    if "min_length" in found:
        text += f" (at least {found['min_length']})"
    if "pattern" in found:
        text += f" matching `{found['pattern']}`"
    return text


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


if __name__ == "__main__":
    main()
