"""The evaluate, registry and promote sections."""

from __future__ import annotations

import warnings
from typing import Annotated, Literal

from pydantic import Field, model_validator

from sluice.config.base import GATE_METRICS, LOWER_IS_BETTER, Section, between
from sluice.config.base import bad as _bad


class DecisionCosts(Section):
    fp: between(float, 0.0, 1e12) = 1.0  # cost of a false positive
    fn: between(float, 0.0, 1e12) = 5.0  # cost of a false negative

    @model_validator(mode="after")
    def _some_cost(self) -> DecisionCosts:
        if self.fp == 0 and self.fn == 0:
            _bad("evaluate.costs", self.model_dump(), "give fp or fn a cost above 0")
        return self


class LatencyRepeats(Section):
    """Timed serving calls per batch size when a model's cost is measured (after training)."""

    b1: between(int, 5, 10_000) = 20  # one row per call
    b1024: between(int, 3, 10_000) = 5  # 1,024 rows per call

    def by_batch(self) -> dict[int, int]:
        return {1: self.b1, 1024: self.b1024}


class EvaluateConfig(Section):
    bootstrap: between(int, 0, 100_000) = 1000
    # On a table with text columns logreg is fitted as tfidf_logreg and hgb on the numeric and
    # one-hot columns only (skipped when there are none); without text, tfidf_logreg is logreg
    # (sluice.evaluation.scoring.resolve_reference).
    reference: list[Literal["logreg", "hgb", "tfidf_logreg"]] = ["logreg", "hgb"]
    reference_rows: between(int, 0, 1_000_000_000) = 1_000_000
    threshold: Literal["argmax", "f1", "youden", "cost"] = "f1"
    costs: DecisionCosts = DecisionCosts()
    latency_repeats: LatencyRepeats = LatencyRepeats()


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
# promote.budgets: what a challenger may cost (sluice.evaluation.cost reads the same keys).
BUDGET_KEYS = ("latency_p95_ms", "size_mb", "train_seconds")


class PromoteConfig(Section):
    metric: str = "roc_auc"
    min_delta: Share = 0.0
    guards: dict[str, Share] = {"f1_macro": 0.01, "balanced_accuracy": 0.01}
    floors: dict[str, Share] = {"roc_auc": 0.9}
    bootstrap: between(int, 100, 100_000) = 1000
    budgets: dict[str, float] = {}  # e.g. {latency_p95_ms: 5, size_mb: 20}; {}: no budget

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
