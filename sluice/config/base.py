"""What every params section shares: the pydantic base class, range helper and error line."""

from __future__ import annotations

import typing
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from sluice.errors import SluiceError, mask_secrets

BUILTIN_DATASETS = ("digits-lt", "digits", "breast-cancer", "reviews")
NET_MODULES = ("features", "head")  # the two top-level modules of every sluice network
LOWER_IS_BETTER = ("ece", "brier")  # calibration: a guard's tolerance is the largest increase
GATE_METRICS = ("roc_auc", "f1_macro", "balanced_accuracy", "accuracy", *LOWER_IS_BETTER)


def between(kind: type, low: float, high: float) -> Any:
    """``kind`` limited to ``low..high`` (both included)."""
    return Annotated[kind, Field(ge=low, le=high)]


class Section(BaseModel):
    """A params section: frozen, strict types (no "3" for 3), unknown keys refused.

    Each field is documented by the string literal under it (pydantic's attribute docstrings
    become its ``description``), which ``sluice.config.reference`` renders as docs/params.md.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, use_attribute_docstrings=True
    )


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}`` (lists stay values), with every URL's
    password masked (``mask_secrets``): what is logged as MLflow params, which every user of a
    shared store can read."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = mask_secrets(v) if isinstance(v, str) else v
    return out


def bad(key: str, value: Any, hint: str) -> typing.NoReturn:
    raise SluiceError(f"params.yaml: bad value {value!r} for '{key}'; {hint}")
