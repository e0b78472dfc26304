"""What a model costs to serve: latency, throughput and size, and the budgets a challenger must fit.

Latency is measured on the serving path itself (a raw feature frame in, probabilities out), warm
(a few untimed calls first) and on one torch thread, with ``time.perf_counter``. The record is a
flat dict of numbers (:data:`COST_KEYS`); :func:`check_budgets` holds it against
``promote.budgets``. No IO, logging or tracking here.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sluice.errors import SluiceError

WARMUP_CALLS = 2  # untimed calls per batch size before the timed ones
COST_KEYS = (
    "latency_p50_ms_b1",
    "latency_p95_ms_b1",
    "latency_p50_ms_b1024",
    "latency_p95_ms_b1024",
    "rows_per_s",
    "bundle_bytes",
    "param_count",
    "train_seconds",
)
# budget key -> (cost key, factor from the recorded number to the budget's unit, unit)
BUDGETS = {
    "latency_p95_ms": ("latency_p95_ms_b1", 1.0, "ms"),
    "size_mb": ("bundle_bytes", 1e-6, "MB"),
    "train_seconds": ("train_seconds", 1.0, "s"),
}


@dataclass(frozen=True)
class BudgetCheck:
    """One budget against the challenger's cost: ``value`` (NaN when not recorded) <= ``limit``."""

    budget: str
    value: float
    limit: float
    unit: str
    ok: bool

    def line(self) -> str:
        """One plain line: the budget, the challenger's value and the limit."""
        if not math.isfinite(self.value):
            return (
                f"budget {self.budget}: not recorded for this model; retrain it or drop the budget"
            )
        verb = "within" if self.ok else "over"
        value = f"{self.value:.4g} {self.unit}"
        return f"budget {self.budget}: {value} {verb} the limit {self.limit:g} {self.unit}"


def repeat_rows(rows: pd.DataFrame, n: int) -> pd.DataFrame:
    """``n`` rows: ``rows`` repeated in order (and cut) to reach exactly ``n``."""
    if rows.empty:
        raise SluiceError("no rows to measure latency on; the validation split is empty")
    return rows.iloc[np.resize(np.arange(len(rows)), n)].reset_index(drop=True)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one CPU thread inside the block; the previous count is restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


Clock = Callable[[], float]


def time_calls(
    call: Callable[[], Any],
    repeats: int,
    warmup: int = WARMUP_CALLS,
    clock: Clock = time.perf_counter,
) -> np.ndarray:
    """Seconds of each of ``repeats`` timed calls (by ``clock``), after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    seconds = np.empty(repeats)
    for i in range(repeats):
        started = clock()
        call()
        seconds[i] = clock() - started
    return seconds


def measure_latency(
    predict: Callable[[pd.DataFrame], Any],
    rows: pd.DataFrame,
    repeats: Mapping[int, int],
    clock: Clock = time.perf_counter,
) -> dict[str, float]:
    """Warm single-thread latency of ``predict`` at each batch size, and rows/s at the largest.

    Args:
        predict: the serving call, a raw feature frame -> probabilities.
        rows: raw feature rows to send (repeated to fill the largest batch).
        repeats: batch size (rows per call) -> timed calls, e.g. ``{1: 20, 1024: 5}``.
        clock: seconds as a float (``time.perf_counter``).

    Returns:
        ``latency_p50_ms_b<n>`` and ``latency_p95_ms_b<n>`` per batch size, and ``rows_per_s``
        (largest batch over its median call time).
    """
    out: dict[str, float] = {}
    with one_thread():
        for n, timed in repeats.items():
            batch = repeat_rows(rows, n)
            seconds = time_calls(lambda b=batch: predict(b), timed, clock=clock)
            p50, p95 = np.percentile(seconds, [50, 95]) * 1000.0
            out |= {f"latency_p50_ms_b{n}": float(p50), f"latency_p95_ms_b{n}": float(p95)}
    largest = max(repeats)
    out["rows_per_s"] = largest / (out[f"latency_p50_ms_b{largest}"] / 1000.0)
    return out


def cost_record(
    predict: Callable[[pd.DataFrame], Any],
    rows: pd.DataFrame,
    repeats: Mapping[int, int],
    bundle_bytes: int,
    param_count: int,
    train_seconds: float | None = None,
) -> dict[str, float]:
    """A model's cost: :func:`measure_latency` of ``predict`` on ``rows``, its bundle's size and
    parameter count, and its training time when known (all floats, keys in :data:`COST_KEYS`)."""
    cost = measure_latency(predict, rows, repeats)
    cost |= {"bundle_bytes": float(bundle_bytes), "param_count": float(param_count)}
    if train_seconds is not None:
        cost["train_seconds"] = float(train_seconds)
    return cost


def check_budgets(cost: Mapping[str, float] | None, budgets: Mapping[str, float]) -> tuple:
    """Each budget (``promote.budgets``) against the cost record: a :class:`BudgetCheck` each.

    A budget whose number the record lacks is not met (an unknown cost never passes).
    """
    checks = []
    for budget, limit in budgets.items():
        key, factor, unit = BUDGETS[budget]
        recorded = (cost or {}).get(key)
        value = float("nan") if recorded is None else float(recorded) * factor
        checks.append(
            BudgetCheck(budget, value, limit, unit, math.isfinite(value) and value <= limit)
        )
    return tuple(checks)
