"""Resampling: every method balances (or cleans) the training rows and keeps the schema."""

import numpy as np
import pandas as pd
import pytest

from sluice.data.resampling import class_weights, resample
from sluice.errors import SluiceError

TYPES = {"a": "numeric", "b": "numeric"}


def _imbalanced(n_major=200, n_minor=20, seed=0, with_cat=False):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "a": np.r_[rng.normal(0, 1, n_major), rng.normal(3, 1, n_minor)],
            "b": np.r_[rng.normal(0, 1, n_major), rng.normal(3, 1, n_minor)],
            "y": ["major"] * n_major + ["minor"] * n_minor,
        }
    )
    if with_cat:
        df["c"] = rng.choice(["red", "green", "blue"], size=len(df))
    return df


@pytest.mark.parametrize("method", ["random_over", "smote", "borderline_smote", "adasyn"])
def test_over_samplers_balance_the_classes(method):
    out, info = resample(_imbalanced(), "y", TYPES, method, 5, 0)
    counts = out["y"].value_counts()
    assert counts["minor"] / counts["major"] > 0.8
    assert info["counts_before"] == {"major": 200, "minor": 20}
    assert info["counts_after"] == {k: int(v) for k, v in counts.sort_index().items()}
    assert list(out.columns) == ["a", "b", "y"]


def test_random_under_keeps_only_original_rows():
    df = _imbalanced()
    out, _ = resample(df, "y", TYPES, "random_under", 5, 0)
    assert out["y"].value_counts().to_dict() == {"major": 20, "minor": 20}
    assert len(out.merge(df, on=["a", "b", "y"])) == 40


@pytest.mark.parametrize("method", ["smote_tomek", "smote_enn"])
def test_combined_samplers_run(method):
    out, info = resample(_imbalanced(), "y", TYPES, method, 5, 0)
    assert info["counts_after"]["minor"] > 20


def test_none_is_identity():
    df = _imbalanced()
    out, info = resample(df, "y", TYPES, "none", 5, 0)
    pd.testing.assert_frame_equal(out, df)
    assert info["counts_before"] == info["counts_after"]


def test_smote_lowers_k_for_a_tiny_class(caplog):
    out, info = resample(_imbalanced(n_minor=3), "y", TYPES, "smote", 5, 0)
    assert info["k_neighbors"] == 2
    assert "k_neighbors lowered from 5 to 2" in caplog.text
    assert (out["y"] == "minor").sum() == 200


def test_smote_refuses_a_single_row_class():
    with pytest.raises(SluiceError, match="at least 2 training rows per class"):
        resample(_imbalanced(n_minor=1), "y", TYPES, "smote", 5, 0)


def test_smotenc_keeps_categories_valid():
    df = _imbalanced(with_cat=True)
    types = {**TYPES, "c": "categorical"}
    out, _ = resample(df, "y", types, "smote", 5, 0)
    assert set(out["c"]) <= {"red", "green", "blue"}
    assert (out["y"] == "minor").sum() == 200


@pytest.mark.parametrize("method", ["smote", "borderline_smote", "adasyn"])
def test_over_samplers_keep_original_rows_and_make_complete_new_ones(method):
    df = _imbalanced()
    df.loc[[0, 210], "a"] = np.nan
    out, info = resample(df, "y", TYPES, method, 5, 0)
    pd.testing.assert_frame_equal(out.iloc[: len(df)], df)  # gaps and all, as they came
    new = out.iloc[len(df) :]
    assert len(new) == info["rows_generated"] > 0
    assert not new[["a", "b"]].isna().any().any()  # filled with training medians first


def test_smotenc_matches_imbalanced_learn():
    """Same seed, same new rows as imbalanced-learn's SMOTENC: every value with one neighbour
    (no vote to break), the numeric values with five."""
    from imblearn.over_sampling import SMOTENC

    df = _imbalanced(with_cat=True)
    df["d"] = np.random.default_rng(1).choice(["x", "y"], size=len(df))
    df = df[["a", "c", "b", "d", "y"]]
    types = {**TYPES, "c": "categorical", "d": "categorical"}
    for k in (1, 5):
        out, info = resample(df, "y", types, "smote", k, 3)
        sampler = SMOTENC(categorical_features=[1, 3], k_neighbors=k, random_state=3)
        X, y = sampler.fit_resample(df.drop(columns="y"), df["y"].to_numpy())
        ref = pd.DataFrame(X, columns=["a", "c", "b", "d"]).assign(y=y)
        assert info["sampler"] == "SMOTENC" and len(out) == len(ref)
        np.testing.assert_allclose(out[["a", "b"]].to_numpy(float), ref[["a", "b"]].to_numpy(float))
        assert (out["y"] == ref["y"]).all()
        if k == 1:
            np.testing.assert_array_equal(
                out[["c", "d"]].to_numpy(str), ref[["c", "d"]].to_numpy(str)
            )


def test_smote_in_blocks_stays_within_the_class_and_is_seeded():
    from sluice.data.smote import _neighbours

    space = np.random.default_rng(0).normal(size=(1000, 3))
    blocks = _neighbours(space, 5, 300, 0)
    exact = _neighbours(space, 5, 0, 0)
    assert blocks.shape == exact.shape == (1000, 5)
    assert (blocks != np.arange(1000)[:, None]).all()  # never the row itself
    np.testing.assert_array_equal(blocks, _neighbours(space, 5, 300, 0))
    far = np.linalg.norm(space[blocks] - space[:, None], axis=2).mean()
    near = np.linalg.norm(space[exact] - space[:, None], axis=2).mean()
    assert near < far < 2 * near  # farther than the exact neighbours, but not by much
    df = _imbalanced(n_major=3000, n_minor=400)
    a, _ = resample(df, "y", TYPES, "smote", 5, 0, knn_block=100)
    b, _ = resample(df, "y", TYPES, "smote", 5, 0, knn_block=0)
    assert (a["y"] == "minor").sum() == (b["y"] == "minor").sum() == 3000
    assert not a.equals(b)


def test_numeric_only_samplers_refuse_categoricals():
    with pytest.raises(SluiceError, match="column 'c' is categorical"):
        resample(_imbalanced(with_cat=True), "y", {**TYPES, "c": "categorical"}, "adasyn", 5, 0)


def test_resampling_is_seeded():
    a, _ = resample(_imbalanced(), "y", TYPES, "smote", 5, 1)
    b, _ = resample(_imbalanced(), "y", TYPES, "smote", 5, 1)
    c, _ = resample(_imbalanced(), "y", TYPES, "smote", 5, 2)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_class_weights_are_inverse_frequency():
    weights = class_weights(pd.Series(["a"] * 90 + ["b"] * 10), ["a", "b"])
    assert weights[1] / weights[0] == pytest.approx(9.0)
    assert np.mean(weights) == pytest.approx(1.0)
