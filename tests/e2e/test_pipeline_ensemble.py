"""A 3-fold cross-validated ensemble through the real `dvc repro`: one bundle and one registered
version per model, whose pyfunc averages the three networks exactly as by hand."""

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import Project, make_project
from safetensors.torch import load_file

from sluice.model.nets import build_net
from sluice.model.preprocess import Preprocessor

pytestmark = pytest.mark.slow

FOLDS = 3
PARAMS = {
    "data": {"name": "breast-cancer"},
    "train": {"model": "mlp", "hidden": [32, 16], "folds": FOLDS},
    "evaluate": {"reference": []},
}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("ensemble") / "proj", PARAMS)
    project.repro_output = project.run("dvc", "repro").stderr
    return project


def average_by_hand(bundle_dir, rows: pd.DataFrame) -> np.ndarray:
    """Each member rebuilt from model.json and its slice of model.safetensors, softmax,
    averaged, then the temperature on the log of the average."""
    import json

    spec = json.loads((bundle_dir / "model.json").read_text())
    state = load_file(bundle_dir / "model.safetensors")
    X = torch.from_numpy(Preprocessor.from_dict(spec["preprocessor"]).transform(rows))
    probs = []
    for i in range(spec["ensemble"]["members"]):
        net = build_net(spec["arch"], spec["args"])
        prefix = f"members.{i}."
        net.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
        with torch.no_grad():
            probs.append(torch.softmax(net.eval()(X).double(), dim=-1).numpy())
    z = np.log(np.mean(probs, axis=0)) / spec["calibration"]["temperature"]
    return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


def test_the_registered_version_averages_the_fold_networks(pipeline):
    import mlflow

    spec = pipeline.read_json("models/base/model.json")
    assert spec["ensemble"]["members"] == FOLDS and spec["ensemble"]["folds"] == FOLDS
    assert spec["calibration"]["fitted_on"] == "out_of_fold"
    registered = pipeline.read_json("reports/registered.json")
    name = registered["model_name"]
    client = pipeline.mlflow_client()
    versions = client.search_model_versions(f"name='{name}'")
    assert sorted(v.tags["sluice.role"] for v in versions) == ["base", "finetuned"]
    model = mlflow.pyfunc.load_model(
        client.get_model_version_download_uri(name, registered["versions"]["base"])
    )
    rows = pd.read_parquet(pipeline.path / "data/processed/test.parquet").drop(columns="target")
    served = model.predict(rows)
    expected = average_by_hand(pipeline.path / "models/base", rows)
    np.testing.assert_allclose(served[["0", "1"]].to_numpy(), expected, atol=1e-6)
    # The members differ: an average of one network copied three times would not test much.
    state = load_file(pipeline.path / "models/base/model.safetensors")
    assert not torch.equal(state["members.0.head.weight"], state["members.1.head.weight"])


def test_the_run_holds_the_cross_validation_estimate_and_member_curves(pipeline):
    spec = pipeline.read_json("models/base/model.json")
    cv = spec["ensemble"]["cv"]["f1_macro"]
    assert len(cv["folds"]) == FOLDS and cv["mean"] == pytest.approx(np.mean(cv["folds"]))
    client = pipeline.mlflow_client()
    run = client.get_run(spec["lineage"]["run_id"])
    assert run.data.metrics["cv_f1_macro_mean"] == pytest.approx(cv["mean"])
    assert run.data.metrics["cv_f1_macro_std"] == pytest.approx(cv["std"])
    assert run.data.tags["sluice.ensemble"] == f"{FOLDS} folds x 1 seeds"
    for i in range(FOLDS):
        curve = client.get_metric_history(run.info.run_id, f"member{i}/val_loss")
        assert len(curve) >= spec["ensemble"]["best_epochs"][i] >= 1
    history = pd.read_csv(pipeline.path / "reports/train/base.csv")
    assert history["members"].iloc[0] == FOLDS


def test_fine_tuning_keeps_each_members_frozen_modules(pipeline):
    base = load_file(pipeline.path / "models/base/model.safetensors")
    tuned = load_file(pipeline.path / "models/finetuned/model.safetensors")
    assert pipeline.read_json("models/finetuned/model.json")["ensemble"]["members"] == FOLDS
    for i in range(FOLDS):  # finetune.freeze: [features.0, features.1] in every member
        frozen = f"members.{i}.features.0.weight"
        assert torch.equal(base[frozen], tuned[frozen])
        assert not torch.equal(base[f"members.{i}.head.weight"], tuned[f"members.{i}.head.weight"])


def test_a_seed_ensemble_shares_the_training_rows_and_calibrates_on_val(pipeline, tmp_path):
    copy = Project(tmp_path / "proj", pipeline.env)  # this module's other checks keep theirs
    shutil.copytree(pipeline.path, copy.path, symlinks=True)
    copy.set_params({"train": {"folds": 1, "ensemble_seeds": 2}})
    copy.stage("train")
    spec = copy.read_json("models/base/model.json")
    ensemble = spec["ensemble"]
    assert (ensemble["members"], ensemble["folds"], ensemble["seeds"][0]) == (2, 1, 0)
    assert "cv" not in ensemble and spec["calibration"]["fitted_on"] == "val"


def test_the_challenger_is_chosen_on_out_of_fold_scores(pipeline):
    """Validation rows trained k - 1 of the networks, so the choice uses the CV estimates."""
    chosen = pipeline.read_json("reports/registered.json")["challenger"]
    assert chosen["chosen_on"] == "cross-validation"
    for role in ("base", "finetuned"):
        cv = pipeline.read_json(f"models/{role}/model.json")["ensemble"]["cv"]
        assert chosen["val_scores"][role]["f1_macro"] == pytest.approx(cv["f1_macro"]["mean"])
    assert "chosen on out-of-fold (cross-validation)" in pipeline.repro_output
    assert "fitted on out-of-fold)" in pipeline.repro_output
