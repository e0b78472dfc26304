"""The fitted preprocessor: training statistics only, JSON round trip, clear input errors."""

import json

import numpy as np
import pandas as pd
import pytest

from sluice.errors import SluiceError
from sluice.model.preprocess import Preprocessor, encode_labels

TYPES = {"x": "numeric", "color": "categorical"}


def _train():
    return pd.DataFrame({"x": [1.0, 2.0, 3.0, np.nan], "color": ["red", "blue", None, "red"]})


def test_fit_uses_only_the_given_rows():
    pre = Preprocessor(TYPES).fit(_train())
    assert pre.medians_.tolist() == [2.0]
    assert pre.categories_ == {"color": ["blue", "red"]}
    other = Preprocessor(TYPES).fit(pd.DataFrame({"x": [100.0, 200.0], "color": ["green", "x"]}))
    assert other.medians_.tolist() == [150.0]


def test_transform_imputes_scales_and_one_hot_encodes():
    pre = Preprocessor(TYPES).fit(_train())
    X = pre.transform(
        pd.DataFrame({"x": [2.0, np.nan], "color": ["red", "purple"], "extra": [1, 2]})
    )
    assert X.shape == (2, 3) and X.dtype == np.float32
    assert X[0, 0] == pytest.approx(0.0) and X[1, 0] == pytest.approx(0.0)  # median = mean
    assert X[0, 1:].tolist() == [0.0, 1.0]
    assert X[1, 1:].tolist() == [0.0, 0.0]  # unseen category encodes as zeros


def test_global_scaling_shares_one_mean_and_scale():
    df = pd.DataFrame({"p0": [0.0, 16.0], "p1": [0.0, 0.0]})
    pre = Preprocessor({"p0": "numeric", "p1": "numeric"}, scaling="global").fit(df)
    assert pre.means_.tolist() == [4.0, 4.0]
    assert pre.scales_[0] == pre.scales_[1] > 0


def test_json_round_trip_gives_identical_output():
    pre = Preprocessor(TYPES, max_categories=1).fit(_train())
    again = Preprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    df = pd.DataFrame({"x": [5.0], "color": ["red"]})
    np.testing.assert_array_equal(pre.transform(df), again.transform(df))
    assert again.categories_ == {"color": ["red"]}


def test_missing_columns_are_named():
    pre = Preprocessor(TYPES).fit(_train())
    with pytest.raises(SluiceError, match=r"new\.csv: missing required column\(s\) 'color'"):
        pre.transform(pd.DataFrame({"x": [1.0]}), "new.csv")


@pytest.mark.parametrize("bad", ["abc", np.inf])
def test_non_numeric_values_are_named(bad):
    pre = Preprocessor(TYPES).fit(_train())
    df = pd.DataFrame({"x": [1.0, bad], "color": ["red", "red"]}, dtype=object)
    with pytest.raises(SluiceError, match=r"column 'x' has non-numeric value .* \(row 2\)"):
        pre.transform(df)


def test_large_inputs_are_transformed_in_chunks_to_the_same_matrix(monkeypatch):
    import sluice.model.preprocess as preprocess

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.lognormal(size=1000), "color": rng.choice(["red", "blue"], 1000)})
    df.loc[::7, "x"] = np.nan
    pre = Preprocessor(TYPES, scaling="power").fit(df)
    whole = pre.transform(df)
    monkeypatch.setattr(preprocess, "CHUNK_ROWS", 64)
    np.testing.assert_array_equal(pre.transform(df), whole)
    assert pre.transform(df.iloc[:0]).shape == (0, 3)
    bad = df.astype({"x": object})
    bad.loc[900, "x"] = "abc"  # in the 15th chunk: the row number counts the rows before it
    with pytest.raises(SluiceError, match=r"non-numeric value 'abc' \(row 901\)"):
        pre.transform(bad)


def test_encode_labels_refuses_unseen_labels():
    assert encode_labels(pd.Series(["b", "a"]), ["a", "b"], "s").tolist() == [1, 0]
    with pytest.raises(SluiceError, match="val.parquet: label\\(s\\) 'c' never seen"):
        encode_labels(pd.Series(["a", "c"]), ["a", "b"], "val.parquet")


def test_power_scaling_makes_a_skewed_column_symmetric():
    from scipy.stats import skew

    x = np.random.default_rng(0).lognormal(sigma=1.0, size=2000)
    df = pd.DataFrame({"x": x, "flat": 3.0})
    types = {"x": "numeric", "flat": "numeric"}
    standard = Preprocessor(types).fit(df).transform(df)
    power = Preprocessor(types, scaling="power").fit(df)
    out = power.transform(df)
    assert skew(standard[:, 0]) > 2 and abs(skew(out[:, 0])) < 0.25
    assert out[:, 0].mean() == pytest.approx(0.0, abs=1e-5)
    assert out[:, 0].std() == pytest.approx(1.0, abs=1e-4)
    assert power.lambdas_[1] == 1.0 and np.all(out[:, 1] == 0.0)  # a constant column stays put


def test_power_scaling_round_trips_and_stays_finite_on_extreme_input():
    df = pd.DataFrame({"x": np.linspace(0.0, 10.0, 50) ** 3, "color": ["red", "blue"] * 25})
    pre = Preprocessor(TYPES, scaling="power").fit(df)
    again = Preprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    new = pd.DataFrame({"x": [5.0, 1e300, -1e300], "color": ["red"] * 3})
    np.testing.assert_array_equal(pre.transform(new), again.transform(new))
    assert np.isfinite(pre.transform(new)).all()


def test_models_saved_without_power_lambdas_still_load():
    state = Preprocessor(TYPES).fit(_train()).to_dict()
    del state["lambdas"]
    old = Preprocessor.from_dict(state)
    assert old.lambdas_ is None and old.transform(_train()).shape == (4, 3)
