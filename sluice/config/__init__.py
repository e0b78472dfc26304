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
    # Each section's docstring is its introduction in docs/params.md.
    seed: between(int, 0, 2**32 - 1) = 0  # the range numpy and scikit-learn accept
    """One seed for splits, resampling, initialisation and batches."""
    data: DataConfig = DataConfig()
    """The table: a built-in dataset or your CSV, its label and its column types."""
    clean: CleanConfig = CleanConfig()
    """What the clean stage does with duplicates, conflicting or missing labels, bad values and
    rare classes."""
    split: SplitConfig = SplitConfig()
    """The stratified train / validation / test split."""
    tune: TuneConfig = TuneConfig()
    """The Optuna study over `tune.space`; the best trial's values go to reports/tuned.yaml,
    which resample, train and finetune lay over params.yaml (a key the space searches is then
    taken from there)."""
    resample: ResampleConfig = ResampleConfig()
    """How the training split (only) is rebalanced before training."""
    train: TrainConfig = TrainConfig()
    """The base model: its family, its shape and how it is trained."""
    finetune: FinetuneConfig = FinetuneConfig()
    """Fine-tuning: training again from a trained model, with other params."""
    evaluate: EvaluateConfig = EvaluateConfig()
    """Test metrics, the scikit-learn references, calibration and the decision threshold, and a
    model's cost."""
    registry: RegistryConfig = RegistryConfig()
    """The MLflow experiment and registered model."""
    promote: PromoteConfig = PromoteConfig()
    """The gate a challenger must pass to become the champion."""


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
