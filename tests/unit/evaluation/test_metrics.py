"""sluice.evaluation.metrics: sklearn agreement, bootstrap behaviour, curves, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from sluice.errors import SluiceError
from sluice.evaluation.metrics import (
    bootstrap_metrics,
    bootstrap_samples,
    compute_metrics,
    confusion_rows,
    metric_value,
    paired_bootstrap_delta,
    pr_points,
    roc_points,
)

METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc")


def random_data(n: int, k: int, seed: int = 0, decimals: int | None = 1):
    """Random labels and probabilities; rounding the scores creates many ties."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    p = rng.dirichlet(np.ones(k), n)
    if decimals is not None:
        p = np.round(p, decimals) + 1e-3
    return y, p / p.sum(axis=1, keepdims=True)


def sklearn_metric(y, p, metric: str) -> float:
    k = p.shape[1]
    pred = p.argmax(axis=1)
    if metric == "accuracy":
        return skm.accuracy_score(y, pred)
    if metric == "balanced_accuracy":
        return skm.balanced_accuracy_score(y, pred)
    if metric == "f1_macro":
        return skm.f1_score(y, pred, average="macro", labels=range(k), zero_division=0)
    if k == 2:
        return skm.roc_auc_score(y, p[:, 1])
    return skm.roc_auc_score(y, p, multi_class="ovr", average="macro")


def perfect(k: int, per_class: int = 30):
    y = np.repeat(np.arange(k), per_class)
    return y, np.eye(k)[y] * 0.9 + 0.1 / k


@pytest.mark.parametrize("k", [2, 5])
@pytest.mark.parametrize("metric", METRICS)
def test_unit_weights_agree_with_sklearn(k, metric):
    y, p = random_data(300, k, seed=k)
    ones = np.ones((3, len(y)))
    expected = sklearn_metric(y, p, metric)
    np.testing.assert_allclose(bootstrap_samples(y, p, ones, metric), expected, atol=1e-9)
    assert metric_value(y, p, metric) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("k", [2, 5])
@pytest.mark.parametrize("metric", METRICS)
def test_integer_weights_equal_repeated_rows(k, metric):
    y, p = random_data(120, k, seed=10 + k)
    counts = np.random.default_rng(3).multinomial(len(y), np.full(len(y), 1 / len(y)), size=4)
    got = bootstrap_samples(y, p, counts, metric)
    for b, row in enumerate(counts):
        idx = np.repeat(np.arange(len(y)), row)
        assert got[b] == pytest.approx(sklearn_metric(y[idx], p[idx], metric), abs=1e-9)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("predicted_too", [False, True])
def test_class_absent_from_y_true(predicted_too):
    y, p = random_data(200, 5, seed=9)
    y[y == 4] = 0
    p[:, 4] = 0.0
    if predicted_too:
        p[:5, 4] = 5.0  # a few rows predicted as the class no row belongs to
    p = p / p.sum(axis=1, keepdims=True)
    for metric in ("accuracy", "balanced_accuracy", "f1_macro"):
        expected = sklearn_metric(y, p, metric)
        assert metric_value(y, p, metric) == pytest.approx(expected, abs=1e-9)
    m = compute_metrics(y, p, list("abcde"))
    assert math.isnan(m["roc_auc"]) and math.isnan(m["pr_auc"])
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, p, labels=range(5)))
    assert m["confusion_matrix"][4] == [0, 0, 0, 0, 0]


def test_bootstrap_interval_is_percentile_of_resamples_drawn_with_replacement(monkeypatch):
    import sluice.evaluation.metrics as metrics_module

    y, p = random_data(100, 3, seed=8)
    n_boot, seed, alpha = 400, 11, 0.2
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, 100, 100), minlength=100) for _ in range(400)])
    cis = bootstrap_metrics(y, p, n_boot=n_boot, seed=seed, alpha=alpha)
    for metric, ci in cis.items():
        samples = bootstrap_samples(y, p, counts, metric)
        assert ci == pytest.approx(tuple(np.percentile(samples, [10, 90])), abs=1e-12)
    # Blocks of 3 resamples (as on a large test split): the same resamples, the same interval.
    monkeypatch.setattr(metrics_module, "BOOTSTRAP_CELLS", 300)
    assert bootstrap_metrics(y, p, n_boot=n_boot, seed=seed, alpha=alpha) == cis


def test_weighted_auc_counts_ties_as_half():
    y = np.array([0, 1, 0, 1])
    s = np.array([0.5, 0.5, 0.2, 0.8])
    p = np.column_stack([1 - s, s])
    # pairs (pos, neg): (0.5,0.5)=0.5 (0.5,0.2)=1 (0.8,0.5)=1 (0.8,0.2)=1 -> 3.5 / 4
    assert metric_value(y, p, "roc_auc") == pytest.approx(0.875)
    # weight 2 on the tied negative: pos 0.5 -> 1 + 0.5 * 2, pos 0.8 -> 3; P * N = 2 * 3
    assert bootstrap_samples(y, p, [[2, 1, 1, 1]], "roc_auc")[0] == pytest.approx(5 / 6)


@pytest.mark.parametrize("k", [2, 5])
def test_compute_metrics_agrees_with_sklearn(k):
    y, p = random_data(200, k, seed=20 + k)
    classes = [f"c{i}" for i in range(k)]
    m = compute_metrics(y, p, classes)
    pred = p.argmax(axis=1)
    for metric in METRICS:
        assert m[metric] == pytest.approx(sklearn_metric(y, p, metric), abs=1e-9)
    assert m["recall_macro"] == pytest.approx(
        skm.recall_score(y, pred, average="macro", labels=range(k), zero_division=0)
    )
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, p, labels=range(k)))
    if k == 2:
        pr = skm.average_precision_score(y, p[:, 1])
    else:
        pr = np.mean([skm.average_precision_score(y == c, p[:, c]) for c in range(k)])
    assert m["pr_auc"] == pytest.approx(pr)
    assert sum(m["per_class"][c]["support"] for c in classes) == len(y)
    assert all(isinstance(m[key], float) for key in METRICS)


@pytest.mark.parametrize("k", [2, 4])
def test_perfect_classifier(k):
    y, p = perfect(k)
    m = compute_metrics(y, p, [str(i) for i in range(k)])
    for key in ("accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro"):
        assert m[key] == 1.0
    assert m["roc_auc"] == 1.0 and m["pr_auc"] == 1.0
    for low_high in bootstrap_metrics(y, p, n_boot=200).values():
        assert low_high == (1.0, 1.0)


def test_random_classifier_auc_ci_contains_half():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 3000)
    s = rng.random(3000)
    low, high = bootstrap_metrics(y, np.column_stack([1 - s, s]), metrics=["roc_auc"])["roc_auc"]
    assert low < 0.5 < high
    assert high - low < 0.1


@pytest.mark.parametrize("k", [2, 5])
def test_ci_contains_point_estimate(k):
    y, p = random_data(400, k, seed=30 + k)
    y[:200] = p[:200].argmax(axis=1)  # make it better than chance
    cis = bootstrap_metrics(y, p, n_boot=500)
    for metric, (low, high) in cis.items():
        assert low <= metric_value(y, p, metric) <= high
        assert low < high


def test_bootstrap_is_deterministic_per_seed():
    y, p = random_data(150, 3, seed=1)
    assert bootstrap_metrics(y, p, seed=7) == bootstrap_metrics(y, p, seed=7)
    assert bootstrap_metrics(y, p, seed=7) != bootstrap_metrics(y, p, seed=8)


@pytest.mark.parametrize("k", [2, 3])
def test_single_class_auc_is_nan_not_error(k):
    y = np.zeros(20, dtype=int)
    _, p = random_data(20, k, seed=2)
    m = compute_metrics(y, p, [str(i) for i in range(k)])
    assert math.isnan(m["roc_auc"]) and math.isnan(metric_value(y, p, "roc_auc"))
    assert math.isnan(m["pr_auc"])
    assert m["accuracy"] == pytest.approx(np.mean(p.argmax(axis=1) == 0))
    low, high = bootstrap_metrics(y, p, n_boot=50)["roc_auc"]
    assert math.isnan(low) and math.isnan(high)


def test_paired_delta_with_itself_is_zero():
    y, p = random_data(200, 4, seed=3)
    for metric in METRICS:
        r = paired_bootstrap_delta(y, p, p, metric, n_boot=300)
        assert (r["delta"], r["low"], r["high"]) == (0.0, 0.0, 0.0)
        assert r["a"] == r["b"] == metric_value(y, p, metric) and r["n_boot"] == 300


@pytest.mark.parametrize("metric", METRICS)
def test_clearly_better_model_has_positive_low(metric):
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 500)
    weak = rng.dirichlet(np.ones(3), 500)
    strong = 0.5 * weak + 0.5 * np.eye(3)[y]
    r = paired_bootstrap_delta(y, weak, strong, metric)
    assert r["low"] > 0 and r["delta"] > 0
    assert paired_bootstrap_delta(y, strong, weak, metric)["high"] < 0


def test_paired_delta_nan_when_metric_undefined():
    y = np.ones(30, dtype=int)
    _, p = random_data(30, 2, seed=6)
    r = paired_bootstrap_delta(y, p, p[::-1], "roc_auc", n_boot=50)
    assert all(math.isnan(r[key]) for key in ("a", "b", "delta", "low", "high"))


@pytest.mark.parametrize("k", [2, 6])
def test_curves_are_small_and_anchored(k):
    y, p = random_data(2000, k, seed=40 + k, decimals=None)
    roc = roc_points(y, p)
    assert 2 < len(roc["fpr"]) <= 200 and len(roc["fpr"]) == len(roc["tpr"]) == len(
        roc["threshold"]
    )
    assert (roc["fpr"][0], roc["tpr"][0]) == (0.0, 0.0)
    assert (roc["fpr"][-1], roc["tpr"][-1]) == (1.0, 1.0)
    assert all(isinstance(v, float) and math.isfinite(v) for v in roc["threshold"])
    pr = pr_points(y, p)
    assert 2 < len(pr["recall"]) <= 200 and len(pr["recall"]) == len(pr["precision"])
    assert pr["recall"][0] == 0.0 and pr["recall"][-1] == 1.0
    assert pr["recall"] == sorted(pr["recall"])


def test_short_curves_are_not_padded():
    y = np.array([0, 1, 1, 0])
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    fpr, tpr, _ = skm.roc_curve(y, p[:, 1])
    roc = roc_points(y, p)
    assert roc["fpr"] == fpr.tolist() and roc["tpr"] == tpr.tolist()
    assert roc_points(np.zeros(4, dtype=int), p) == {"fpr": [], "tpr": [], "threshold": []}


def test_confusion_matrix_keeps_unpredicted_classes():
    y = np.array([0, 1, 2, 2])
    p = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.5, 0.1, 0.4]])
    m = compute_metrics(y, p, ["a", "b", "c"])
    assert m["confusion_matrix"] == [[1, 0, 0], [1, 0, 0], [1, 0, 1]]
    assert m["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert confusion_rows(y, p, ["a", "b", "c"])[3] == {"actual": "c", "predicted": "a"}


def test_bad_input_raises_sluice_error():
    y, p = random_data(10, 3)
    with pytest.raises(SluiceError, match="unknown metric"):
        metric_value(y, p, "auc")
    with pytest.raises(SluiceError, match="class names"):
        compute_metrics(y, p, ["a", "b"])
    with pytest.raises(SluiceError, match="outside"):
        metric_value(y + 3, p, "accuracy")
    with pytest.raises(SluiceError, match="shape"):
        metric_value(y[:5], p, "accuracy")
