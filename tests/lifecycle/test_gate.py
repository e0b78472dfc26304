"""The gate's decision logic on hand-built probabilities (pure, no store), and budgets, also
through the real `sluice promote` against a real store."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from sluice.config import PromoteConfig
from sluice.evaluation.gate import decide

N = 200


def labels(n: int = N, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, n)


def probs(y: np.ndarray, signal: float, seed: int = 1) -> np.ndarray:
    """Binary probabilities whose class-1 score separates the classes by ``signal``."""
    score = np.random.default_rng(seed).normal(size=len(y)) + signal * (2 * y - 1)
    p1 = 1 / (1 + np.exp(-score))
    return np.column_stack([1 - p1, p1])


CFG = PromoteConfig(bootstrap=500)


def test_clearly_better_challenger_passes_with_all_numbers():
    y = labels()
    v = decide(y, probs(y, 0.3), probs(y, 3.0), CFG)
    assert v.passed and v.mode == "compare"
    assert v.delta == pytest.approx(v.challenger - v.champion)
    assert 0 < v.ci_low <= v.delta <= v.ci_high
    assert {g.metric for g in v.guards} == set(CFG.guards) and all(g.ok for g in v.guards)
    assert v.n_rows == N and v.n_boot == 500
    assert "reliable gain" in v.reasons[0]


def test_worse_challenger_is_refused():
    y = labels()
    v = decide(y, probs(y, 3.0), probs(y, 0.3), CFG)
    assert not v.passed and v.delta < 0
    assert "below min_delta" in v.reasons[0]


def test_identical_models_are_refused_because_the_interval_touches_zero():
    y = labels()
    p = probs(y, 1.0)
    v = decide(y, p, p.copy(), CFG)
    assert not v.passed and v.delta == 0 and v.ci_low == 0
    assert "not a reliable gain" in v.reasons[0]


def test_gain_smaller_than_min_delta_is_refused():
    y = labels()
    loose = decide(y, probs(y, 0.3), probs(y, 3.0), CFG)
    strict = PromoteConfig(bootstrap=500, min_delta=loose.delta + 0.01)
    v = decide(y, probs(y, 0.3), probs(y, 3.0), strict)
    assert loose.passed and not v.passed
    assert "below min_delta" in v.reasons[0]


def test_guard_drop_refuses_a_challenger_that_wins_on_the_primary_metric():
    y = labels()
    champion = probs(y, 0.8)
    # Perfect ranking (ROC AUC 1.0) but every score below 0.5: always predicts class 0.
    p1 = 0.1 + 0.3 * y + 0.01 * np.random.default_rng(2).random(N)
    challenger = np.column_stack([1 - p1, p1])
    v = decide(y, champion, challenger, CFG)
    assert v.delta > 0 and v.ci_low > 0 and v.primary_ok  # the primary metric alone passes
    assert not v.passed
    failed = {g.metric for g in v.guards if not g.ok}
    assert failed == {"f1_macro", "balanced_accuracy"}
    assert any("exceeds tolerance" in r for r in v.reasons)


@pytest.mark.parametrize("with_champion", [True, False])
def test_undefined_metric_never_wins(with_champion):
    y = np.zeros(N, dtype=int)  # one class: ROC AUC undefined
    p = probs(labels(), 3.0)
    v = decide(y, p if with_champion else None, p, CFG)
    assert not v.passed
    assert any("undefined" in r for r in v.reasons)
    json.dumps(v.to_dict(), allow_nan=False)  # NaN recorded as null


def test_undefined_guard_refuses_even_when_the_primary_metric_wins():
    y = np.zeros(N, dtype=int)  # one class: ROC AUC undefined, accuracy defined
    champion = np.tile([0.4, 0.6], (N, 1))  # always wrong
    challenger = np.tile([0.9, 0.1], (N, 1))  # always right
    cfg = PromoteConfig(metric="accuracy", guards={"roc_auc": 0.5}, bootstrap=200)
    v = decide(y, champion, challenger, cfg)
    assert v.delta == 1.0 and v.ci_low == 1.0
    assert not v.guards[0].ok and not v.passed


@pytest.mark.parametrize(
    ("signal", "passed"), [(3.0, True), (0.05, False)], ids=["reaches", "misses"]
)
def test_first_champion_is_judged_against_the_floors(signal, passed):
    y = labels()
    v = decide(y, None, probs(y, signal), CFG)
    assert v.mode == "floors" and v.passed is passed
    assert v.floors[0].metric == "roc_auc" and v.floors[0].floor == 0.9
    assert v.champion is None and v.delta is None


def test_same_seed_same_verdict():
    y = labels()
    a, b = probs(y, 1.0), probs(y, 1.3, seed=3)
    assert decide(y, a, b, CFG, seed=7) == decide(y, a, b, CFG, seed=7)


# Budgets: what a challenger may cost (promote.budgets), held in both modes of the gate.
COST = {"latency_p95_ms_b1": 0.8, "bundle_bytes": 45_000_000.0, "train_seconds": 30.0}


@pytest.mark.parametrize("with_champion", [True, False], ids=["compare", "floors"])
def test_an_over_budget_challenger_is_refused_even_when_it_wins(with_champion):
    y = labels()
    cfg = PromoteConfig(bootstrap=500, budgets={"latency_p95_ms": 5.0, "size_mb": 20.0})
    champion = probs(y, 0.3) if with_champion else None
    v = decide(y, champion, probs(y, 3.0), cfg, cost=COST)
    assert v.primary_ok and not v.passed
    assert [(b.budget, b.ok) for b in v.budgets] == [("latency_p95_ms", True), ("size_mb", False)]
    assert v.reasons[-1] == "budget size_mb: 45 MB over the limit 20 MB"
    assert v.to_dict()["budgets"][1] == {
        "budget": "size_mb",
        "value": 45.0,
        "limit": 20.0,
        "unit": "MB",
        "ok": False,
    }
    within = PromoteConfig(bootstrap=500, budgets={"size_mb": 50.0, "train_seconds": 60.0})
    assert decide(y, champion, probs(y, 3.0), within, cost=COST).passed


def test_budgets_without_a_cost_refuse_and_no_budgets_ignore_the_cost():
    y = labels()
    cfg = PromoteConfig(bootstrap=500, budgets={"latency_p95_ms": 5.0})
    v = decide(y, probs(y, 0.3), probs(y, 3.0), cfg, cost=None)
    assert not v.passed and "not recorded" in v.reasons[-1]
    plain = decide(y, probs(y, 0.3), probs(y, 3.0), CFG, cost=COST)
    assert plain.passed and plain.budgets == ()


def test_the_gate_reads_the_recorded_cost_and_measures_a_model_without_one(trained):
    from sluice.lifecycle.promotion import challenger_cost
    from sluice.model.bundle import Classifier

    net, spec = trained.nets["good"], trained.spec
    assert challenger_cost(Classifier(net, spec), trained.test, {}) is None
    recorded = Classifier(net, {**spec, "cost": COST})
    assert challenger_cost(recorded, trained.test, {"size_mb": 1.0}) == COST
    measured = challenger_cost(Classifier(net, spec), trained.test, {"size_mb": 1.0})
    assert measured["latency_p50_ms_b1"] <= measured["latency_p95_ms_b1"]
    assert measured["param_count"] == sum(p.numel() for p in net.parameters())
    assert 0 < measured["bundle_bytes"] < 1_000_000


def test_budgets_refuse_an_over_budget_challenger_through_sluice_promote(project):
    """The real `sluice promote`: version 2 (good) reaches the floors; its size does not fit a
    budget smaller than the model, so nothing moves; with room to spare it is promoted."""
    from sluice.cli import EXIT_REFUSED, app
    from sluice.tracking.registry import aliases, read_history

    from .conftest import VERSION, write_project_files

    runner = CliRunner()
    tight = {"bootstrap": 200, "budgets": {"size_mb": 0.001, "latency_p95_ms": 10_000}}
    write_project_files(project.root, project.test, promote=tight)
    result = runner.invoke(app, ["promote"])
    assert result.exit_code == EXIT_REFUSED, result.output
    assert aliases(project.name).get("champion") is None
    (entry,) = [e for e in read_history(project.name) if e["alias"] == "champion"]
    assert entry["action"] == "refused" and entry["to"] == VERSION["good"]
    checks = {b["budget"]: b for b in entry["verdict"]["budgets"]}
    size, latency = checks["size_mb"], checks["latency_p95_ms"]
    assert not size["ok"] and size["value"] > size["limit"] == 0.001
    assert latency["ok"] and latency["value"] > 0
    assert f"budget size_mb: {size['value']:.4g} MB over the limit 0.001 MB" in result.stdout
    assert "reaches the floor" in result.stdout  # only the budget stood in the way

    roomy = {"bootstrap": 200, "budgets": {"size_mb": 100, "latency_p95_ms": 10_000}}
    write_project_files(project.root, project.test, promote=roomy)
    result = runner.invoke(app, ["promote"])
    assert result.exit_code == 0, result.output
    assert aliases(project.name)["champion"] == VERSION["good"]
    assert "budget size_mb: " in result.stdout and "within the limit 100 MB" in result.stdout
