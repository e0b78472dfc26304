"""Test-split evaluation of probabilities (metrics, intervals, curves), the scikit-learn references,
choosing the challenger and judging it against the references. Pure: no IO or tracking."""

from __future__ import annotations

import math

import numpy as np

from sluice.errors import SluiceError
from sluice.evaluation.metrics import (
    bootstrap_metrics,
    compute_metrics,
    confusion_rows,
    metric_value,
    paired_bootstrap_delta,
    pr_points,
    roc_points,
)

HEADLINE = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc")
REFERENCES = ("logreg", "hgb")  # the scikit-learn references evaluate.reference may name
COMPARE_METRIC = "roc_auc"  # the challenger is judged against each reference on this metric
_DELTA = ("delta", "low", "high")


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


def fit_reference(kind: str, X_train: np.ndarray, y_train: np.ndarray, seed: int):
    """A scikit-learn reference fitted on the same (preprocessed) training rows as the models.

    Args:
        kind: one of :data:`REFERENCES`: ``logreg`` (logistic regression, C = 1) or ``hgb``
            (histogram gradient boosting, scikit-learn's defaults).
        X_train: features (n, d); y_train: int class indices (n,).
        seed: ``random_state`` (HGB's early-stopping split on large data; the lbfgs fit of
            logreg does not draw random numbers).

    Returns:
        The fitted estimator (``classes_`` holds the class indices it saw).
    """
    from threadpoolctl import threadpool_limits

    # One thread (BLAS and OpenMP): with several, these small fits run many times slower on a
    # shared 2-core machine, and one thread keeps the result the same on any machine.
    with threadpool_limits(1):
        return _new_reference(kind, seed).fit(X_train, y_train)


def _new_reference(kind: str, seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    if kind == "logreg":
        return LogisticRegression(C=1.0, max_iter=3000, random_state=seed)
    if kind == "hgb":
        return HistGradientBoostingClassifier(random_state=seed)
    raise SluiceError(
        f"unknown reference {kind!r} in params.yaml evaluate.reference; "
        f"choose from {', '.join(REFERENCES)}"
    )


def reference_params(model) -> dict[str, str]:
    """The estimator's class and constructor arguments, as MLflow params."""
    return {"model": type(model).__name__, **{k: str(v) for k, v in model.get_params().items()}}


def reference_proba(model, X: np.ndarray, n_classes: int) -> np.ndarray:
    """(n, K) probabilities of the reference, with zero columns for classes it never saw."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        seen = model.predict_proba(X)
    prob = np.zeros((len(X), n_classes))
    prob[:, model.classes_] = seen
    return prob


def compare_with_reference(
    y_true: np.ndarray,
    prob_challenger: np.ndarray,
    prob_reference: np.ndarray,
    n_boot: int,
    seed: int,
    metric: str = COMPARE_METRIC,
) -> dict:
    """Is the challenger worse than a reference on the same test rows? A paired bootstrap of
    ``metric(challenger) - metric(reference)`` (the same resamples for both) decides.

    Returns:
        ``{"metric", "challenger", "reference", "delta", "low", "high", "n_boot", "verdict"}``:
        point values, their difference and its 95 % interval (``None`` where undefined), and
        ``verdict``: ``worse`` when the whole interval lies below 0, ``better`` when above 0,
        ``no clear difference`` when it holds 0, ``undefined`` when the metric or interval is
        not defined on these rows, ``not compared`` when ``n_boot`` is 0.
    """
    if n_boot:
        d = paired_bootstrap_delta(
            y_true, prob_reference, prob_challenger, metric, n_boot=n_boot, seed=seed
        )
    else:  # no resamples: the point values alone, and no judgement
        ref, chal = (metric_value(y_true, p, metric) for p in (prob_reference, prob_challenger))
        d = {"a": ref, "b": chal, "delta": chal - ref, "low": math.nan, "high": math.nan}
    values = {"challenger": d["b"], "reference": d["a"], **{k: d[k] for k in _DELTA}}
    return {
        "metric": metric,
        **{k: float(v) if math.isfinite(v) else None for k, v in values.items()},
        "n_boot": int(n_boot),
        "verdict": _verdict(d, n_boot),
    }


def _verdict(d: dict[str, float], n_boot: int) -> str:
    if not n_boot:
        return "not compared"
    if not all(math.isfinite(d[k]) for k in _DELTA):
        return "undefined"
    if d["high"] < 0:
        return "worse"
    return "better" if d["low"] > 0 else "no clear difference"


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
