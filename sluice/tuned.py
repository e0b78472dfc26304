"""The tune stage's choice (reports/tuned.yaml) laid over params.yaml: what resample, train and
finetune use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from sluice.config import Params, load_params
from sluice.errors import SluiceError
from sluice.params_yaml import format_error, read_yaml

TUNED_PATH = Path("reports/tuned.yaml")  # the tune stage's choice (a DVC output)
TUNED_SECTIONS = ("resample", "train")  # the sections a choice may set


def apply_tuned(params: Params, tuned: dict[str, Any], source: str = str(TUNED_PATH)) -> Params:
    """``params`` with the tune stage's choice on top: ``{"train": {"lr": ...}, ...}``.

    The one way stages and tuning trials turn a choice into the values they use; ``{}`` or
    empty sections (tuning skipped) leave ``params`` as it is. A nested section of the choice
    (``{"train": {"text": {"embedding": 64}}}``) sets only the keys it names. The result is
    validated again.
    """
    raw = params.model_dump()
    for section, values in tuned.items():
        if section not in TUNED_SECTIONS or not isinstance(values, dict):
            raise SluiceError(
                f"{source}: unexpected entry {section!r} (a choice sets only "
                f"{', '.join(TUNED_SECTIONS)}); re-run the tune stage: dvc repro -f tune"
            )
        raw[section] = _merged(raw[section], values)
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        message = format_error(exc.errors()[0], Params).removeprefix("params.yaml: ")
        raise SluiceError(f"{source}: {message}") from None


def _merged(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``values`` on top, mapping into mapping (lists and values replace)."""
    out = dict(base)
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def load_tuned_params(
    path: str | Path = "params.yaml", tuned_path: str | Path = TUNED_PATH
) -> Params:
    """params.yaml with the tune stage's choice applied: what resample, train and finetune use.

    Without a choice file (the tune stage has not run, e.g. a stage run by hand) params.yaml
    is used as it is.
    """
    params = load_params(path)
    tuned_path = Path(tuned_path)
    if not tuned_path.exists():
        return params
    tuned = read_yaml(tuned_path) or {}
    if not isinstance(tuned, dict):
        raise SluiceError(f"{tuned_path} must be a mapping of sections; run: dvc repro -f tune")
    effective = apply_tuned(params, tuned, str(tuned_path))
    _say_what_the_choice_overrides(params, tuned, tuned_path)
    return effective


def _say_what_the_choice_overrides(params: Params, tuned: dict, tuned_path: Path) -> None:
    """Log the keys the choice changes; a warning for those params.yaml sets away from their
    default (`dvc exp run -S train.lr=...` does not win over a key the study searches)."""
    import logging

    chosen, explicit = [], []
    for section, values in tuned.items():
        for key, now, value, default in _changes(section, getattr(params, section), values):
            line = f"{key} {now!r} -> {value!r}"
            (explicit if now != default else chosen).append(line)
    log = logging.getLogger("sluice.tune")
    hint = "tune.space.<key>: null keeps params.yaml's value"
    if explicit:
        log.warning(
            "%s (the tune stage's choice) replaces what params.yaml sets: %s; the study searches "
            "these keys (%s)",
            tuned_path,
            ", ".join(explicit),
            hint,
        )
    if chosen:
        log.info("%s (the tune stage's choice): %s (%s)", tuned_path, ", ".join(chosen), hint)


def _changes(prefix: str, current: BaseModel, values: dict[str, Any]) -> Iterator[tuple]:
    """``(dotted key, params value, chosen value, default)`` of each key the choice changes,
    nested sections (``train.text``) key by key."""
    for key, value in values.items():
        now = getattr(current, key)
        if isinstance(value, dict) and isinstance(now, BaseModel):
            yield from _changes(f"{prefix}.{key}", now, value)
        elif now != value:
            yield f"{prefix}.{key}", now, value, type(current).model_fields[key].default
