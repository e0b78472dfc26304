"""Probabilities you can trust: temperature scaling, calibration scores and decision thresholds.

``y_true``: int class indices (n,); ``y_prob``: probabilities (n, K); ``logits``: (n, K) or, for
an ensemble such as TabM, (n, k, K), one set per member. K == 2 is binary with class 1 positive.
Pure functions: no IO, logging or tracking.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from sluice.errors import SluiceError

N_BINS = 15  # top-label ECE and the reliability diagram, as in Guo et al. (2017)
THRESHOLD_RULES = ("f1", "youden", "cost")
# The temperature is searched in [1/20, 20]: an optimum on a bound means validation alone
# cannot fix it (e.g. no misclassified row, where ever sharper probabilities keep "helping").
TEMPERATURE_BOUNDS = (0.05, 20.0)


def log_proba(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Log class probabilities (n, K) of ``logits / temperature``.

    An ensemble's (n, k, K) logits become the log of the members' mean softmax (its own
    logits) first, which the temperature then divides, as ``sluice.model.training.to_proba``
    does; in log space, so that confident rows do not underflow. A temperature thus never
    changes a row's most probable class, nor a binary model's ROC AUC.
    """
    from scipy.special import log_softmax, logsumexp

    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 3:  # (n, k, K) -> (n, K): log of the mean over members
        z = logsumexp(log_softmax(z, axis=-1), axis=1) - math.log(z.shape[1])
    return log_softmax(z / temperature, axis=-1)


def proba(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities (n, K) of ``logits / temperature`` (see :func:`log_proba`)."""
    return np.exp(log_proba(logits, temperature))


def nll(logits: np.ndarray, y_true: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (log loss) of the true classes at ``temperature``."""
    y = np.asarray(y_true, dtype=np.int64)
    return float(-log_proba(logits, temperature)[np.arange(len(y)), y].mean())


@dataclass(frozen=True)
class TemperatureFit:
    """A fitted temperature and the validation log loss before (T = 1) and after it."""

    temperature: float
    nll_before: float
    nll_after: float
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> TemperatureFit:
    """The temperature T > 0 that minimises the log loss of ``softmax(logits / T)``.

    Bounded Brent search over log T in :data:`TEMPERATURE_BOUNDS` (scipy). T > 1 softens an
    over-confident model, T < 1 sharpens an under-confident one; the argmax of every row stays
    the same. T = 1 is kept, and ``note`` says why, when the rows cannot pin
    the temperature down: every row is classified correctly (the log loss then keeps falling as
    T goes to 0, towards probabilities of exactly 0 and 1) or the optimum lies on the lower
    bound. T = 1 is also kept when no T lowers the log loss, and when sharpening (T < 1) does
    not hold up under 5-fold cross-validation on the same rows. An optimum on the upper bound
    is kept (near-uniform probabilities: the scores say little), with a ``note``.
    """
    y = np.asarray(y_true, dtype=np.int64)
    if len(y) == 0 or len(logits) != len(y):
        raise SluiceError(f"{len(logits)} rows of logits for {len(y)} labels; need n > 0 of each")
    before = nll(logits, y)
    if (log_proba(logits).argmax(axis=1) == y).all():
        note = "every validation row is classified correctly: no finite temperature is best"
        return TemperatureFit(1.0, before, before, f"{note}, so T = 1 is kept")
    low, high = (math.log(b) for b in TEMPERATURE_BOUNDS)
    log_t = _best_log_temperature(logits, y)
    temperature, note = math.exp(log_t), ""
    if log_t - low < 1e-3:  # sharpening without end: not to be trusted on new rows
        temperature = 1.0
        note = (
            f"the log loss keeps falling towards T = {TEMPERATURE_BOUNDS[0]:g} (the lower "
            "bound): the validation rows cannot fix a temperature, so T = 1 is kept"
        )
    elif high - log_t < 1e-3:  # softening is safe: the probabilities approach uniform
        note = (
            f"the log loss keeps falling towards T = {TEMPERATURE_BOUNDS[1]:g} (the upper "
            "bound): the scores carry little information on the validation rows"
        )
    elif temperature < 1.0 and not _sharpening_holds_out(logits, y):
        temperature = 1.0
        note = (
            "sharpening fitted on part of the validation rows raised the log loss of the rest "
            "(5-fold cross-validation), so T = 1 is kept"
        )
    after = nll(logits, y, temperature)
    if not after < before:
        temperature, after = 1.0, before
    return TemperatureFit(temperature, before, after, note)


def _best_log_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """log T minimising the log loss (bounded Brent search over :data:`TEMPERATURE_BOUNDS`)."""
    from scipy.optimize import minimize_scalar

    low, high = (math.log(b) for b in TEMPERATURE_BOUNDS)
    found = minimize_scalar(
        lambda log_t: nll(logits, y, math.exp(log_t)),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(found.x)


def _sharpening_holds_out(logits: np.ndarray, y: np.ndarray, folds: int = 5) -> bool:
    """Whether a temperature fitted on 4/5 of the rows lowers the log loss of the other fifth,
    summed over the 5 folds, compared with T = 1.

    Sharpening (T < 1) fitted on a small validation split with few errors can go far and cost
    dearly on the next confident error; this asks the rows themselves whether it carries over.
    """
    rows = np.arange(len(y))
    fitted, plain = 0.0, 0.0
    for k in range(min(folds, len(y))):
        held = rows % folds == k
        t = math.exp(_best_log_temperature(logits[~held], y[~held]))
        fitted += nll(logits[held], y[held], t) * held.sum()
        plain += nll(logits[held], y[held]) * held.sum()
    return fitted < plain


def _confidence_bins(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int):
    """Top-label confidence, correctness and bin index (bins (i/n, (i+1)/n]) per row."""
    y_prob = np.asarray(y_prob, dtype=np.float64)
    conf = y_prob.max(axis=1)
    correct = (y_prob.argmax(axis=1) == np.asarray(y_true)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return conf, correct, np.searchsorted(edges[1:-1], conf, side="left"), edges


def expected_calibration_error(
    y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = N_BINS
) -> float:
    """Top-label ECE: sum over equal-width confidence bins of |accuracy - confidence| weighted
    by the bin's share of rows (Guo et al. 2017, 15 bins). 0 is perfectly calibrated."""
    conf, correct, bins, _ = _confidence_bins(y_true, y_prob, n_bins)
    count = np.bincount(bins, minlength=n_bins)
    gap = np.bincount(bins, correct - conf, minlength=n_bins)  # sum of (correct - conf) per bin
    return float(np.abs(gap).sum() / max(count.sum(), 1))


def reliability_bins(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = N_BINS) -> list[dict]:
    """The reliability diagram's data: one row per non-empty top-label confidence bin.

    Returns ``[{"bin_low", "bin_high", "confidence" (mean in bin), "accuracy", "count"}]``
    (6 decimals), lowest bin first; a calibrated model has accuracy == confidence.
    """
    conf, correct, bins, edges = _confidence_bins(y_true, y_prob, n_bins)
    count = np.bincount(bins, minlength=n_bins)
    mean_conf = np.bincount(bins, conf, minlength=n_bins)
    hits = np.bincount(bins, correct, minlength=n_bins)
    return [
        {
            "bin_low": round(float(edges[i]), 6),
            "bin_high": round(float(edges[i + 1]), 6),
            "confidence": round(float(mean_conf[i] / count[i]), 6),
            "accuracy": round(float(hits[i] / count[i]), 6),
            "count": int(count[i]),
        }
        for i in np.flatnonzero(count)
    ]


def brier_score(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """Brier score, as scikit-learn's ``brier_score_loss``: multi-class, the mean over rows of
    the summed squared differences to the one-hot label (0..2); binary, the mean of
    (p1 - y)^2 (0..1)."""
    p = np.asarray(y_prob, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    # sum_k (p_k - [k = y])^2 = sum_k p_k^2 - 2 p_y + 1, without an (n, K) one-hot matrix
    squared = ((p * p).sum(axis=1) - 2 * p[np.arange(len(y)), y] + 1).mean()
    return float(squared / 2 if p.shape[1] == 2 else squared)


def log_loss(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """Mean negative log-probability of the true classes, as scikit-learn's ``log_loss``
    (infinite when a true class has probability 0)."""
    p = np.asarray(y_prob, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    with np.errstate(divide="ignore"):
        return float(-np.log(p[np.arange(len(y)), y]).mean())


def calibration_scores(y_true: np.ndarray, y_prob: np.ndarray) -> dict[str, float]:
    """``{"log_loss", "ece", "brier"}`` of one set of probabilities (lower is better).

    Computed here rather than by scikit-learn, whose import (about 0.6 CPU-s) training and
    fine-tuning would otherwise pay for these two sums alone; tests check both against it.
    """
    return {
        "log_loss": log_loss(y_true, y_prob),
        "ece": expected_calibration_error(y_true, y_prob),
        "brier": brier_score(y_true, y_prob),
    }


def decision_scores(
    y_true: np.ndarray,
    p_positive: np.ndarray,
    threshold: float,
    costs: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Binary labels ``p_positive >= threshold``: precision, recall (TPR) and F1 of the
    positive class, FPR, balanced accuracy, and with ``costs`` ({"fp", "fn"}) the mean cost
    per row."""
    y = np.asarray(y_true) == 1
    pred = np.asarray(p_positive) >= threshold
    tp, fp = float(np.sum(pred & y)), float(np.sum(pred & ~y))
    fn, tn = float(np.sum(~pred & y)), float(np.sum(~pred & ~y))
    recall, fpr = _ratio(tp, tp + fn), _ratio(fp, fp + tn)
    out = {
        "threshold": float(threshold),
        "precision": _ratio(tp, tp + fp),
        "recall": recall,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "fpr": fpr,
        "balanced_accuracy": (recall + 1.0 - fpr) / 2,
    }
    if costs is not None:
        out["cost_per_row"] = (costs["fp"] * fp + costs["fn"] * fn) / len(y)
    return out


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


def choose_threshold(
    y_true: np.ndarray,
    p_positive: np.ndarray,
    rule: str,
    costs: Mapping[str, float] | None = None,
) -> dict:
    """The decision threshold on the positive class's probability, chosen on these rows.

    Rules: ``f1`` maximises the positive class's F1, ``youden`` maximises TPR - FPR, ``cost``
    minimises ``costs["fp"] * FP + costs["fn"] * FN`` (the empirical expected cost). The
    threshold lies midway between the two scores the optimum separates (the same labels on
    these rows, less tied to any one of them); ties go to the threshold nearest 0.5.

    Returns:
        ``{"rule", "threshold", "val": decision_scores(...)}`` (+ ``costs``, or a ``note``
        when these rows hold a single class and 0.5 is kept).
    """
    from sklearn.metrics import roc_curve

    if rule not in THRESHOLD_RULES:
        raise SluiceError(f"unknown threshold rule {rule!r}; use one of {THRESHOLD_RULES}")
    if rule == "cost" and costs is None:
        raise SluiceError("the cost rule needs costs {fp, fn}")
    y, p = np.asarray(y_true) == 1, np.asarray(p_positive, dtype=np.float64)
    out: dict = {"rule": rule, "threshold": 0.5}
    if rule == "cost":
        out["costs"] = dict(costs)
    if y.all() == y.any():
        out["note"] = "the validation rows hold a single class: threshold 0.5 kept"
    else:
        fpr, tpr, scores = roc_curve(y, p, drop_intermediate=False)  # scores descending
        n_pos, n_neg = y.sum(), (~y).sum()
        tp, fp = tpr * n_pos, fpr * n_neg
        value = {
            "f1": lambda: _ratio_array(2 * tp, 2 * tp + fp + (n_pos - tp)),
            "youden": lambda: tpr - fpr,
            "cost": lambda: -(costs["fp"] * fp + costs["fn"] * (n_pos - tp)),
        }[rule]()
        mids = _midpoints(scores[1:])
        best = np.flatnonzero(value >= value.max() - 1e-12)
        out["threshold"] = float(mids[best[np.argmin(np.abs(mids[best] - 0.5))]])
    out["val"] = decision_scores(y, p, out["threshold"], costs)
    return out


def _midpoints(scores: np.ndarray) -> np.ndarray:
    """Thresholds for the label sets of ``roc_curve``: set i makes the top i distinct scores
    (descending) positive, so its threshold lies between the i-th and the (i+1)-th score."""
    above = np.concatenate([[np.inf], scores])  # the lowest positive score (none for set 0)
    below = np.concatenate([scores, [0.0]])  # the highest negative score
    mids = (above + below) / 2
    # Rounding may land a midpoint on the score below it: step just above that score.
    mids[1:-1] = np.maximum(mids[1:-1], np.nextafter(below[1:-1], np.inf))
    mids[0] = max((scores[0] + 1.0) / 2, np.nextafter(scores[0], np.inf))  # no row positive
    return mids


def _ratio_array(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)
