"""params.yaml, parsed once into frozen dataclasses that reject unknown keys and bad values."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sluice.errors import SluiceError

BUILTIN_DATASETS = ("digits-lt", "digits", "breast-cancer")


@dataclass(frozen=True)
class DataConfig:
    name: Literal["digits-lt", "digits", "breast-cancer"] = "digits-lt"
    path: str | None = None
    target: str | None = None
    imbalance_factor: float = 10.0
    columns: dict[str, str] = field(default_factory=dict)
    drop_columns: list[str] = field(default_factory=list)
    max_categories: int = 50

    def __post_init__(self) -> None:
        if self.path is not None and not self.target:
            _bad("data.target", None, "name the label column of data.path")
        _check_range("data.imbalance_factor", self.imbalance_factor, 1.0, 1000.0)
        _check_range("data.max_categories", self.max_categories, 2, 10_000)
        for col, kind in self.columns.items():
            if kind not in ("numeric", "categorical"):
                _bad(f"data.columns.{col}", kind, "use numeric or categorical")

    @property
    def source(self) -> str:
        """Human name of the data, for messages and lineage."""
        return self.path or f"built-in dataset {self.name}"


@dataclass(frozen=True)
class CleanConfig:
    duplicates: Literal["drop", "keep"] = "drop"
    conflicting_labels: Literal["drop", "error"] = "drop"
    missing_target: Literal["drop", "error"] = "drop"
    bad_values: Literal["error", "missing"] = "error"
    label_case: Literal["merge", "keep"] = "merge"
    min_class_rows: int = 10
    rare_classes: Literal["error", "drop"] = "error"

    def __post_init__(self) -> None:
        _check_range("clean.min_class_rows", self.min_class_rows, 3, 1_000_000)


@dataclass(frozen=True)
class SplitConfig:
    val_size: float = 0.2
    test_size: float = 0.2

    def __post_init__(self) -> None:
        _check_range("split.val_size", self.val_size, 0.01, 0.9)
        _check_range("split.test_size", self.test_size, 0.01, 0.9)
        if self.val_size + self.test_size >= 0.95:
            _bad(
                "split.val_size", self.val_size, "val_size + test_size must leave rows to train on"
            )


@dataclass(frozen=True)
class ResampleConfig:
    method: Literal[
        "none",
        "random_over",
        "random_under",
        "smote",
        "borderline_smote",
        "adasyn",
        "smote_tomek",
        "smote_enn",
    ] = "random_over"
    k_neighbors: int = 5
    class_weights: bool = False

    def __post_init__(self) -> None:
        _check_range("resample.k_neighbors", self.k_neighbors, 1, 100)


@dataclass(frozen=True)
class TrainConfig:
    model: Literal["auto", "mlp", "cnn"] = "auto"
    hidden: list[int] = field(default_factory=lambda: [64, 32])
    channels: list[int] = field(default_factory=lambda: [16, 32, 32])
    scaler: Literal["power", "standard"] = "power"
    cnn_grid: int = 4
    dropout: float = 0.3
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = 0.003
    weight_decay: float = 0.0005
    schedule: Literal["onecycle", "cosine", "step", "none"] = "onecycle"
    epochs: int = 40
    batch_size: int = 64
    patience: int = 10
    monitor: Literal["loss", "f1_macro"] = "loss"
    sampler: Literal["natural", "balanced"] = "natural"
    augment_shift: int = 1
    threads: int = 1
    checkpoint_every: int = 5

    def __post_init__(self) -> None:
        _check_range("train.lr", self.lr, 1e-7, 10.0)
        _check_range("train.epochs", self.epochs, 1, 100_000)
        _check_range("train.batch_size", self.batch_size, 1, 1_000_000)
        _check_range("train.dropout", self.dropout, 0.0, 0.95)
        _check_range("train.weight_decay", self.weight_decay, 0.0, 1.0)
        _check_range("train.patience", self.patience, 1, 100_000)
        _check_range("train.augment_shift", self.augment_shift, 0, 4)
        _check_range("train.threads", self.threads, 1, 256)
        _check_range("train.checkpoint_every", self.checkpoint_every, 1, 100_000)
        _check_range("train.cnn_grid", self.cnn_grid, 1, 16)
        if not self.hidden or min(self.hidden) < 1:
            _bad("train.hidden", self.hidden, "give a list of positive layer widths")
        if not self.channels or min(self.channels) < 1:
            _bad("train.channels", self.channels, "give a list of positive channel counts")


@dataclass(frozen=True)
class FinetuneConfig:
    init_from: str = "models/base"
    data: Literal["train", "resampled"] = "train"
    sampler: Literal["natural", "balanced"] = "balanced"
    freeze: list[str] = field(default_factory=lambda: ["features.0", "features.1"])
    reinit_head: bool = False
    lr: float = 0.0003
    epochs: int = 15
    patience: int = 5

    def __post_init__(self) -> None:
        _check_range("finetune.lr", self.lr, 1e-8, 10.0)
        _check_range("finetune.epochs", self.epochs, 1, 100_000)
        _check_range("finetune.patience", self.patience, 1, 100_000)
        for name in self.freeze:
            if name.split(".")[0] not in NET_MODULES:
                _bad("finetune.freeze", name, "name modules under features or head, e.g. features")
        _check_init_from(self.init_from)


NET_MODULES = ("features", "head")  # the two top-level modules of every sluice network
_REGISTRY_URI = re.compile(r"models:/[^/@]+(@[\w-]+|/\d+)")


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


@dataclass(frozen=True)
class EvaluateConfig:
    bootstrap: int = 1000
    reference: Literal["logreg", "none"] = "logreg"

    def __post_init__(self) -> None:
        _check_range("evaluate.bootstrap", self.bootstrap, 0, 100_000)


@dataclass(frozen=True)
class RegistryConfig:
    model_name: str = "sluice-classifier"
    experiment: str = "sluice"
    register: bool = True

    def __post_init__(self) -> None:
        if not self.model_name.strip():
            _bad("registry.model_name", self.model_name, "give a non-empty name")
        if not self.experiment.strip():
            _bad("registry.experiment", self.experiment, "give a non-empty name")


@dataclass(frozen=True)
class PromoteConfig:
    metric: str = "roc_auc"
    min_delta: float = 0.0
    guards: dict[str, float] = field(
        default_factory=lambda: {"f1_macro": 0.01, "balanced_accuracy": 0.01}
    )
    floors: dict[str, float] = field(default_factory=lambda: {"roc_auc": 0.9})
    bootstrap: int = 1000

    def __post_init__(self) -> None:
        for key in [self.metric, *self.guards, *self.floors]:
            if key not in GATE_METRICS:
                _bad("promote", key, f"use one of {', '.join(GATE_METRICS)}")
        _check_range("promote.min_delta", self.min_delta, 0.0, 1.0)
        _check_range("promote.bootstrap", self.bootstrap, 100, 100_000)
        for key, value in self.guards.items():
            _check_range(f"promote.guards.{key}", value, 0.0, 1.0)
        for key, value in self.floors.items():
            _check_range(f"promote.floors.{key}", value, 0.0, 1.0)


GATE_METRICS = ("roc_auc", "f1_macro", "balanced_accuracy", "accuracy")


@dataclass(frozen=True)
class Params:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    clean: CleanConfig = field(default_factory=CleanConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    resample: ResampleConfig = field(default_factory=ResampleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    promote: PromoteConfig = field(default_factory=PromoteConfig)

    def __post_init__(self) -> None:
        _check_range("seed", self.seed, 0, 2**32 - 1)  # what numpy and scikit-learn accept


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate the whole params file, so a bad key fails before any stage works."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise SluiceError(f"{path} not found; run from the project root") from None
    except yaml.YAMLError as exc:
        raise SluiceError(f"{path} is not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise SluiceError(f"{path} must be a mapping of sections, got {type(raw).__name__}")
    return parse_section(Params, raw, "")


def parse_section(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    """Build dataclass ``cls`` from ``raw``, naming the offending key on any mistake."""
    if not isinstance(raw, dict):
        _bad(prefix.rstrip("."), raw, "expected a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        key = f"{prefix}{unknown[0]}"
        raise SluiceError(
            f"params.yaml: unknown key '{key}'; known keys: {', '.join(sorted(names))}"
        )
    values = {}
    for name, value in raw.items():
        key = f"{prefix}{name}"
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            values[name] = parse_section(kind, value or {}, f"{key}.")
        else:
            values[name] = _coerce(key, value, kind)
    return cls(**values)


def _coerce(key: str, value: Any, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(key, value, inner)
    if origin is Literal:
        if value not in args:
            _bad(key, value, f"use one of {', '.join(map(str, args))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            _bad(key, value, "expected a list")
        return [_coerce(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            _bad(key, value, "expected a mapping")
        return {str(k): _coerce(f"{key}.{k}", v, args[1]) for k, v in value.items()}
    if kind is bool:
        if not isinstance(value, bool):
            _bad(key, value, "expected true or false")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _bad(key, value, "expected an integer")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _bad(key, value, "expected a number")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            _bad(key, value, "expected a string")
        return value
    raise TypeError(f"unsupported params type {kind!r} for {key}")


def _check_range(key: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        _bad(key, value, f"use a value between {low:g} and {high:g}")


def _bad(key: str, value: Any, hint: str) -> typing.NoReturn:
    raise SluiceError(f"params.yaml: bad value {value!r} for '{key}'; {hint}")
