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
TUNE_RANGES = {
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
    """Families to choose from (cnn: square images only; image rows that train gives the CNN
    are tuned only if cnn is here). A table with a text column is tuned only if a text family
    (ngram, bilstm) is here (a text trial costs as much as a whole default run;
    reports/tune.json says skipped), and then only the text families are searched, a table
    without one only the others; reports/tune.json says what was left out (`left_out`)."""
    width: list[int] | None = [32, 256]
    """Range of the hidden width, log scale; with `depth`: `train.hidden = [width] * depth`."""
    depth: list[int] | None = [1, 3]
    """Range of hidden layers (tabm: blocks); tabm and mlp only."""
    dropout: list[float] | None = [0.0, 0.5]
    """Range of `train.dropout`; not for linear."""
    weight_decay: list[float] | None = [1e-6, 1e-2]
    """Range of `train.weight_decay`, log scale."""
    lr: list[float] | None = [3e-4, 1e-2]
    """Range of the peak learning rate `train.lr`, log scale."""
    batch_size: list[between(int, 1, 1_000_000)] | None = [32, 64, 128, 256]
    """Choices of `train.batch_size`."""
    imbalance: list[Literal[TUNE_IMBALANCE]] | None = [
        "none",
        "class_weights",
        "random_over",
        "smote",
    ]
    """Choices of `none`, `class_weights` or a `resample.method`: sets `resample.method` and
    `resample.class_weights`. On a table with a text column only class_weights, none,
    random_over and random_under are searched (the others make rows up, which cannot be
    text)."""
    # The text families' knobs (train.text), searched only in trials of a text family. Cost
    # grows with max_len x hidden for bilstm, and with (vocabulary + buckets) x embedding for
    # ngram, whose embedding table the optimizer updates whole at every step.
    embedding: list[int] | None = [16, 64]
    """Range of `train.text.embedding` (both text families), log scale."""
    text_hidden: list[int] | None = [16, 64]
    """bilstm: range of `train.text.hidden` (state size per direction), log scale."""
    text_layers: list[int] | None = None
    """bilstm: range of `train.text.layers`, e.g. `[1, 2]` (a layer costs as much again)."""
    cell: list[Literal[CELLS]] | None = ["lstm", "gru"]
    """bilstm: choices of `train.text.cell`."""
    buckets: list[between(int, 1, 1 << 24)] | None = None
    """ngram: choices of `train.text.buckets`, e.g. `[65536, 262144]`; fewer buckets, more
    colliding bigrams: on real reviews each halving below 2**18 cost test ROC AUC
    (benchmarks/text.py), so it is not searched by default."""
    pretrain_epochs: list[between(int, 0, 1000)] | None = None
    """bilstm: choices of `train.text.pretrain_epochs`, e.g. `[0, 3]`; a trial that pretrains
    does it on its own training part's texts and data.unlabelled_path's (it costs as much as
    that many epochs over all of them), so it is not searched by default."""
    max_len: list[int] | None = [64, 512]
    """Range of `train.text.max_len` (both text families: tokens kept per text at most), log
    scale."""

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
        for key, (low, high) in TUNE_RANGES.items():
            value = getattr(self, key)
            if value is not None and not (len(value) == 2 and low <= value[0] <= value[1] <= high):
                _bad(f"tune.space.{key}", value, f"give [low, high] within {low:g}..{high:g}")
        for key in ("model", "batch_size", "imbalance", "cell", "buckets", "pretrain_epochs"):
            value = getattr(self, key)
            if value is not None and (not value or len(set(value)) < len(value)):
                _bad(f"tune.space.{key}", value, "list distinct choices, or null to not search it")
        return self


class TuneConfig(Section):
    trials: between(int, 0, 1_000_000) = 20
    """Budget: trials to run (0: skip the study, params.yaml is used as it is). A fresh
    study's first trial is params.yaml's own values (where the space holds them), so the
    hand-set configuration is always a candidate."""
    timeout: between(float, 0.0, 1e7) = 600.0
    """Seconds after which no new trial starts (0: none); a study the timeout stops chose by
    this machine's speed (reports/tune.json says `timed_out`): raise it or lower `trials` to
    make it reproducible."""
    metric: Literal["log_loss", "roc_auc", "f1_macro", "balanced_accuracy", "accuracy"] = "log_loss"
    """What ranks trials, on validation at each trial's best epoch (ties: macro F1, then log
    loss); the pruner watches val loss."""
    startup_trials: between(int, 1, 10_000) = 5
    """Random trials before TPE models the space; the pruner waits for as many complete
    trials."""
    pruner: Literal["median", "none"] = "median"
    """`median`: stop a trial whose val loss at an epoch is worse than the median of earlier
    trials at that epoch."""
    warmup_epochs: between(int, 0, 100_000) = 5
    """Epochs a trial always runs before it can be pruned."""
    cv_folds: between(int, 1, 100) = 5
    """Folds of the cross-validation (over train + val, each fold's training part resampled;
    cost x cv_folds) that scores each trial when the validation split has fewer than
    `cv_below_rows` rows. Such a study also scores this file's values per family of the space;
    a trial replaces them only when better by more than one standard error over the folds, and
    the choice sets `train.folds`. 1: score on the validation split only."""
    cv_below_rows: between(int, 0, 1_000_000_000) = 250
    """A validation split of fewer rows is too few to rank trials on: trials are then scored by
    `cv_folds`-fold cross-validation."""
    storage: str | None = None
    """An Optuna storage URL (e.g. `postgresql+psycopg://...`, no password: PGPASSFILE has it)
    that keeps the study and continues it up to `trials`; more workers join it with
    `python -m stages.tune --worker` (same params and data), and the stage writes the choice of
    the whole study. `make server` prints a URL of its own. null: in memory."""
    space: TuneSpace = TuneSpace()
    """What the study searches: `[low, high]` is a range, a list the choices; null: not
    searched (the value of params.yaml is kept)."""

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
