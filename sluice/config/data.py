"""The data, clean, split and resample sections."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from sluice.config.base import BUILTIN_DATASETS, Section, between
from sluice.config.base import bad as _bad


class DataConfig(Section):
    name: Literal[BUILTIN_DATASETS] = "digits-lt"
    path: str | None = None
    target: str | None = None
    imbalance_factor: between(float, 1.0, 1000.0) = 10.0
    columns: dict[str, Literal["numeric", "categorical", "text"]] = {}
    drop_columns: list[str] = []
    max_categories: between(int, 2, 10_000) = 50
    max_memory_gb: between(float, 0.0, 1e6) | None = None  # clean: budget, GB; null: 80 % available
    unlabelled_path: str | None = None  # CSV of extra texts for train.text.pretrain_epochs

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
    knn_block: between(int, 0, 100_000_000) = 50_000
    max_memory_gb: between(float, 0.0, 1e6) | None = None  # budget, GB; null: 80 % of available
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
