"""Each tabular model family through the real pipeline: train, finetune, register, promote,
`sluice predict` and a real `mlflow models serve` process."""

import numpy as np
import pandas as pd
import pytest
from conftest import make_project
from lifecycle.test_serve import serve_rows

from sluice.model.bundle import load_bundle

pytestmark = pytest.mark.slow


def check_family_serves(project, family: str) -> None:
    """After a `dvc repro` with ``family``: both models are of it, the challenger is registered,
    and once promoted it is scored alike by its bundle, `sluice predict` and a served process."""
    for role in ("base", "finetuned"):
        assert project.read_json(f"models/{role}/model.json")["arch"] == family
    registered = project.read_json("reports/registered.json")
    name, challenger = registered["model_name"], registered["challenger"]["role"]
    version = registered["versions"][challenger]
    client = project.mlflow_client()
    assert client.get_model_version(name, version).tags["sluice.role"] == challenger

    project.run("sluice", "promote", "--version", version, "--force", "--reason", family)
    assert str(client.get_model_version_by_alias(name, "champion").version) == version
    test = pd.read_parquet(project.path / "data/processed/test.parquet")
    rows = test.drop(columns=["target"]).head(20)
    rows.to_csv(project.path / "rows.csv", index=False)
    project.run("sluice", "predict", "rows.csv", "-o", "preds.csv")
    predicted = pd.read_csv(project.path / "preds.csv")
    expected = load_bundle(project.path / "models" / challenger).predict_proba(rows)
    np.testing.assert_allclose(predicted[["prob_0", "prob_1"]].to_numpy(), expected, atol=1e-6)

    env = {**project.env, "MLFLOW_TRACKING_URI": project.tracking_uri}
    served = serve_rows(project.path, env, f"models:/{name}@champion", rows)
    np.testing.assert_allclose(served[["0", "1"]].to_numpy(), expected, atol=1e-6)


def test_linear_goes_from_training_to_serving(tmp_path):
    """(TabM, the default for tables, takes the same path in test_pipeline_binary.)"""
    params = {"data": {"name": "breast-cancer"}, "train": {"model": "linear"}}
    project = make_project(tmp_path / "proj", params)
    project.run("dvc", "repro")
    check_family_serves(project, "linear")
