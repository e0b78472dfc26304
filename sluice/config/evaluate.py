"""The evaluate, registry and promote sections."""

from __future__ import annotations

import warnings
from typing import Annotated, Literal

from pydantic import Field, model_validator

from sluice.config.base import GATE_METRICS, LOWER_IS_BETTER, Section, between
from sluice.config.base import bad as _bad


class DecisionCosts(Section):
    fp: between(float, 0.0, 1e12) = 1.0
    """Cost of a false positive."""
    fn: between(float, 0.0, 1e12) = 5.0
    """Cost of a false negative."""

    @model_validator(mode="after")
    def _some_cost(self) -> DecisionCosts:
        if self.fp == 0 and self.fn == 0:
            _bad("evaluate.costs", self.model_dump(), "give fp or fn a cost above 0")
        return self


class LatencyRepeats(Section):
    """Timed serving calls per batch size when a model's cost is measured (after training)."""

    b1: between(int, 5, 10_000) = 20
    """Calls of one row each."""
    b1024: between(int, 3, 10_000) = 5
    """Calls of 1,024 rows each."""

    def by_batch(self) -> dict[int, int]:
        return {1: self.b1, 1024: self.b1024}


class EvaluateConfig(Section):
    bootstrap: between(int, 0, 100_000) = 1000
    """Resamples for 95 % intervals (0: none)."""
    reference: list[Literal["logreg", "hgb", "tfidf_logreg"]] = ["logreg", "hgb"]
    """scikit-learn references fitted on the same rows (`[]`: none): logreg (logistic
    regression), hgb (histogram gradient boosting), tfidf_logreg (TF-IDF word 1-2-grams of each
    text column + logistic regression). On a table with text, logreg is fitted as tfidf_logreg
    and hgb sees the numeric and one-hot columns only (skipped when there are none); without
    text, tfidf_logreg is logreg (sluice.evaluation.scoring.resolve_reference)."""
    figures: bool = True
    """Draw each model's ROC, PR, confusion, reliability and training-curve figures (PNG) into
    its run; false: only their data (JSON in the run, reports/plots for `dvc plots`), which
    saves about a second per model."""
    reference_rows: between(int, 0, 1_000_000_000) = 1_000_000
    """Fit the references on a seeded random sample of at most this many training rows (0:
    all): one-thread fits on millions of rows take minutes."""
    # After training (and fine-tuning) a temperature is fitted on the validation split; a
    # binary model also gets a decision threshold there. Both travel in the model.
    threshold: Literal["argmax", "f1", "youden", "cost"] = "f1"
    """Binary models' decision threshold, fitted on validation after training (train and
    finetune read this key): `f1` maximises the positive class's F1, `youden` TPR - FPR,
    `cost` minimises `costs`; `argmax` is 0.5."""
    costs: DecisionCosts = DecisionCosts()
    """`threshold: cost`: what each kind of error costs (train and finetune read this key)."""
    latency_repeats: LatencyRepeats = LatencyRepeats()
    """After training, the model's cost: timed serving calls (raw rows in, probabilities out;
    warm, one thread) of 1 row and of 1,024 rows; p50/p95 latency, rows/s and size go to the
    run and the model (train and finetune read this key)."""


Name = Annotated[str, Field(pattern=r"\S")]  # not empty, not only spaces


with warnings.catch_warnings():
    # pydantic warns that `register` shadows ABCMeta.register, a class-level method only: on
    # an instance the name is the field.
    warnings.filterwarnings("ignore", message='Field name "register"')

    class RegistryConfig(Section):
        model_name: Name = "sluice-classifier"
        """The registered model in MLflow."""
        experiment: Name = "sluice"
        """The MLflow experiment of the runs."""
        register: bool = True
        """Register base and fine-tuned as versions, and set the `challenger` alias."""


Share = between(float, 0.0, 1.0)
# promote.budgets: what a challenger may cost (sluice.evaluation.cost reads the same keys).
BUDGET_KEYS = ("latency_p95_ms", "size_mb", "train_seconds")


class PromoteConfig(Section):
    metric: str = "roc_auc"
    """Primary metric of the gate: roc_auc, f1_macro, balanced_accuracy or accuracy."""
    min_delta: Share = 0.0
    """The challenger must improve the primary metric by at least this."""
    guards: dict[str, Share] = {"f1_macro": 0.01, "balanced_accuracy": 0.01}
    """Metric: largest allowed drop; ece, brier (lower is better): largest allowed increase,
    e.g. `ece: 0.02`, so a challenger may not be much worse calibrated."""
    floors: dict[str, Share] = {"roc_auc": 0.9}
    """Metric: the least value the first candidate must reach when there is no champion yet."""
    bootstrap: between(int, 100, 100_000) = 1000
    """Paired bootstrap resamples for the gate."""
    budgets: dict[str, float] = {}
    """What a challenger may cost, or it is refused, e.g. `{latency_p95_ms: 5, size_mb: 20,
    train_seconds: 600}`: p95 latency at batch 1 (ms), bundle size (MB = 10^6 bytes), training
    time (s); `{}`: no budget."""

    @model_validator(mode="after")
    def _budgets(self) -> PromoteConfig:
        for key, limit in self.budgets.items():
            if key not in BUDGET_KEYS:
                _bad("promote.budgets", key, f"use one of {', '.join(BUDGET_KEYS)}")
            if not (0 < limit < float("inf")):
                _bad(f"promote.budgets.{key}", limit, "give a limit above 0")
        return self

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
