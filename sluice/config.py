"""params.yaml, parsed once into frozen pydantic models that refuse unknown keys and bad values.

A mistake becomes one line naming the key, the value and what to do (``format_error``, in
``sluice.params_yaml`` with the YAML reader); the whole file is validated before a stage does any
work. The tune stage's choice is laid over these values by ``sluice.tuned``.
"""

from __future__ import annotations

import re
import typing
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sluice.errors import SluiceError
from sluice.params_yaml import format_error, yaml_loader

BUILTIN_DATASETS = ("digits-lt", "digits", "breast-cancer")
NET_MODULES = ("features", "head")  # the two top-level modules of every sluice network
LOWER_IS_BETTER = ("ece", "brier")  # calibration: a guard's tolerance is the largest increase
GATE_METRICS = ("roc_auc", "f1_macro", "balanced_accuracy", "accuracy", *LOWER_IS_BETTER)
_REGISTRY_URI = re.compile(r"models:/[^/@]+(@[\w-]+|/\d+)")


def between(kind: type, low: float, high: float) -> Any:
    """``kind`` limited to ``low..high`` (both included)."""
    return Annotated[kind, Field(ge=low, le=high)]


class Section(BaseModel):
    """A params section: frozen, strict types (no "3" for 3), unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DataConfig(Section):
    name: Literal["digits-lt", "digits", "breast-cancer"] = "digits-lt"
    path: str | None = None
    target: str | None = None
    imbalance_factor: between(float, 1.0, 1000.0) = 10.0
    columns: dict[str, Literal["numeric", "categorical"]] = {}
    drop_columns: list[str] = []
    max_categories: between(int, 2, 10_000) = 50

    @model_validator(mode="after")
    def _target_with_path(self) -> DataConfig:
        if self.path is not None and not self.target:
            _bad("data.target", None, "name the label column of data.path")
        return self

    @property
    def source(self) -> str:
        """Human name of the data, for messages and lineage."""
        return self.path or f"built-in dataset {self.name}"


class CleanConfig(Section):
    duplicates: Literal["keep", "drop"] = "keep"
    conflicting_labels: Literal["keep", "drop", "error"] = "keep"
    missing_target: Literal["drop", "error"] = "drop"
    bad_values: Literal["error", "missing"] = "error"
    label_case: Literal["merge", "keep"] = "merge"
    min_class_rows: between(int, 3, 1_000_000) = 10
    rare_classes: Literal["error", "drop"] = "error"


class SplitConfig(Section):
    val_size: between(float, 0.01, 0.9) = 0.2
    test_size: between(float, 0.01, 0.9) = 0.2

    @model_validator(mode="after")
    def _rows_left_to_train(self) -> SplitConfig:
        if self.val_size + self.test_size >= 0.95:
            _bad(
                "split.val_size", self.val_size, "val_size + test_size must leave rows to train on"
            )
        return self


RESAMPLE_METHODS = (
    "none",
    "random_over",
    "random_under",
    "smote",
    "borderline_smote",
    "adasyn",
    "smote_tomek",
    "smote_enn",
    "gan",
)


class ResampleConfig(Section):
    method: Literal[RESAMPLE_METHODS] = "random_over"
    k_neighbors: between(int, 1, 100) = 5
    class_weights: bool = False
    check_rows: between(int, 0, 1_000_000) = 1000

    class GanConfig(Section):
        """method gan: the class-conditional WGAN-GP of sluice.data.gan."""

        epochs: between(int, 1, 100_000) = 100
        batch_size: between(int, 2, 1_000_000) = 64
        latent_dim: between(int, 1, 4096) = 32
        hidden: between(int, 1, 65_536) = 128
        lr: between(float, 1e-7, 1.0) = 0.001
        critic_steps: between(int, 1, 100) = 3
        threads: between(int, 1, 1024) = 1

    gan: GanConfig = GanConfig()


TUNE_FAMILIES = ("tabm", "mlp", "linear", "cnn")  # the train.model values a study can choose
# What a study may choose for the imbalance: class weights, or a resampling method (not the
# GAN, whose settings the study does not search).
TUNE_IMBALANCE = (
    "none",
    "class_weights",
    *(m for m in RESAMPLE_METHODS if m not in ("none", "gan")),
)
# Bounds of each [low, high] range in tune.space (log-scale ranges start above zero).
_TUNE_RANGES = {
    "width": (1, 1_000_000),
    "depth": (1, 64),
    "dropout": (0.0, 0.95),
    "weight_decay": (1e-12, 1.0),
    "lr": (1e-7, 10.0),
}


class TuneSpace(Section):
    """What the tune stage searches: a list of choices, or a [low, high] range; null keeps the
    value of params.yaml (the key is not searched)."""

    model: list[Literal[TUNE_FAMILIES]] | None = ["tabm", "mlp", "linear"]
    width: list[int] | None = [32, 256]
    depth: list[int] | None = [1, 3]
    dropout: list[float] | None = [0.0, 0.5]
    weight_decay: list[float] | None = [1e-6, 1e-2]
    lr: list[float] | None = [3e-4, 1e-2]
    batch_size: list[between(int, 1, 1_000_000)] | None = [32, 64, 128, 256]
    imbalance: list[Literal[TUNE_IMBALANCE]] | None = [
        "none",
        "class_weights",
        "random_over",
        "smote",
    ]

    @field_validator("model", "imbalance", mode="before")
    @classmethod
    def _known_choices(cls, value: Any, info: ValidationInfo) -> Any:
        # Checked here, as the generic message cannot name choices inside ``list[...] | None``.
        known = {"model": TUNE_FAMILIES, "imbalance": TUNE_IMBALANCE}[info.field_name]
        for item in value if isinstance(value, list) else []:
            if item not in known:
                _bad(f"tune.space.{info.field_name}", item, f"use one of {', '.join(known)}")
        return value

    @model_validator(mode="after")
    def _ranges_and_choices(self) -> TuneSpace:
        for key, (low, high) in _TUNE_RANGES.items():
            value = getattr(self, key)
            if value is not None and not (len(value) == 2 and low <= value[0] <= value[1] <= high):
                _bad(f"tune.space.{key}", value, f"give [low, high] within {low:g}..{high:g}")
        for key in ("model", "batch_size", "imbalance"):
            value = getattr(self, key)
            if value is not None and (not value or len(set(value)) < len(value)):
                _bad(f"tune.space.{key}", value, "list distinct choices, or null to not search it")
        return self


class TuneConfig(Section):
    trials: between(int, 0, 1_000_000) = 20
    timeout: between(float, 0.0, 1e7) = 600.0
    metric: Literal["log_loss", "roc_auc", "f1_macro", "balanced_accuracy", "accuracy"] = "log_loss"
    startup_trials: between(int, 1, 10_000) = 5
    pruner: Literal["median", "none"] = "median"
    warmup_epochs: between(int, 0, 100_000) = 5
    storage: str | None = None
    space: TuneSpace = TuneSpace()


Widths = Annotated[list[between(int, 1, 1_000_000)], Field(min_length=1)]


class TrainConfig(Section):
    model: Literal["auto", "tabm", "mlp", "linear", "cnn"] = "auto"
    hidden: Widths = [256, 128]
    channels: Widths = [16, 32, 32]
    k: between(int, 1, 128) = 8
    bins: between(int, 0, 256) = 48
    d_embedding: between(int, 1, 256) = 16
    scaler: Literal["power", "standard"] = "power"
    cnn_grid: between(int, 1, 16) = 4
    dropout: between(float, 0.0, 0.95) = 0.3
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: between(float, 1e-7, 10.0) = 0.003
    weight_decay: between(float, 0.0, 1.0) = 0.0005
    schedule: Literal["onecycle", "cosine", "step", "none"] = "onecycle"
    epochs: between(int, 1, 100_000) = 40
    batch_size: between(int, 1, 1_000_000) = 64
    patience: between(int, 1, 100_000) = 10
    monitor: Literal["loss", "f1_macro"] = "loss"
    sampler: Literal["natural", "balanced"] = "natural"
    augment_shift: between(int, 0, 4) = 1
    threads: between(int, 1, 256) = 1
    checkpoint_every: between(int, 1, 100_000) = 5
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    deterministic: bool = False


class FinetuneConfig(Section):
    init_from: str = "models/base"
    data: Literal["train", "resampled"] = "train"
    sampler: Literal["natural", "balanced"] = "balanced"
    freeze: list[str] = ["features.0", "features.1"]
    reinit_head: bool = False
    lr: between(float, 1e-8, 10.0) = 0.0003
    epochs: between(int, 1, 100_000) = 15
    patience: between(int, 1, 100_000) = 5

    @model_validator(mode="after")
    def _known_modules_and_start(self) -> FinetuneConfig:
        for name in self.freeze:
            if name.split(".")[0] not in NET_MODULES:
                _bad("finetune.freeze", name, "name modules under features or head, e.g. features")
        _check_init_from(self.init_from)
        return self


def _check_init_from(init_from: str) -> None:
    """A registry URI (models:/name@alias or models:/name/3), models/base, or a bundle folder."""
    if init_from.startswith("models:/"):
        if not _REGISTRY_URI.fullmatch(init_from):
            _bad(
                "finetune.init_from", init_from, "use models:/<name>@<alias> or models:/<name>/<n>"
            )
    elif init_from != "models/base" and not Path(init_from).is_dir():
        _bad(
            "finetune.init_from",
            init_from,
            "no such model folder; use models/base, a bundle folder or models:/<name>@<alias>",
        )


class DecisionCosts(Section):
    fp: between(float, 0.0, 1e12) = 1.0  # cost of a false positive
    fn: between(float, 0.0, 1e12) = 5.0  # cost of a false negative

    @model_validator(mode="after")
    def _some_cost(self) -> DecisionCosts:
        if self.fp == 0 and self.fn == 0:
            _bad("evaluate.costs", self.model_dump(), "give fp or fn a cost above 0")
        return self


class EvaluateConfig(Section):
    bootstrap: between(int, 0, 100_000) = 1000
    reference: list[Literal["logreg", "hgb"]] = ["logreg", "hgb"]
    threshold: Literal["argmax", "f1", "youden", "cost"] = "f1"
    costs: DecisionCosts = DecisionCosts()


Name = Annotated[str, Field(pattern=r"\S")]  # not empty, not only spaces


with warnings.catch_warnings():
    # pydantic warns that `register` shadows ABCMeta.register, a class-level method only: on
    # an instance the name is the field.
    warnings.filterwarnings("ignore", message='Field name "register"')

    class RegistryConfig(Section):
        model_name: Name = "sluice-classifier"
        experiment: Name = "sluice"
        register: bool = True


Share = between(float, 0.0, 1.0)


class PromoteConfig(Section):
    metric: str = "roc_auc"
    min_delta: Share = 0.0
    guards: dict[str, Share] = {"f1_macro": 0.01, "balanced_accuracy": 0.01}
    floors: dict[str, Share] = {"roc_auc": 0.9}
    bootstrap: between(int, 100, 100_000) = 1000

    @model_validator(mode="after")
    def _gate_metrics(self) -> PromoteConfig:
        for key in [self.metric, *self.guards, *self.floors]:
            if key not in GATE_METRICS:
                _bad("promote", key, f"use one of {', '.join(GATE_METRICS)}")
        for where, keys in (("promote.metric", [self.metric]), ("promote.floors", self.floors)):
            for key in keys:
                if key in LOWER_IS_BETTER:
                    _bad(where, key, "ece and brier (lower is better) are for promote.guards")
        return self


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
    import yaml

    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=yaml_loader()) or {}
    except FileNotFoundError:
        raise SluiceError(f"{path} not found; run from the project root") from None
    except yaml.YAMLError as exc:
        raise SluiceError(f"{path} is not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise SluiceError(f"{path} must be a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise SluiceError(format_error(exc.errors()[0], Params)) from None


def _bad(key: str, value: Any, hint: str) -> typing.NoReturn:
    raise SluiceError(f"params.yaml: bad value {value!r} for '{key}'; {hint}")
