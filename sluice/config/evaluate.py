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
