"""Any CSV in: mixed feature types, gaps, duplicates, messy labels of any type, imbalance, size.

The pipeline-level checks share one real `dvc repro` on the messy CSV (see conftest); the label
and size variations run the same core functions in-process, without DVC, to stay fast.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sluice.config import CleanConfig, DataConfig
from sluice.data.cleaning import clean_table, feature_types
from sluice.data.datasets import load_raw
from sluice.data.resampling import resample
from sluice.data.splitting import sorted_labels, stratified_split
from sluice.model.preprocess import Preprocessor, encode_labels

from .conftest import CSV, TARGET, messy_frame, model_versions, runs_by_status


@pytest.mark.slow
def test_messy_csv_is_cleaned_and_the_inference_reported(messy_pipeline):
    report = messy_pipeline.read_json("reports/clean.json")
    columns = report["columns"]
    assert "id" not in columns  # data.drop_columns
    assert {c: (v["type"], v["inferred"]) for c, v in columns.items()} == {
        "age": ("numeric", True),
        "income": ("numeric", True),
        "color": ("categorical", True),
        "zip": ("categorical", False),
        "member": ("categorical", True),
    }
    assert columns["age"]["missing"] > 0 and columns["color"]["missing"] > 0
    assert report["kept"]["duplicate"] == 20 and report["dropped"]["duplicate"] == 0
    assert report["label_merges"] == {"no": ["NO"], "yes": ["Yes"]}  # after stripping spaces
    assert set(report["classes"]) == {"no", "yes", "maybe"}
    assert min(report["classes"].values()) / report["rows_out"] < 0.1  # imbalanced


@pytest.mark.slow
def test_categoricals_are_resampled_with_smotenc_and_every_model_is_registered(messy_pipeline):
    info = messy_pipeline.read_json("reports/resample.json")
    assert info["sampler"] == "SMOTENC"
    assert len(set(info["counts_after"].values())) == 1  # balanced
    assert runs_by_status(messy_pipeline).keys() == {"FINISHED"}
    roles = sorted(v.tags["sluice.role"] for v in model_versions(messy_pipeline))
    assert roles == ["base", "finetuned"]


@pytest.mark.slow
def test_model_bundle_scores_raw_csv_rows_as_it_scores_cleaned_ones(messy_pipeline):
    """The encoding travels with the model: raw columns as pandas reads them (zip as floats
    with gaps, member as booleans, " blue" with its space, the dropped id) score the same as
    the cleaned values the model was trained on."""
    from sluice.model.bundle import load_bundle

    clf = load_bundle(messy_pipeline.path / "models/base")
    raw = pd.read_csv(messy_pipeline.path / CSV)
    assert raw["zip"].dtype == "float64" and raw["member"].dtype == bool
    cleaned, _ = clean_table(
        raw.drop(columns=["id"]), TARGET, CleanConfig(duplicates="keep"), {"zip": "categorical"}
    )
    np.testing.assert_allclose(clf.predict_proba(raw), clf.predict_proba(cleaned), atol=1e-6)
    member = clf.preprocessor.transform(raw)[:, -2:]  # the last one-hot block: False, True
    assert clf.preprocessor.categories_["member"] == ["False", "True"]
    np.testing.assert_array_equal(member[:, 1], raw["member"].to_numpy(dtype=np.float32))


@pytest.mark.slow
def test_registered_model_accepts_raw_csv_columns(messy_pipeline):
    import mlflow

    client = messy_pipeline.mlflow_client()
    model = mlflow.pyfunc.load_model(
        client.get_model_version_download_uri("sluice-classifier", "1")
    )
    raw = pd.read_csv(messy_pipeline.path / CSV).drop(columns=[TARGET])
    prob = model.predict(raw)
    assert list(prob.columns) == ["maybe", "no", "yes"]
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, atol=1e-5)


def _table(labels: list, n_features: int = 3, seed: int = 0) -> pd.DataFrame:
    """Numeric and categorical features, with gaps, that carry some signal about ``labels``."""
    rng = np.random.default_rng(seed)
    codes = pd.factorize(pd.Series(labels).astype(str).str.strip().str.lower())[0]
    df = pd.DataFrame({f"x{i}": rng.normal(size=len(labels)) + codes for i in range(n_features)})
    df["city"] = np.where(codes == 0, "north", rng.choice(["south", "east", " west"], len(labels)))
    df.loc[rng.random(len(labels)) < 0.05, "x0"] = np.nan
    df.loc[rng.random(len(labels)) < 0.05, "city"] = None
    df[TARGET] = labels
    return df


def _through_the_core(df: pd.DataFrame, tmp_path, method: str = "smote") -> dict:
    """CSV -> clean -> split -> resample -> preprocessing, as the stages chain them."""
    path = tmp_path / "data.csv"
    df.to_csv(path, index=False)
    raw, target = load_raw(DataConfig(path=str(path), target=TARGET))
    cleaned, report = clean_table(raw, target, CleanConfig(), source=str(path))
    train, val, test = stratified_split(cleaned, target, 0.2, 0.2, seed=0)
    types = feature_types(report)
    resampled, info = resample(train, target, types, method, 5, seed=0)
    classes = sorted_labels(list(report["classes"]))
    pre = Preprocessor(types).fit(train)
    for part in (resampled, val, test):
        assert pre.transform(part).shape == (len(part), pre.n_outputs)
        encode_labels(part[target], classes, "split")  # every label known to training
    return {"classes": classes, "types": types, "info": info, "report": report}


@pytest.mark.parametrize(
    ("labels", "classes"),
    [
        ([True, False, False, False] * 100, ["False", "True"]),
        ([0, 1, 2, 2, 2, 2, 2] * 60, ["0", "1", "2"]),
        ([" Yes", "no", "NO ", "no", "no", "no", "no"] * 60, ["Yes", "no"]),
        (["spam"] * 12 + ["ham"] * 388, ["ham", "spam"]),  # minority 3 %
        ([1.0, 2.0, 2.0, 2.0] * 100, ["1", "2"]),
    ],
    ids=[
        "booleans",
        "integers multi-class",
        "strings with space and case",
        "3 % minority",
        "floats",
    ],
)
def test_label_types_and_imbalance(tmp_path, labels, classes):
    out = _through_the_core(_table(labels), tmp_path)
    assert out["classes"] == classes
    assert out["types"] == {
        "x0": "numeric",
        "x1": "numeric",
        "x2": "numeric",
        "city": "categorical",
    }
    assert out["info"]["sampler"] == "SMOTENC"
    assert set(out["info"]["counts_after"]) == set(classes)


def test_all_categorical_features_use_smoten(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.array(["a"] * 150 + ["b"] * 50)
    df = pd.DataFrame(
        {
            "shop": [f"{y}{k}" for y, k in zip(labels, rng.integers(0, 40, 200), strict=True)],
            "size": rng.choice(["S", "M", "L"], 200),
            TARGET: labels,
        }
    )
    out = _through_the_core(df, tmp_path)
    assert out["types"] == {"shop": "categorical", "size": "categorical"}
    assert out["info"]["sampler"] == "SMOTEN"


@pytest.mark.slow
def test_a_few_hundred_thousand_rows(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.choice(["common", "rare"], size=200_000, p=[0.97, 0.03])
    df = _table(labels.tolist(), n_features=8)
    out = _through_the_core(df, tmp_path, method="random_over")
    assert out["report"]["rows_out"] == 200_000
    assert out["info"]["counts_after"]["rare"] == out["info"]["counts_after"]["common"]


def test_messy_frame_has_what_the_pipeline_tests_rely_on():
    """Guard the fixture: duplicates, gaps and inconsistent label spellings are really there."""
    df = messy_frame()
    assert df.duplicated().sum() == 20
    assert df["zip"].isna().any() and df["age"].isna().any() and df["color"].isna().any()
    assert {" yes", "Yes ", "NO"} <= set(df[TARGET])
