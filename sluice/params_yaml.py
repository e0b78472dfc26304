"""Reading params files as DVC does (YAML 1.2); pydantic's errors as one line to act on."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Annotated, Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from sluice.errors import SluiceError


def read_yaml(path: Path) -> Any:
    """A YAML file read as DVC reads params files: ruamel.yaml's safe loader, YAML 1.2 (``yes``
    and ``on`` are strings, ``1e-06`` a number; a key given twice is an error). Raises
    FileNotFoundError as open does, and SluiceError in one line for text that is not YAML."""
    from ruamel.yaml import YAML, YAMLError

    text = path.read_text()
    try:
        return YAML(typ="safe").load(text)
    except YAMLError as exc:
        raise SluiceError(f"{path} is not valid YAML: {exc}".replace("\n", " ")) from None


def format_error(err: dict[str, Any], model: type[BaseModel]) -> str:
    """One line for pydantic's first error: the key, the bad value and what to do."""
    loc = err["loc"]
    key = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc).replace(".[", "[")
    if err["type"] == "extra_forbidden":
        known = _owner(model, loc[:-1])
        names = ", ".join(sorted(known.model_fields)) if known else ""
        return f"params.yaml: unknown key '{key}'; known keys: {names}"
    value = err.get("input")
    if err["type"] in _BOUNDS and _field(model, loc)[0] is float:
        value = float(value)  # as the section holds it: 90 is the number 90.0
    return f"params.yaml: bad value {value!r} for '{key}'; {_hint(err, model)}"


_TYPE_HINTS = {
    "float_type": "expected a number",
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "too_short": "give at least one value",
    "string_pattern_mismatch": "give a non-empty name",
}
_BOUNDS = ("greater_than_equal", "less_than_equal")


def _hint(err: dict[str, Any], model: type[BaseModel]) -> str:
    kind = err["type"]
    if kind in _TYPE_HINTS:
        return _TYPE_HINTS[kind]
    annotation, meta = _field(model, err["loc"])
    if kind == "literal_error":
        return f"use one of {', '.join(map(str, typing.get_args(annotation)))}"
    if kind in _BOUNDS:
        low = next((m.ge for m in meta if isinstance(m, annotated_types.Ge)), None)
        high = next((m.le for m in meta if isinstance(m, annotated_types.Le)), None)
        if low is not None and high is not None:
            return f"use a value between {low:g} and {high:g}"
    return err["msg"]


def _owner(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The section model at ``loc`` (``()`` is the whole file)."""
    annotation, _ = _field(model, loc)
    return (
        annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    )


def _field(model: type[BaseModel], loc: tuple) -> tuple[Any, list[Any]]:
    """The annotation and constraint metadata of the value at ``loc``, walking into sections,
    list items and mapping values."""
    annotation: Any = model
    meta: list[Any] = []
    for part in loc:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            info: FieldInfo = annotation.model_fields[part]
            annotation, meta = info.annotation, list(info.metadata)
        else:  # list[X] item or dict[str, X] value
            annotation, meta = _unwrap(typing.get_args(annotation)[-1])
    annotation = _unwrap_optional(annotation)
    if not meta:  # ``Annotated[X, Field(...)] | None``: the bounds sit inside the union
        annotation, meta = _unwrap(annotation)
    return annotation, meta


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """``Annotated[X, Field(...)]`` -> (X, its constraints)."""
    if typing.get_origin(annotation) is Annotated:
        inner, *extra = typing.get_args(annotation)
        meta = [m for e in extra for m in (e.metadata if isinstance(e, FieldInfo) else [e])]
        return inner, meta
    return annotation, []


def _unwrap_optional(annotation: Any) -> Any:
    """``X | None`` -> X."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    return annotation
