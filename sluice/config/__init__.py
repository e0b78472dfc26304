"""params.yaml, parsed once into frozen pydantic models that refuse unknown keys and bad values.

A mistake becomes one line naming the key, the value and what to do (``format_error``, in
``sluice.params_yaml`` with the YAML reader); the whole file is validated before a stage does any
work. The tune stage's choice is laid over these values by ``sluice.tuned``.
One module per group of sections; everything is importable from ``sluice.config``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from sluice.config.base import (
    BUILTIN_DATASETS,
    GATE_METRICS,
    LOWER_IS_BETTER,
    NET_MODULES,
    Section,
    between,
    flatten,
)
from sluice.config.data import (
    RESAMPLE_METHODS,
    CleanConfig,
    DataConfig,
    ResampleConfig,
    SplitConfig,
)
from sluice.config.evaluate import DecisionCosts, EvaluateConfig, PromoteConfig, RegistryConfig
from sluice.config.train import FinetuneConfig, TrainConfig
from sluice.config.tune import TUNE_FAMILIES, TUNE_IMBALANCE, TuneConfig, TuneSpace
from sluice.errors import SluiceError
from sluice.params_yaml import format_error, read_yaml

__all__ = [
    "BUILTIN_DATASETS",
    "GATE_METRICS",
    "LOWER_IS_BETTER",
    "NET_MODULES",
    "RESAMPLE_METHODS",
    "TUNE_FAMILIES",
    "TUNE_IMBALANCE",
    "CleanConfig",
    "DataConfig",
    "DecisionCosts",
    "EvaluateConfig",
    "FinetuneConfig",
    "Params",
    "PromoteConfig",
    "RegistryConfig",
    "ResampleConfig",
    "Section",
    "SplitConfig",
    "TrainConfig",
    "TuneConfig",
    "TuneSpace",
    "between",
    "flatten",
    "load_params",
]


class Params(Section):
    seed: between(int, 0, 2**32 - 1) = 0  # what numpy and scikit-learn accept
    data: DataConfig = DataConfig()
    clean: CleanConfig = CleanConfig()
    split: SplitConfig = SplitConfig()
    tune: TuneConfig = TuneConfig()
    resample: ResampleConfig = ResampleConfig()
    train: TrainConfig = TrainConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    registry: RegistryConfig = RegistryConfig()
    promote: PromoteConfig = PromoteConfig()


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate the whole params file, so a bad key fails before any stage works."""
    path = Path(path)
    try:
        raw = read_yaml(path) or {}
    except FileNotFoundError:
        raise SluiceError(f"{path} not found; run from the project root") from None
    if not isinstance(raw, dict):
        raise SluiceError(f"{path} must be a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise SluiceError(format_error(exc.errors()[0], Params)) from None
