"""The data, clean, split and resample sections."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from sluice.config.base import BUILTIN_DATASETS, Section, between
from sluice.config.base import bad as _bad


class DataConfig(Section):
    name: Literal[BUILTIN_DATASETS] = "digits-lt"
    """Built-in data, used when `path` is null; `reviews` is 5,000 Amazon food reviews (a text
    column)."""
    path: str | None = None
    """Your CSV (relative to the project root); overrides `name`. null: the built-in data."""
    target: str | None = None
    """The label column of your CSV (required with `path`)."""
    imbalance_factor: between(float, 1.0, 1000.0) = 10.0
    """digits-lt: largest / smallest class in the training split."""
    columns: dict[str, Literal["numeric", "categorical", "text"]] = {}
    """Declared feature types, e.g. `{zip: categorical, review: text}`; the others are inferred:
    a column that is not numeric is text when its values average >= 3 words and >= 50 % are
    distinct (reports/clean.json gives each verdict)."""
    drop_columns: list[str] = []
    """Columns to ignore (ids, leaks)."""
    max_categories: between(int, 2, 10_000) = 50
    """One-hot width cap per categorical column (rarer values -> zeros); SMOTE-NC's distances
    see the same ones."""
    unlabelled_path: str | None = None
    """For `train.text.pretrain_epochs`: a CSV of extra texts (columns named as the table's text
    columns; never in validation or test) the bilstm's language model also reads. `clean` reads
    it; keep it under data/raw so that editing it re-runs clean, tune and train. null: none."""
    max_memory_gb: between(float, 0.0, 1e6) | None = None
    """clean refuses a CSV (data.path or data.unlabelled_path) whose reading and cleaning needs
    more memory than this (GB); null: 80 % of the memory available (the estimate: docs/data.md)."""

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
    """Identical rows (features and label): in real data they are repeated observations, and
    they weigh what is common."""
    conflicting_labels: Literal["keep", "drop", "error"] = "keep"
    """Identical features with different labels: kept, they are label noise the model should
    learn as a probability."""
    missing_target: Literal["drop", "error"] = "drop"
    """Rows without a label."""
    bad_values: Literal["error", "missing"] = "error"
    """Text or inf in a numeric column: an error, or read as missing."""
    label_case: Literal["merge", "keep"] = "merge"
    """Labels differing only in case ("Yes"/"yes")."""
    min_class_rows: between(int, 3, 1_000_000) = 10
    """Fewest rows a class needs (split and SMOTE need a few)."""
    rare_classes: Literal["error", "drop"] = "error"
    """Classes under `min_class_rows`."""


class SplitConfig(Section):
    val_size: between(float, 0.01, 0.9) = 0.2
    """Fraction of all rows for validation (early stopping)."""
    test_size: between(float, 0.01, 0.9) = 0.2
    """Fraction of all rows for the held-out test; `val_size + test_size` stays under 0.95."""

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
    method: Literal[RESAMPLE_METHODS] = "none"
    """How the training split is rebalanced: the SMOTE family uses SMOTENC/SMOTEN for
    categorical columns; `gan` is a class-conditional WGAN-GP trained on the train split.
    `none` by default: the base model learns from the natural rows and finetune re-trains the
    head on class-balanced batches (docs/models.md). On FAA bird strikes, `random_over`'s 148
    copies of each engine-shut-down report cost the n-gram network 0.01-0.03 test ROC AUC."""
    k_neighbors: between(int, 1, 100) = 5
    """SMOTE family: neighbours; lowered to (smallest class - 1) when needed."""
    knn_block: between(int, 0, 100_000_000) = 50_000
    """smote: a class of more rows finds neighbours within random blocks of about this many
    (cost linear, not quadratic); 0: the whole class."""
    max_memory_gb: between(float, 0.0, 1e6) | None = None
    """Refuse, before any work, a method whose estimated peak needs more (GB); null: 80 % of
    the memory available (docs/data.md)."""
    class_weights: bool = False
    """Inverse-frequency loss weights (an alternative to resampling)."""
    check_rows: between(int, 0, 1_000_000) = 1000
    """smote, borderline_smote, adasyn, gan: compare up to this many generated rows with the
    real ones in reports/resample.json (real-vs-synthetic classifier AUC, nearest-real-row
    distances, exact copies); 0: skip."""

    class GanConfig(Section):
        """method gan: the class-conditional WGAN-GP of sluice.data.gan."""

        epochs: between(int, 1, 100_000) = 100
        """Passes over the training rows (class-balanced batches)."""
        batch_size: between(int, 2, 1_000_000) = 64
        """Rows per step."""
        latent_dim: between(int, 1, 4096) = 32
        """Generator noise size."""
        hidden: between(int, 1, 65_536) = 128
        """Width of the two hidden layers of generator and critic."""
        lr: between(float, 1e-7, 1.0) = 0.001
        """Adam learning rate of both networks."""
        critic_steps: between(int, 1, 100) = 3
        """Critic updates per generator update."""
        threads: between(int, 1, 1024) = 1
        """Torch CPU threads while it trains (1 is fastest for these small nets; rows are
        identical run after run for a given count)."""

    gan: GanConfig = GanConfig()
    """`method: gan` only: the generator's training."""
