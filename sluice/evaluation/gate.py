"""The promotion gate: a pure decision over two models' probabilities on the same test rows.

A challenger replaces the champion only if the primary metric improves by at least
``min_delta`` *and* the paired bootstrap's 95 % interval of the difference lies above zero, and
no guard metric drops by more than its tolerance. With no champion, the candidate must reach the
absolute floors. An undefined (NaN) metric never wins. Guards may also be calibration scores
(``ece``, ``brier``), for which lower is better: their tolerance is the largest allowed increase.
In both modes a challenger over any of ``promote.budgets`` (latency, size, training time; see
:mod:`sluice.evaluation.cost`) is refused. No IO, logging or tracking here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from sluice.config import LOWER_IS_BETTER, PromoteConfig
from sluice.evaluation.calibration import brier_score, expected_calibration_error
from sluice.evaluation.cost import BudgetCheck, check_budgets
from sluice.evaluation.metrics import metric_value, paired_bootstrap_delta


@dataclass(frozen=True)
class GuardCheck:
    """A guard metric on both models: ``drop``, how much worse the challenger is (champion -
    challenger; challenger - champion where lower is better), must be <= tolerance."""

    metric: str
    champion: float
    challenger: float
    drop: float
    tolerance: float
    ok: bool
    lower_is_better: bool = False


@dataclass(frozen=True)
class FloorCheck:
    """An absolute floor a first champion must reach."""

    metric: str
    value: float
    floor: float
    ok: bool


@dataclass(frozen=True)
class Verdict:
    """Every number behind a gate decision; ``passed`` is the decision, ``reasons`` the why.

    ``mode`` is ``compare`` (against a champion) or ``floors`` (no champion yet).
    ``delta``, ``ci_low`` and ``ci_high`` are challenger minus champion (``None`` in floors mode);
    ``primary_ok`` says whether the primary metric alone would pass; ``budgets`` holds the
    challenger's cost against each of ``promote.budgets``.
    """

    passed: bool
    mode: str
    metric: str
    challenger: float
    primary_ok: bool = False
    champion: float | None = None
    delta: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    min_delta: float = 0.0
    n_rows: int = 0
    n_boot: int = 0
    guards: tuple[GuardCheck, ...] = ()
    floors: tuple[FloorCheck, ...] = ()
    budgets: tuple[BudgetCheck, ...] = ()
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (NaN becomes ``None``), for history entries and version tags."""
        return _json_safe(asdict(self))


def decide(
    y_true: np.ndarray,
    prob_champion: np.ndarray | None,
    prob_challenger: np.ndarray,
    cfg: PromoteConfig,
    seed: int = 0,
    cost: Mapping[str, float] | None = None,
) -> Verdict:
    """Judge a challenger against the champion (or, without one, against the floors), and its
    cost against the budgets.

    Args:
        y_true: int class indices, shape (n,).
        prob_champion: champion probabilities (n, K) on the same rows, or None if no champion.
        prob_challenger: challenger probabilities (n, K).
        cfg: the ``promote`` params section (metric, min_delta, guards, floors, bootstrap).
        seed: seed of the bootstrap resamples (same seed, same verdict).
        cost: the challenger's cost record (:data:`sluice.evaluation.cost.COST_KEYS`); only
            read when ``cfg.budgets`` names a budget, and a budget it lacks is not met.

    Returns:
        A :class:`Verdict` with every number and the reasons for the decision.
    """
    if prob_champion is None:
        verdict = _judge_floors(y_true, prob_challenger, cfg)
    else:
        verdict = _judge_compare(y_true, prob_champion, prob_challenger, cfg, seed)
    if not cfg.budgets:
        return verdict
    budgets = check_budgets(cost, cfg.budgets)
    return replace(
        verdict,
        passed=verdict.passed and all(b.ok for b in budgets),
        budgets=budgets,
        reasons=(*verdict.reasons, *(b.line() for b in budgets)),
    )


def _judge_floors(y_true: np.ndarray, prob: np.ndarray, cfg: PromoteConfig) -> Verdict:
    """No champion yet: the primary metric must be defined and every floor reached."""
    value = metric_value(y_true, prob, cfg.metric)
    floors = tuple(_floor(y_true, prob, m, f) for m, f in cfg.floors.items())
    reasons = ["no champion yet: the candidate is judged against the absolute floors"]
    if not _finite(value):
        reasons.append(
            f"{cfg.metric} is undefined on the test split; an undefined metric never wins"
        )
    for check in floors:
        verb = "reaches" if check.ok else "misses"
        reasons.append(f"{check.metric} {_f(check.value)} {verb} the floor {check.floor:g}")
    passed = _finite(value) and all(c.ok for c in floors)
    return Verdict(
        passed=passed,
        mode="floors",
        metric=cfg.metric,
        challenger=value,
        primary_ok=_finite(value),
        n_rows=len(y_true),
        floors=floors,
        reasons=tuple(reasons),
    )


def _judge_compare(
    y_true: np.ndarray, prob_a: np.ndarray, prob_b: np.ndarray, cfg: PromoteConfig, seed: int
) -> Verdict:
    """Champion ``a`` vs challenger ``b`` on the same rows: primary metric, CI, then guards."""
    d = paired_bootstrap_delta(y_true, prob_a, prob_b, cfg.metric, n_boot=cfg.bootstrap, seed=seed)
    primary_ok, reasons = _primary(d, cfg)
    guards = tuple(_guard(y_true, prob_a, prob_b, m, t) for m, t in cfg.guards.items())
    for g in guards:
        verb = "within" if g.ok else "exceeds"
        change = "increase" if g.lower_is_better else "drop"
        reasons.append(
            f"guard {g.metric}: {_f(g.champion)} -> {_f(g.challenger)}, {change} {_f(g.drop)} "
            f"{verb} tolerance {g.tolerance:g}"
        )
    return Verdict(
        passed=primary_ok and all(g.ok for g in guards),
        mode="compare",
        metric=cfg.metric,
        challenger=d["b"],
        primary_ok=primary_ok,
        champion=d["a"],
        delta=d["delta"],
        ci_low=d["low"],
        ci_high=d["high"],
        min_delta=cfg.min_delta,
        n_rows=len(y_true),
        n_boot=d["n_boot"],
        guards=guards,
        reasons=tuple(reasons),
    )


def _primary(d: dict[str, float], cfg: PromoteConfig) -> tuple[bool, list[str]]:
    """Whether the primary metric's gain is large enough and holds under the bootstrap."""
    m, delta, low, high = cfg.metric, d["delta"], d["low"], d["high"]
    head = f"{m} {_f(d['a'])} -> {_f(d['b'])} ({_signed(delta)}, 95 % CI [{_f(low)}, {_f(high)}])"
    if not (_finite(d["a"]) and _finite(d["b"]) and _finite(low)):
        return False, [f"{head}: undefined on the test split; an undefined metric never wins"]
    if delta < cfg.min_delta:
        return False, [f"{head}: gain below min_delta {cfg.min_delta:g}"]
    if low <= 0:
        return False, [f"{head}: not a reliable gain, the interval's lower bound is not above 0"]
    return True, [f"{head}: a reliable gain of at least min_delta {cfg.min_delta:g}"]


def _guard(
    y_true: np.ndarray, prob_a: np.ndarray, prob_b: np.ndarray, metric: str, tolerance: float
) -> GuardCheck:
    """A guard holds if the challenger is defined and is worse by at most ``tolerance``."""
    a, b = _value(y_true, prob_a, metric), _value(y_true, prob_b, metric)
    lower = metric in LOWER_IS_BETTER
    drop = b - a if lower else a - b
    if not _finite(b):
        ok = False
    elif not _finite(a):
        ok = True  # nothing defined to drop from
    else:
        ok = drop <= tolerance
    return GuardCheck(metric, a, b, drop, tolerance, ok, lower)


def _value(y_true: np.ndarray, prob: np.ndarray, metric: str) -> float:
    """A guard metric on the full rows: a calibration score, or :func:`metric_value`."""
    if metric == "ece":
        return expected_calibration_error(y_true, prob)
    if metric == "brier":
        return brier_score(y_true, prob)
    return metric_value(y_true, prob, metric)


def _floor(y_true: np.ndarray, prob: np.ndarray, metric: str, floor: float) -> FloorCheck:
    value = metric_value(y_true, prob, metric)
    return FloorCheck(metric, value, floor, _finite(value) and value >= floor)


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _f(x: float | None) -> str:
    return f"{x:.4f}" if _finite(x) else "n/a"


def _signed(x: float | None) -> str:
    return f"{x:+.4f}" if _finite(x) else "n/a"


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj
