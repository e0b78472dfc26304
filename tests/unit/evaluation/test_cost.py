"""What a model costs: latency on the serving path, size, budgets, and the error rates."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import params_error

from sluice.config import PromoteConfig, load_params
from sluice.config.evaluate import BUDGET_KEYS, LatencyRepeats
from sluice.errors import SluiceError
from sluice.evaluation.cost import (
    BUDGETS,
    COST_KEYS,
    WARMUP_CALLS,
    check_budgets,
    cost_record,
    measure_latency,
    repeat_rows,
)
from sluice.evaluation.metrics import compute_metrics

ROWS = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "z"]})


class Ticks:
    """A clock that only moves when a call spends time: ``spend`` seconds per row sent."""

    def __init__(self, per_row: float, overhead: float) -> None:
        self.now, self.per_row, self.overhead = 0.0, per_row, overhead
        self.batches: list[int] = []
        self.threads: list[int] = []

    def __call__(self) -> float:
        return self.now

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.batches.append(len(frame))
        self.threads.append(torch.get_num_threads())
        self.now += self.overhead + self.per_row * len(frame)
        return np.zeros((len(frame), 2))


def test_rows_are_repeated_in_order_to_fill_a_batch():
    batch = repeat_rows(ROWS, 7)
    assert batch["a"].tolist() == [1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0]
    assert list(batch.index) == list(range(7))
    assert repeat_rows(ROWS, 2)["b"].tolist() == ["x", "y"]
    with pytest.raises(SluiceError, match="no rows to measure latency on"):
        repeat_rows(ROWS.head(0), 4)


def test_latency_is_warm_on_one_thread_and_restores_the_thread_count():
    clock = Ticks(per_row=1e-6, overhead=1e-3)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = measure_latency(clock.predict, ROWS, {1: 5, 1024: 4}, clock=clock)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert clock.batches == [1] * (WARMUP_CALLS + 5) + [1024] * (WARMUP_CALLS + 4)
    assert set(clock.threads) == {1}
    # 1 ms overhead + 1 us per row: every call at a batch size takes the same time.
    assert out["latency_p50_ms_b1"] == pytest.approx(1.001)
    assert out["latency_p95_ms_b1024"] == pytest.approx(1.0 + 1.024)
    assert out["rows_per_s"] == pytest.approx(1024 / 2.024e-3)


def test_p95_reaches_into_the_slow_tail_and_p50_does_not():
    clock = Ticks(per_row=0.0, overhead=0.0)
    slow = iter([0.001] * WARMUP_CALLS + [0.001] * 18 + [0.050, 0.100])

    def predict(frame):
        clock.now += next(slow)

    out = measure_latency(predict, ROWS, {1: 20}, clock=clock)
    assert out["latency_p50_ms_b1"] == pytest.approx(1.0)
    assert out["latency_p95_ms_b1"] == pytest.approx(np.percentile([1.0] * 18 + [50, 100], 95))
    assert out["latency_p95_ms_b1"] > 10


def tiny_bundle(tmp_path):
    """A real (untrained) MLP bundle on two numeric columns and one categorical column."""
    from sluice.model.bundle import load_bundle, save_bundle
    from sluice.model.nets import MLP
    from sluice.model.preprocess import Preprocessor

    frame = pd.DataFrame({"a": np.arange(40.0), "b": np.arange(40.0) ** 2, "c": ["u", "v"] * 20})
    pre = Preprocessor({"a": "numeric", "b": "numeric", "c": "categorical"}).fit(frame)
    torch.manual_seed(0)
    net = MLP(pre.n_outputs, 2, [8], 0.0)
    args = {"n_inputs": pre.n_outputs, "n_classes": 2, "hidden": [8], "dropout": 0.0}
    spec = {"arch": "mlp", "args": args, "classes": ["no", "yes"], "preprocessor": pre.to_dict()}
    save_bundle(tmp_path / "bundle", net, {**spec, "lineage": {}})
    return tmp_path / "bundle", load_bundle(tmp_path / "bundle"), frame


def test_a_real_bundle_is_timed_on_its_serving_path(tmp_path):
    bundle, clf, frame = tiny_bundle(tmp_path)
    size = sum(f.stat().st_size for f in bundle.iterdir())
    n_params = sum(p.numel() for p in clf.net.parameters())
    repeats = {1: 5, 1024: 3}
    cost = cost_record(clf.predict_proba, frame, repeats, bundle_bytes=size, param_count=n_params)
    assert set(cost) == set(COST_KEYS) - {"train_seconds"}
    assert all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in cost.values())
    assert cost["latency_p50_ms_b1"] <= cost["latency_p95_ms_b1"]
    assert cost["bundle_bytes"] == size and cost["param_count"] == n_params
    with pytest.raises(SluiceError, match="missing required column"):  # raw columns in
        cost_record(clf.predict_proba, frame[["a"]], repeats, size, n_params)


def test_training_logs_the_cost_and_keeps_it_in_the_bundle(tmp_path, monkeypatch):
    import mlflow

    from sluice.model.bundle import load_bundle
    from sluice.pipeline.costing import record_cost
    from sluice.tracking.store import connect

    bundle, clf, frame = tiny_bundle(tmp_path)
    size = sum(f.stat().st_size for f in bundle.iterdir())
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    with mlflow.start_run(experiment_id=connect("cost")) as run:
        mlflow.log_metric("train_seconds", 12.5)
        cost = record_cost(bundle, frame.assign(label="no"), LatencyRepeats(b1=5, b1024=3))
    metrics = mlflow.get_run(run.info.run_id).data.metrics
    assert {k: metrics[k] for k in COST_KEYS} == pytest.approx(cost)
    assert cost["train_seconds"] == 12.5 and cost["bundle_bytes"] == size
    spec = json.loads((bundle / "model.json").read_text())
    assert spec["cost"] == {**cost, "measured_on": "val", "repeats": {"b1": 5, "b1024": 3}}
    assert load_bundle(bundle).spec["weights_sha256"] == clf.spec["weights_sha256"]


@pytest.mark.parametrize(
    ("budgets", "ok", "line"),
    [
        ({"latency_p95_ms": 5}, [True], "budget latency_p95_ms: 4.2 ms within the limit 5 ms"),
        ({"latency_p95_ms": 4}, [False], "budget latency_p95_ms: 4.2 ms over the limit 4 ms"),
        ({"size_mb": 2.5}, [False], "budget size_mb: 3 MB over the limit 2.5 MB"),
        ({"train_seconds": 60}, [False], "budget train_seconds: not recorded for this model"),
        ({"size_mb": 20, "latency_p95_ms": 1}, [True, False], "budget latency_p95_ms: 4.2 ms"),
    ],
)
def test_budgets_name_the_budget_the_value_and_the_limit(budgets, ok, line):
    cost = {"latency_p95_ms_b1": 4.2, "bundle_bytes": 3_000_000.0}
    checks = check_budgets(cost, budgets)
    assert [c.ok for c in checks] == ok
    assert [c.budget for c in checks] == list(budgets)
    assert checks[-1].line().startswith(line)


def test_without_a_cost_record_no_budget_is_met():
    (check,) = check_budgets(None, {"size_mb": 100})
    assert not check.ok and math.isnan(check.value)


def test_budget_keys_in_params_are_the_ones_the_gate_knows():
    assert set(BUDGETS) == set(BUDGET_KEYS)
    assert set(PromoteConfig(budgets=dict.fromkeys(BUDGETS, 1.0)).budgets) == set(BUDGETS)


@pytest.mark.parametrize(
    ("budgets", "error"),
    [
        ("{latency: 5}", "bad value 'latency' for 'promote.budgets'; use one of latency_p95_ms"),
        ("{size_mb: 0}", "bad value 0.0 for 'promote.budgets.size_mb'; give a limit above 0"),
        ("{size_mb: fast}", "bad value 'fast' for 'promote.budgets.size_mb'; expected a number"),
    ],
)
def test_a_bad_budget_is_one_line_naming_the_key(tmp_path, budgets, error):
    message = params_error(tmp_path, f"promote:\n  budgets: {budgets}\n")
    assert message.startswith(f"params.yaml: {error}")


def test_budgets_in_params_parse(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("promote:\n  budgets: {latency_p95_ms: 5, size_mb: 20.5}\n")
    assert load_params(path).promote.budgets == {"latency_p95_ms": 5.0, "size_mb": 20.5}
    assert load_params(path).evaluate.latency_repeats.by_batch() == {1: 20, 1024: 5}


def test_error_rates_are_the_complements_of_accuracy_and_balanced_accuracy():
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    pred = np.array([0, 0, 0, 0, 0, 1, 1, 0])  # 2 wrong of 8; class recalls 5/6 and 1/2
    prob = np.eye(2)[pred] * 0.8 + 0.1
    m = compute_metrics(y, prob, ["a", "b"])
    assert m["error_rate"] == pytest.approx(2 / 8)
    assert m["balanced_error_rate"] == pytest.approx(1 - (5 / 6 + 1 / 2) / 2)


def test_the_summary_shows_each_models_latency_and_size():
    from sluice.evaluation.scoring import HEADLINE
    from sluice.pipeline.publish import summary

    metrics = dict.fromkeys(HEADLINE, 0.9)
    cost = {"latency_p95_ms_b1": 0.43219, "bundle_bytes": 1_234_567.0}
    results = {"base": {"metrics": metrics, "cost": cost}, "logreg": {"metrics": metrics}}
    selection = {"role": "base", "val_scores": {"base": {"roc_auc": 0.9}}}
    text = summary(results, {"base": "4"}, selection)
    header = next(line for line in text.splitlines() if "┃" in line)
    assert "p95 ms (b1)" in header and " MB " in header
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if "│" in line]
    assert rows[0][0] == "base" and rows[0][-3:] == ["0.432", "1.235", "4"]
    assert rows[1][0] == "logreg" and rows[1][-3:] == ["-", "-", "-"]
