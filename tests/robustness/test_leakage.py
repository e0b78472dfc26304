"""No leakage: no feature row in two splits, resampling sees only train, preprocessing is fitted on
the training split only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from sluice.config import CleanConfig
from sluice.data.cleaning import clean_table, feature_types
from sluice.data.splitting import stratified_split
from sluice.model.preprocess import Preprocessor

from .conftest import TARGET, copy_project, messy_frame

SPLITS = ("train", "val", "test")


def _row_keys(frame: pd.DataFrame) -> set[int]:
    """Hashes of the feature rows (NaN equal to NaN), the identity of a row for leakage."""
    return set(pd.util.hash_pandas_object(frame.drop(columns=[TARGET]), index=False))


def _assert_disjoint(parts: dict[str, pd.DataFrame]) -> None:
    keys = {name: _row_keys(part) for name, part in parts.items()}
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            assert not keys[a] & keys[b], f"{len(keys[a] & keys[b])} rows in both {a} and {b}"


def _read_splits(project) -> dict[str, pd.DataFrame]:
    return {n: pd.read_parquet(project.path / f"data/processed/{n}.parquet") for n in SPLITS}


@pytest.mark.slow
def test_no_cleaned_feature_row_is_in_two_splits(messy_pipeline):
    parts = _read_splits(messy_pipeline)
    _assert_disjoint(parts)
    clean = pd.read_parquet(messy_pipeline.path / "data/interim/clean.parquet")
    assert sum(map(len, parts.values())) == len(clean)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kept_duplicates_stay_together_in_one_split(seed):
    """With clean.duplicates: keep, identical rows are one group for the split."""
    raw = messy_frame(300, seed=seed).drop(columns=["id"])
    raw = pd.concat([raw, raw.sample(frac=0.3, random_state=seed)], ignore_index=True)
    cleaned, report = clean_table(
        raw, TARGET, CleanConfig(duplicates="keep"), {"zip": "categorical"}
    )
    assert report["dropped"]["duplicate"] == 0 and cleaned.duplicated().sum() > 90
    train, val, test = stratified_split(cleaned, TARGET, 0.2, 0.2, seed)
    _assert_disjoint({"train": train, "val": val, "test": test})
    assert len(train) + len(val) + len(test) == len(cleaned)
    assert abs(len(test) / len(cleaned) - 0.2) < 0.05


@pytest.mark.slow
def test_resampling_reads_only_the_training_split(prepared, tmp_path):
    """The resample stage runs with val and test gone, and its output only adds rows derived
    from training rows: every real row is a training row, no row is a val or test row."""
    stages = yaml.safe_load((prepared.path / "dvc.yaml").read_text())["stages"]
    assert not [d for d in stages["resample"]["deps"] if "val" in d or "test" in d]
    project = copy_project(prepared, tmp_path / "proj")
    held_out = {
        n: pd.read_parquet(project.path / f"data/processed/{n}.parquet") for n in ("val", "test")
    }
    for name in held_out:
        (project.path / f"data/processed/{name}.parquet").unlink()
    project.stage("resample")
    train = pd.read_parquet(project.path / "data/processed/train.parquet")
    resampled = pd.read_parquet(project.path / "data/processed/train_resampled.parquet")
    assert project.read_json("reports/resample.json")["sampler"] == "SMOTENC"
    held_keys = _row_keys(held_out["val"]) | _row_keys(held_out["test"])
    assert not _row_keys(resampled) & held_keys
    # imbalanced-learn returns the training rows first (gaps filled), then the synthetic ones.
    real, synthetic = resampled.iloc[: len(train)], resampled.iloc[len(train) :]
    assert real[TARGET].tolist() == train[TARGET].tolist()
    known = train.notna().to_numpy()
    assert (real.to_numpy()[known] == train.to_numpy()[known]).all()
    minority = set(train[TARGET].value_counts().index[1:])
    assert len(synthetic) > 0 and set(synthetic[TARGET]) <= minority


@pytest.mark.slow
def test_preprocessing_is_fitted_on_the_training_split_only(messy_pipeline):
    from sluice.model.bundle import load_bundle

    parts = _read_splits(messy_pipeline)
    types = feature_types(messy_pipeline.read_json("reports/clean.json"))
    shipped = load_bundle(messy_pipeline.path / "models/base").preprocessor.to_dict()
    scaling = shipped["scaling"]
    assert scaling == "power"  # the default for tabular data: its lambdas are statistics too
    on_train = Preprocessor(types, scaling).fit(parts["train"]).to_dict()
    everything = pd.concat(parts.values(), ignore_index=True)
    on_all = Preprocessor(types, scaling).fit(everything).to_dict()
    for key in ("medians", "means", "scales", "lambdas"):
        np.testing.assert_allclose(shipped[key], on_train[key], rtol=1e-12)
        assert not np.allclose(shipped[key], on_all[key], rtol=1e-9), key
    assert shipped["categories"] == on_train["categories"]
    finetuned = load_bundle(messy_pipeline.path / "models/finetuned").preprocessor.to_dict()
    assert finetuned == shipped
