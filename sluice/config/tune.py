"""The tune section: the study's budget and its search space."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ValidationInfo, field_validator, model_validator

from sluice.config.base import Section, between
from sluice.config.base import bad as _bad
from sluice.config.data import RESAMPLE_METHODS
from sluice.errors import mask_secrets

# The text families (sluice.model.nets.TEXT_ARCHS, restated without torch; a test holds the two
# together): a study on a table with a text column chooses only between them.
TEXT_FAMILIES = ("ngram", "bilstm")
TUNE_FAMILIES = ("tabm", "mlp", "linear", "cnn", *TEXT_FAMILIES)  # what a study can choose
CELLS = ("lstm", "gru")  # train.text.cell
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
    "embedding": (1, 4096),
    "text_hidden": (1, 4096),
    "text_layers": (1, 8),
    "max_len": (1, 100_000),
}
_CHOICES = {"model": TUNE_FAMILIES, "imbalance": TUNE_IMBALANCE, "cell": CELLS}


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
    # The text families' knobs (train.text), searched only in trials of a text family. Cost
    # grows with max_len x hidden for bilstm, and with (vocabulary + buckets) x embedding for
    # ngram, whose embedding table the optimizer updates whole at every step. buckets is not
    # searched by default: fewer buckets mean more colliding bigrams, and on real reviews each
    # halving below 2**18 cost test ROC AUC (benchmarks/text.py).
    embedding: list[int] | None = [16, 64]  # both text families, log scale
    text_hidden: list[int] | None = [16, 64]  # bilstm: state size per direction, log scale
    text_layers: list[int] | None = None  # bilstm: stacked layers (each one costs as much)
    cell: list[Literal[CELLS]] | None = ["lstm", "gru"]  # bilstm
    buckets: list[between(int, 1, 1 << 24)] | None = None  # ngram: bigram buckets (choices)
    max_len: list[int] | None = [64, 512]  # both: cap on tokens kept per text, log scale

    @field_validator("model", "imbalance", "cell", mode="before")
    @classmethod
    def _known_choices(cls, value: Any, info: ValidationInfo) -> Any:
        # Checked here, as the generic message cannot name choices inside ``list[...] | None``.
        known = _CHOICES[info.field_name]
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
        for key in ("model", "batch_size", "imbalance", "cell", "buckets"):
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
    cv_folds: between(int, 1, 100) = 5  # folds over train + val scoring trials on small tables
    cv_below_rows: between(int, 0, 1_000_000_000) = 250  # ... whose val split is this small
    storage: str | None = None  # an Optuna storage URL: the study is shared by its workers
    space: TuneSpace = TuneSpace()

    @field_validator("storage")
    @classmethod
    def _a_database_url(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value:
            _bad(
                "tune.storage",
                value,
                "give a database URL, e.g. postgresql+psycopg://optuna@127.0.0.1:5433/optuna "
                "(`make server` prints its own), or null to keep the study in memory",
            )
        if value is not None and mask_secrets(value) != value:
            # params.yaml's values land in dvc.lock and in git, readable by everyone.
            _bad(
                "tune.storage",
                mask_secrets(value),
                "a password here is stored in dvc.lock and in git; remove it from the URL and "
                "give it in a libpq password file (PGPASSFILE, as `make server` writes)",
            )
        return value
