"""Test-split evaluation of a model's probabilities: metrics, intervals, curves; and a reference."""

from __future__ import annotations

import numpy as np

from sluice.metrics import bootstrap_metrics, compute_metrics, confusion_rows, pr_points, roc_points

HEADLINE = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc")


def evaluate_predictions(
    y_true: np.ndarray, y_prob: np.ndarray, classes: list[str], n_boot: int, seed: int
) -> dict:
    """Everything a report needs about one model on the test split.

    Returns:
        {"metrics": {...scalars, per_class, confusion_matrix, ci}, "roc": {...}, "pr": {...},
         "confusion": [rows]}
    """
    metrics = compute_metrics(y_true, y_prob, classes)
    if n_boot:
        intervals = bootstrap_metrics(y_true, y_prob, n_boot=n_boot, seed=seed, metrics=HEADLINE)
        metrics["ci95"] = {
            k: [round(float(lo), 6), round(float(hi), 6)] for k, (lo, hi) in intervals.items()
        }
    return {
        "metrics": metrics,
        "roc": roc_points(y_true, y_prob),
        "pr": pr_points(y_true, y_prob),
        "confusion": confusion_rows(y_true, y_prob, classes),
    }


def fit_reference(X_train: np.ndarray, y_train: np.ndarray, seed: int):
    """A scikit-learn logistic regression on the same preprocessed training rows."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    # One BLAS thread: with several, this small fit runs tens of times slower on 2 cores.
    with threadpool_limits(1):
        return LogisticRegression(C=1.0, max_iter=3000, random_state=seed).fit(X_train, y_train)


def reference_proba(model, X: np.ndarray, n_classes: int) -> np.ndarray:
    """(n, K) probabilities of the reference, with zero columns for classes it never saw."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        seen = model.predict_proba(X)
    prob = np.zeros((len(X), n_classes))
    prob[:, model.classes_] = seen
    return prob


def pick_challenger(metrics: dict[str, dict], primary: str) -> str:
    """The role with the best primary metric (ties: macro F1); NaN never wins."""

    def key(role: str) -> tuple[float, float]:
        m = metrics[role]
        return tuple(-np.inf if np.isnan(m[k]) else m[k] for k in (primary, "f1_macro"))

    return max(metrics, key=key)
