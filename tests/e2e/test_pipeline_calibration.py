"""End-to-end calibration: `dvc repro` on breast-cancer with the cost rule; the temperature and
threshold fitted on validation travel in the bundles, into the reports, MLflow, the registered
versions and `sluice predict`.

The pipeline trains the linear family, which the last test takes through registration,
promotion, `sluice predict` and a served process (TabM, the default for tables, takes the same
path in test_pipeline_binary): one `dvc repro` for both."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import make_project
from pipeline_checks import check_family_serves

pytestmark = pytest.mark.slow

MODELS = ("base", "finetuned")
COSTS = {"fp": 1.0, "fn": 4.0}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    params = {
        "data": {"name": "breast-cancer"},
        "train": {"model": "linear"},
        "evaluate": {
            "threshold": "cost",
            "costs": COSTS,
            "reference": [],
            "bootstrap": 0,
            "figures": True,
        },
    }
    project = make_project(tmp_path_factory.mktemp("calibration") / "proj", params)
    result = project.run("dvc", "repro")
    return project, result.stdout + result.stderr


def test_bundles_carry_a_temperature_and_a_threshold_fitted_on_val(pipeline):
    project, output = pipeline
    for role in MODELS:
        spec = project.read_json(f"models/{role}/model.json")
        cal, decision = spec["calibration"], spec["decision"]
        assert cal["fitted_on"] == "val" and cal["temperature"] > 0
        assert cal["val_after"]["log_loss"] <= cal["val_before"]["log_loss"]
        assert decision["rule"] == "cost" and decision["costs"] == COSTS
        assert 0 < decision["threshold"] < 1 and decision["positive_class"] == "1"
        assert f"calibration of {role} (temperature {cal['temperature']:.3f}" in output


def test_reports_hold_calibration_before_and_after_and_reliability_plots(pipeline):
    project, _ = pipeline
    metrics = project.read_json("reports/metrics.json")
    n_test = len(pd.read_parquet(project.path / "data/processed/test.parquet"))
    for role in MODELS:
        m = metrics[role]
        spec = project.read_json(f"models/{role}/model.json")
        assert m["temperature"] == spec["calibration"]["temperature"]
        for key in ("ece", "brier", "log_loss"):
            assert 0 <= m[key] < 1 and 0 <= m["uncalibrated"][key] < 1
        assert abs(m["roc_auc"] - m["uncalibrated"]["roc_auc"]) < 0.01
        assert m["decision"]["threshold"] == spec["decision"]["threshold"]
        assert set(m["decision"]) >= {"precision", "recall", "f1", "cost_per_row"}
        for suffix in ("", "_uncalibrated"):
            bins = project.read_json(f"reports/plots/reliability_{role}{suffix}.json")
            assert sum(b["count"] for b in bins) == n_test
            assert all(b["bin_low"] <= b["confidence"] <= b["bin_high"] for b in bins)
    shown = project.run("dvc", "plots", "show", "--json").stdout
    assert "Reliability (test)" in shown and "reliability_finetuned.json" in shown


def test_runs_and_versions_record_the_calibration(pipeline):
    project, _ = pipeline
    client = project.mlflow_client()
    experiment = client.get_experiment_by_name("sluice")
    runs = client.search_runs([experiment.experiment_id])
    runs = {r.data.tags["sluice.role"]: r for r in runs if "sluice.role" in r.data.tags}
    registered = project.read_json("reports/registered.json")
    for role in MODELS:
        metrics = runs[role].data.metrics
        assert metrics["val_log_loss_calibrated"] <= metrics["val_log_loss_uncalibrated"]
        assert {"temperature", "decision_threshold", "test_ece", "test_uncalibrated_ece"} <= set(
            metrics
        )
        artifacts = {a.path for a in client.list_artifacts(runs[role].info.run_id, "eval")}
        assert {"eval/reliability.png", "eval/reliability.json"} <= artifacts
        version = client.get_model_version(registered["model_name"], registered["versions"][role])
        threshold = project.read_json(f"models/{role}/model.json")["decision"]["threshold"]
        assert version.tags["sluice.decision"] == f"p(1) >= {threshold:.4f} (cost)"


def test_predict_labels_under_the_challengers_threshold(pipeline):
    project, _ = pipeline
    chosen = project.read_json("reports/registered.json")["challenger"]["role"]
    threshold = project.read_json(f"models/{chosen}/model.json")["decision"]["threshold"]
    target = project.read_json("reports/clean.json")["target"]
    test = pd.read_parquet(project.path / "data/processed/test.parquet")
    test.drop(columns=[target]).to_csv(project.path / "rows.csv", index=False)
    project.run("sluice", "predict", "rows.csv", "-o", "preds.csv", "--model", "challenger")
    out = pd.read_csv(project.path / "preds.csv", dtype={"predicted": str})
    assert (out["predicted"] == (out["prob_1"] >= threshold).map({True: "1", False: "0"})).all()


def test_linear_goes_from_training_to_serving(pipeline):
    project, _ = pipeline
    check_family_serves(project, "linear")
