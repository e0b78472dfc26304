"""End-to-end: `dvc repro` with resample.method gan on digits-lt, on small settings."""

import hashlib

import pandas as pd
import pytest
from conftest import make_project

pytestmark = pytest.mark.slow

GAN = {"epochs": 10, "hidden": 64}  # the wiring, not the rows' quality (benchmarks/gan.py)


@pytest.fixture(scope="module")
def gan_project(tmp_path_factory):
    params = {
        "data": {"name": "digits-lt"},
        "resample": {"method": "gan", "check_rows": 300, "gan": GAN},
        "evaluate": {"reference": []},
    }
    project = make_project(tmp_path_factory.mktemp("gan") / "proj", params)
    project.run("dvc", "repro")
    return project


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_gan_balances_the_training_split_and_reports_its_rows(gan_project):
    info = gan_project.read_json("reports/resample.json")
    assert info["method"] == "gan" and info["sampler"] == "GANOverSampler"
    assert len(set(info["counts_after"].values())) == 1  # every class as large as the largest
    check = info["synthetic"]
    assert check["rows_generated"] == info["rows_after"] - info["rows_before"] > 0
    assert 0.5 <= check["real_vs_synthetic_auc"] <= 1.0
    assert check["exact_copies"] == 0.0 and check["nearest_real_min"] > 0.0
    metrics = gan_project.read_json("reports/metrics.json")
    assert 0.0 <= metrics["base"]["f1_macro"] <= 1.0
    client = gan_project.mlflow_client()
    experiment = client.get_experiment_by_name("sluice")
    (run,) = client.search_runs([experiment.experiment_id], "tags.`sluice.role` = 'base'")
    assert run.data.params["resample.method"] == "gan"
    assert run.data.params["resample.gan.epochs"] == "10"


def test_new_rows_come_from_the_training_split_alone(gan_project):
    path = gan_project.path
    train = pd.read_parquet(path / "data/processed/train.parquet")
    out = pd.read_parquet(path / "data/processed/train_resampled.parquet")
    pd.testing.assert_frame_equal(out.iloc[: len(train)], train)
    new = out.iloc[len(train) :]
    pixels = [c for c in train.columns if c != "target"]
    held_out = pd.concat(
        [pd.read_parquet(path / f"data/processed/{name}.parquet") for name in ("val", "test")]
    )
    assert new[pixels].merge(held_out[pixels].drop_duplicates()).empty  # no val/test row
    assert new[pixels].merge(train[pixels].drop_duplicates()).empty  # nor a copy of train
    # The stage never reads val or test: with them replaced, it writes the same rows.
    before = _digest(path / "data/processed/train_resampled.parquet")
    for name in ("val", "test"):
        held_out.iloc[:3].to_parquet(path / f"data/processed/{name}.parquet")
    gan_project.stage("resample")
    assert _digest(path / "data/processed/train_resampled.parquet") == before
