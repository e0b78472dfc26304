"""The scikit-learn references, and the challenger judged against them (paired bootstrap)."""

from __future__ import annotations

import numpy as np
import pytest

from sluice.errors import SluiceError
from sluice.evaluation.metrics import metric_value
from sluice.evaluation.scoring import (
    REFERENCES,
    compare_with_reference,
    fit_reference,
    reference_params,
    reference_proba,
)
from sluice.pipeline.publish import comparison_line, summary


def blobs(n: int, k: int, seed: int = 0, spread: float = 1.0):
    """``k`` Gaussian blobs in 4 dimensions: a task both references learn well."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    centres = rng.normal(0.0, 3.0, (k, 4))
    return centres[y] + rng.normal(0.0, spread, (n, 4)), y


def scores(y: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """Binary probabilities (n, 2) whose class-1 column is ``y`` plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    p1 = 1.0 / (1.0 + np.exp(-(2.0 * y - 1.0 + rng.normal(0.0, noise, len(y)))))
    return np.column_stack([1.0 - p1, p1])


@pytest.mark.parametrize("kind", REFERENCES)
@pytest.mark.parametrize("k", [2, 3])
def test_each_reference_learns_and_is_seeded(kind, k):
    X, y = blobs(300, k)
    model = fit_reference(kind, X[:200], y[:200], seed=0)
    prob = reference_proba(model, X[200:], k)
    assert prob.shape == (100, k)
    np.testing.assert_allclose(prob.sum(axis=1), 1.0)
    assert metric_value(y[200:], prob, "roc_auc") > 0.9
    again = reference_proba(fit_reference(kind, X[:200], y[:200], seed=0), X[200:], k)
    np.testing.assert_array_equal(prob, again)
    params = reference_params(model)
    # Without text columns, tfidf_logreg is plain logistic regression on the matrix.
    name = {"hgb": "HistGradientBoostingClassifier"}.get(kind, "LogisticRegression")
    assert params["model"] == name and params["random_state"] == "0"


@pytest.mark.parametrize("kind", REFERENCES)
def test_a_class_the_reference_never_saw_gets_a_zero_column(kind):
    X, y = blobs(200, 2)
    model = fit_reference(kind, X, np.where(y == 1, 2, 0), seed=0)  # classes 0 and 2 of 3
    prob = reference_proba(model, X, 3)
    assert prob.shape == (200, 3)
    assert not prob[:, 1].any()
    np.testing.assert_allclose(prob.sum(axis=1), 1.0)


def test_an_unknown_reference_is_refused_in_one_line():
    X, y = blobs(20, 2)
    with pytest.raises(SluiceError, match="evaluate.reference; choose from logreg, hgb"):
        fit_reference("svm", X, y, seed=0)


def test_a_clearly_worse_challenger_is_called_worse():
    y = np.tile([0, 1], 200)
    reference, challenger = scores(y, 0.5, seed=1), scores(y, 3.0, seed=2)
    c = compare_with_reference(y, challenger, reference, n_boot=500, seed=0)
    assert c["verdict"] == "worse"
    assert c["metric"] == "roc_auc" and c["n_boot"] == 500
    assert c["challenger"] == pytest.approx(metric_value(y, challenger, "roc_auc"))
    assert c["reference"] == pytest.approx(metric_value(y, reference, "roc_auc"))
    assert c["delta"] == pytest.approx(c["challenger"] - c["reference"])
    assert c["low"] <= c["delta"] <= c["high"] < 0


def test_a_lower_score_within_the_noise_is_not_called_worse():
    # Two similar models on 80 rows: the challenger's point estimate is 0.07 lower, but the
    # paired interval of the difference holds 0, so it is not reliably worse.
    y = np.tile([0, 1], 40)
    reference, challenger = scores(y, 1.8, seed=1), scores(y, 2.0, seed=11)
    c = compare_with_reference(y, challenger, reference, n_boot=500, seed=0)
    assert c["delta"] < -0.05
    assert c["low"] < 0 < c["high"]
    assert c["verdict"] == "no clear difference"


def test_the_same_predictions_are_not_worse_and_a_better_challenger_is_better():
    y = np.tile([0, 1, 1], 100)
    reference = scores(y, 2.0, seed=4)
    same = compare_with_reference(y, reference, reference, n_boot=200, seed=0)
    assert same["verdict"] == "no clear difference" and same["delta"] == 0.0
    better = compare_with_reference(y, scores(y, 0.3, seed=5), reference, n_boot=200, seed=0)
    assert better["verdict"] == "better" and better["low"] > 0


def test_the_decision_is_seeded():
    y = np.tile([0, 1], 50)
    a, b = scores(y, 1.0, seed=6), scores(y, 1.2, seed=7)
    first = compare_with_reference(y, a, b, n_boot=300, seed=11)
    assert first == compare_with_reference(y, a, b, n_boot=300, seed=11)


def test_without_resamples_nothing_is_judged():
    y = np.tile([0, 1], 50)
    c = compare_with_reference(y, scores(y, 3.0, 1), scores(y, 0.5, 2), n_boot=0, seed=0)
    assert c["verdict"] == "not compared"
    assert c["low"] is None and c["high"] is None and c["delta"] < 0


def test_an_undefined_metric_is_never_called_worse():
    y = np.zeros(40, dtype=int)  # one class only: ROC AUC is undefined
    c = compare_with_reference(y, scores(y, 3.0, 1), scores(y, 0.5, 2), n_boot=100, seed=0)
    assert c["verdict"] == "undefined"
    assert c["challenger"] is None and c["delta"] is None


@pytest.mark.parametrize(
    ("verdict", "low", "high", "words"),
    [
        ("worse", -0.05, -0.02, "challenger finetuned is worse than hgb on test roc_auc"),
        ("no clear difference", -0.05, 0.01, "finetuned is not clearly different from hgb"),
        ("better", 0.01, 0.05, "challenger finetuned is better than hgb"),
    ],
)
def test_the_summary_says_it_in_one_plain_line(verdict, low, high, words):
    c = {
        "metric": "roc_auc",
        "challenger": 0.812,
        "reference": 0.845,
        "delta": -0.033,
        "low": low,
        "high": high,
        "n_boot": 1000,
        "verdict": verdict,
    }
    line = comparison_line("finetuned", "hgb", c)
    assert line.startswith(words if words.startswith("challenger") else "challenger " + words)
    assert f"0.8120 vs 0.8450 (difference -0.0330, 95 % interval [{low:.4f}, {high:.4f}]" in line
    result = {"metrics": {"accuracy": 0.9, "balanced_accuracy": 0.9, "f1_macro": 0.9}}
    result["metrics"]["roc_auc"] = 0.812
    selection = {
        "role": "finetuned",
        "val_scores": {"finetuned": {"roc_auc": 0.9}},
        "vs_references": {"hgb": c},
    }
    lines = summary({"finetuned": result}, {"finetuned": "3"}, selection).splitlines()
    assert line in lines
