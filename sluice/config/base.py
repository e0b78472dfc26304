"""What every params section shares: the pydantic base class, range helper and error line."""

from __future__ import annotations

import typing
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from sluice.errors import SluiceError

BUILTIN_DATASETS = ("digits-lt", "digits", "breast-cancer", "reviews")
NET_MODULES = ("features", "head")  # the two top-level modules of every sluice network
LOWER_IS_BETTER = ("ece", "brier")  # calibration: a guard's tolerance is the largest increase
GATE_METRICS = ("roc_auc", "f1_macro", "balanced_accuracy", "accuracy", *LOWER_IS_BETTER)


def between(kind: type, low: float, high: float) -> Any:
    """``kind`` limited to ``low..high`` (both included)."""
    return Annotated[kind, Field(ge=low, le=high)]


class Section(BaseModel):
    """A params section: frozen, strict types (no "3" for 3), unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def bad(key: str, value: Any, hint: str) -> typing.NoReturn:
    raise SluiceError(f"params.yaml: bad value {value!r} for '{key}'; {hint}")
