"""Classification metrics, curve points and fast (paired) bootstrap confidence intervals.

``y_true``: int class indices (n,); ``y_prob``: probabilities (n, K); ``classes``: K names.
K == 2 is binary with class 1 positive. Pure functions: no IO, logging or tracking.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from sluice.errors import SluiceError
from sluice.evaluation.calibration import brier_score, expected_calibration_error, log_loss

BOOTSTRAP_METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc")
MAX_CURVE_POINTS = 200
BOOTSTRAP_CELLS = 1 << 23  # draw counts held at once (resamples x rows): 64 MB as float64


def _check(
    y_true: np.ndarray, y_prob: np.ndarray, classes: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes, label range and class names; return ``(y_true int64, y_prob float64)``."""
    y_true = np.asarray(y_true)
    y_prob = np.asarray(y_prob, dtype=np.float64)
    if y_prob.ndim != 2 or y_prob.shape[1] < 2:
        raise SluiceError(f"y_prob must have shape (n, K) with K >= 2, got {y_prob.shape}")
    if y_true.ndim != 1 or y_true.shape[0] != y_prob.shape[0] or y_true.shape[0] == 0:
        raise SluiceError(
            f"y_true must have shape (n,) matching y_prob {y_prob.shape}, got {y_true.shape}"
        )
    y_true = y_true.astype(np.int64)
    if y_true.min() < 0 or y_true.max() >= y_prob.shape[1]:
        raise SluiceError(f"y_true holds labels outside 0..{y_prob.shape[1] - 1}")
    if classes is not None and len(classes) != y_prob.shape[1]:
        raise SluiceError(f"{len(classes)} class names given for {y_prob.shape[1]} columns")
    return y_true, y_prob


def _safe(fn, *args, **kwargs) -> float:
    """Call a metric; undefined results (ValueError or NaN) become ``nan``, silently."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return float(fn(*args, **kwargs))
        except ValueError:
            return float("nan")


def _pr_auc(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """Average precision: class 1 if binary, else OvR macro; ``nan`` if a class has no rows."""
    from sklearn.metrics import average_precision_score

    cols = [1] if y_prob.shape[1] == 2 else range(y_prob.shape[1])
    if not all(np.any(y_true == c) for c in cols):
        return float("nan")
    return float(np.mean([_safe(average_precision_score, y_true == c, y_prob[:, c]) for c in cols]))


def compute_metrics(y_true: np.ndarray, y_prob: np.ndarray, classes: Sequence[str]) -> dict:
    """All headline metrics for one set of predictions (``y_pred`` is the argmax class).

    Returns plain floats ``accuracy``, ``balanced_accuracy``, their complements ``error_rate``
    and ``balanced_error_rate`` (1 - each), ``{precision,recall,f1}_macro``,
    ``roc_auc``, ``pr_auc``, ``log_loss`` (``nan`` where undefined), the calibration scores
    ``ece`` (top-label, 15 bins) and ``brier`` (see :mod:`sluice.evaluation.calibration`), plus
    ``per_class`` ({name: precision, recall, f1, support}) and ``confusion_matrix`` (K x K int
    lists, rows = true, columns = predicted). Raises SluiceError on malformed inputs.
    """
    from sklearn import metrics as skm

    y_true, y_prob = _check(y_true, y_prob, classes)
    labels = list(range(y_prob.shape[1]))
    y_pred = y_prob.argmax(axis=1)
    prec, rec, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    out = {
        "accuracy": metric_value(y_true, y_prob, "accuracy"),
        "balanced_accuracy": metric_value(y_true, y_prob, "balanced_accuracy"),
        "precision_macro": float(np.mean(prec)),
        "recall_macro": float(np.mean(rec)),
        "f1_macro": float(np.mean(f1)),
        "roc_auc": metric_value(y_true, y_prob, "roc_auc"),
        "pr_auc": _pr_auc(y_true, y_prob),
        "log_loss": _safe(log_loss, y_true, y_prob),
        "ece": expected_calibration_error(y_true, y_prob),
        "brier": _safe(brier_score, y_true, y_prob),
    }
    out["error_rate"] = 1.0 - out["accuracy"]
    out["balanced_error_rate"] = 1.0 - out["balanced_accuracy"]
    out["per_class"] = {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(classes, prec, rec, f1, support, strict=True)
    }
    cm = skm.confusion_matrix(y_true, y_pred, labels=labels)
    out["confusion_matrix"] = [[int(v) for v in row] for row in cm]
    return out


def _downsample(*arrays: np.ndarray) -> list[list[float]]:
    """Keep at most MAX_CURVE_POINTS evenly spaced points (first and last always kept)."""
    m = len(arrays[0])
    idx = np.arange(m)
    if m > MAX_CURVE_POINTS:
        idx = np.unique(np.round(np.linspace(0, m - 1, MAX_CURVE_POINTS)).astype(np.int64))
    return [np.round(a[idx].astype(np.float64), 6).tolist() for a in arrays]


def _curve_inputs(y_true: np.ndarray, y_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Binary: (is class 1, column 1). Multiclass: micro-average (raveled one-hot vs probs)."""
    y_true, y_prob = _check(y_true, y_prob)
    if y_prob.shape[1] == 2:
        return (y_true == 1).astype(np.int64), y_prob[:, 1]
    return np.eye(y_prob.shape[1], dtype=np.int64)[y_true].ravel(), y_prob.ravel()


def roc_points(y_true: np.ndarray, y_prob: np.ndarray) -> dict[str, list[float]]:
    """ROC curve points (binary: class 1; multiclass: micro-averaged one-vs-rest).

    Returns ``{"fpr", "tpr", "threshold"}`` float lists (at most 200 points, 6 decimals).
    sklearn's leading ``+inf`` threshold becomes 1.0 so the result is valid JSON. The lists
    are empty when only one class is present (curve undefined).
    """
    from sklearn.metrics import roc_curve

    target, score = _curve_inputs(y_true, y_prob)
    if target.min() == target.max():
        return {"fpr": [], "tpr": [], "threshold": []}
    fpr, tpr, thr = roc_curve(target, score)
    fpr, tpr, thr = _downsample(fpr, tpr, np.where(np.isfinite(thr), thr, 1.0))
    return {"fpr": fpr, "tpr": tpr, "threshold": thr}


def pr_points(y_true: np.ndarray, y_prob: np.ndarray) -> dict[str, list[float]]:
    """Precision-recall curve points, averaged like :func:`roc_points`.

    Returns ``{"recall", "precision"}`` float lists (recall ascending, at most 200 points,
    6 decimals); empty when there are no positive rows.
    """
    from sklearn.metrics import precision_recall_curve

    target, score = _curve_inputs(y_true, y_prob)
    if target.max() == 0:
        return {"recall": [], "precision": []}
    precision, recall, _ = precision_recall_curve(target, score)
    recall, precision = _downsample(recall[::-1], precision[::-1])
    return {"recall": recall, "precision": precision}


def confusion_rows(
    y_true: np.ndarray, y_prob: np.ndarray, classes: Sequence[str]
) -> list[dict[str, str]]:
    """One ``{"actual": name, "predicted": name}`` dict per row, for DVC's confusion template."""
    y_true, y_prob = _check(y_true, y_prob, classes)
    y_pred = y_prob.argmax(axis=1)
    return [
        {"actual": classes[t], "predicted": classes[p]}
        for t, p in zip(y_true.tolist(), y_pred.tolist(), strict=True)
    ]


def _weighted_confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int, w: np.ndarray):
    """Confusion matrices ``(B, K, K)`` (rows true, cols predicted) for weight rows ``w (B, n)``."""
    cells, inverse = np.unique(y_true * k + y_pred, return_inverse=True)
    onehot = np.zeros((len(y_true), len(cells)))
    onehot[np.arange(len(y_true)), inverse] = 1.0
    cm = np.zeros((w.shape[0], k * k))
    cm[:, cells] = w @ onehot
    return cm.reshape(-1, k, k)


def _divide(num: np.ndarray, den: np.ndarray, fill: float) -> np.ndarray:
    """``num / den`` with ``fill`` where ``den == 0``, without warnings."""
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, fill), where=den > 0)


def _cm_metric(cm: np.ndarray, metric: str) -> np.ndarray:
    """Accuracy, balanced accuracy or macro F1 (sklearn semantics) per confusion matrix."""
    tp = np.diagonal(cm, axis1=1, axis2=2)
    actual, predicted = cm.sum(axis=2), cm.sum(axis=1)
    if metric == "accuracy":
        return _divide(tp.sum(axis=1), actual.sum(axis=1), np.nan)
    if metric == "balanced_accuracy":
        present = actual > 0
        recall = _divide(tp, actual, 0.0)
        return _divide(recall.sum(axis=1), present.sum(axis=1), np.nan)
    return _divide(2.0 * tp, actual + predicted, 0.0).mean(axis=1)


def _auc_ranks(y_true: np.ndarray, y_prob: np.ndarray) -> list[tuple[np.ndarray, ...]]:
    """What the weighted ROC AUC needs that no weight changes, computed once per model: for each
    scored class (class 1 if binary, every class if not), the positive rows, the negative rows
    in score order, and where each positive score falls among them (left and right ends)."""
    cols = [1] if y_prob.shape[1] == 2 else range(y_prob.shape[1])
    ranks = []
    for c in cols:
        score, positive = y_prob[:, c], y_true == c
        negatives = np.flatnonzero(~positive)
        order = negatives[np.argsort(score[negatives], kind="stable")]
        pos = np.flatnonzero(positive)
        lo = np.searchsorted(score[order], score[pos], side="left")
        hi = np.searchsorted(score[order], score[pos], side="right")
        ranks.append((pos, order, lo, hi))
    return ranks


def _weighted_auc(rank: tuple[np.ndarray, ...], w: np.ndarray) -> np.ndarray:
    """Weighted Mann-Whitney ROC AUC per weight row; ties count half; ``nan`` if undefined.

    AUC = sum over positives of w * (negative weight below + 0.5 * negative weight tied),
    divided by (total positive weight * total negative weight).
    """
    pos, order, lo, hi = rank
    cum = np.zeros((w.shape[0], len(order) + 1))
    np.cumsum(w[:, order], axis=1, out=cum[:, 1:])
    pos_w = w[:, pos]
    num = (pos_w * (cum[:, lo] + cum[:, hi])).sum(axis=1) * 0.5
    return _divide(num, pos_w.sum(axis=1) * cum[:, -1], np.nan)


def _weighted_metrics(
    y_true: np.ndarray, y_prob: np.ndarray, blocks: Iterable[np.ndarray], metrics: Sequence[str]
) -> dict[str, np.ndarray]:
    """Each requested metric for every weight row of each ``(b, n)`` block of weights, in
    order; the predictions' argmax and score order are worked out once for all blocks."""
    for m in metrics:
        if m not in BOOTSTRAP_METRICS:
            raise SluiceError(f"unknown metric {m!r}; choose from {', '.join(BOOTSTRAP_METRICS)}")
    cm_metrics = [m for m in metrics if m != "roc_auc"]
    predicted = y_prob.argmax(axis=1)
    ranks = _auc_ranks(y_true, y_prob) if "roc_auc" in metrics else []
    parts: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
    for w in blocks:
        if cm_metrics:
            cm = _weighted_confusion(y_true, predicted, y_prob.shape[1], w)
            for m in cm_metrics:
                parts[m].append(_cm_metric(cm, m))
        if ranks:  # class 1 if binary, else the one-vs-rest macro (nan if any class is)
            parts["roc_auc"].append(np.mean([_weighted_auc(r, w) for r in ranks], axis=0))
    return {m: np.concatenate(v) if v else np.empty(0) for m, v in parts.items()}


def _resample_blocks(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """``n_boot`` bootstrap resamples of ``n`` rows as ``(b, n)`` float matrices of how often
    each row is drawn, a block of ``b`` resamples at a time so that memory stays bounded on
    large test splits (the same seed, the same resamples, whatever the block size)."""
    rng = np.random.default_rng(seed)
    size = max(1, BOOTSTRAP_CELLS // max(n, 1))
    for start in range(0, n_boot, size):
        draws = [rng.integers(0, n, size=n) for _ in range(min(size, n_boot - start))]
        yield np.stack([np.bincount(d, minlength=n) for d in draws]).astype(np.float64)


def _interval(samples: np.ndarray, alpha: float) -> tuple[float, float]:
    """Percentile interval of the non-NaN samples; ``(nan, nan)`` when none are defined."""
    finite = samples[~np.isnan(samples)]
    if finite.size == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def metric_value(y_true: np.ndarray, y_prob: np.ndarray, metric: str) -> float:
    """One of ``accuracy``, ``balanced_accuracy``, ``f1_macro``, ``roc_auc`` on the full data.

    Same code path as the bootstrap (all weights one), so it agrees with the CIs and with
    :func:`compute_metrics`. Returns ``nan`` when the metric is undefined.
    """
    return float(bootstrap_samples(y_true, y_prob, np.ones((1, len(y_true))), metric)[0])


def bootstrap_samples(
    y_true: np.ndarray, y_prob: np.ndarray, counts: np.ndarray, metric: str
) -> np.ndarray:
    """``metric`` on every resample described by ``counts`` (B, n); ``nan`` where undefined.

    Pass the same ``counts`` for two models to get a paired bootstrap.
    """
    y_true, y_prob = _check(y_true, y_prob)
    counts = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    if counts.shape[1] != len(y_true):
        raise SluiceError(f"counts has {counts.shape[1]} columns for {len(y_true)} rows")
    return _weighted_metrics(y_true, y_prob, [counts], [metric])[metric]


def bootstrap_metrics(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    metrics: Sequence[str] = BOOTSTRAP_METRICS,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap ``(low, high)`` interval at level ``1 - alpha`` for each metric.

    Resamples are evaluated a block at a time from matrices of draw counts; resamples where a
    metric is undefined (e.g. a class missing for ROC AUC) are dropped.
    """
    y_true, y_prob = _check(y_true, y_prob)
    blocks = _resample_blocks(len(y_true), n_boot, seed)
    samples = _weighted_metrics(y_true, y_prob, blocks, list(metrics))
    return {m: _interval(samples[m], alpha) for m in metrics}


def paired_bootstrap_delta(
    y_true: np.ndarray,
    prob_a: np.ndarray,
    prob_b: np.ndarray,
    metric: str,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float | int]:
    """Paired bootstrap of ``metric(b) - metric(a)`` using the same resamples for both models.

    Returns ``{"a", "b", "delta", "low", "high", "n_boot"}``: point values on the full data,
    their difference ``b - a``, and the percentile interval of the per-resample differences.
    Challenger ``b`` beats champion ``a`` when ``low > 0``; undefined values are ``nan``.
    """
    y_true, prob_a = _check(y_true, prob_a)
    _, prob_b = _check(y_true, prob_b)
    if prob_a.shape != prob_b.shape:
        raise SluiceError(f"models disagree on shape: {prob_a.shape} vs {prob_b.shape}")
    a, b = metric_value(y_true, prob_a, metric), metric_value(y_true, prob_b, metric)
    # The same seed draws the same resamples for both models.
    samples = [
        _weighted_metrics(y_true, prob, _resample_blocks(len(y_true), n_boot, seed), [metric])
        for prob in (prob_a, prob_b)
    ]
    low, high = _interval(samples[1][metric] - samples[0][metric], alpha)
    return {"a": a, "b": b, "delta": b - a, "low": low, "high": high, "n_boot": int(n_boot)}
