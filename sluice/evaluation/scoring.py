"""Test-split evaluation of a model's probabilities: metrics, intervals, curves; and a reference."""

from __future__ import annotations

import numpy as np

from sluice.evaluation.metrics import (
    bootstrap_metrics,
    compute_metrics,
    confusion_rows,
    metric_value,
    pr_points,
    roc_points,
)

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


def selection_scores(y_val: np.ndarray, y_prob: np.ndarray, primary: str) -> dict[str, float]:
    """The validation scores that choose the challenger: the primary metric, macro F1 and log
    loss (ROC AUC and F1 often tie near 1.0 on validation rows; log loss rarely does)."""
    from sklearn.metrics import log_loss

    scores = {k: metric_value(y_val, y_prob, k) for k in dict.fromkeys((primary, "f1_macro"))}
    scores["log_loss"] = float(log_loss(y_val, y_prob, labels=list(range(y_prob.shape[1]))))
    return scores


def pick_challenger(metrics: dict[str, dict], primary: str) -> str:
    """The role with the best primary metric (ties: macro F1, then the lower log loss, when
    given); NaN never wins."""

    def key(role: str) -> tuple[float, ...]:
        m = metrics[role]
        keys = [m[primary], m["f1_macro"], -m.get("log_loss", 0.0)]
        return tuple(-np.inf if np.isnan(v) else v for v in keys)

    return max(metrics, key=key)
