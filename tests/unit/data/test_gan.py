"""GAN over-sampling: imbalanced-learn's sampler contract, new rows made only from the training
rows, categories kept valid, seeded; and the checks of generated rows can tell copies and fakes."""

import numpy as np
import pandas as pd
import pytest
import torch
from imblearn.utils.estimator_checks import check_param_validation, parametrize_with_checks
from sklearn.base import clone

from sluice.config import Params, format_error
from sluice.data.gan import GANOverSampler
from sluice.data.resampling import resample
from sluice.data.synthetic import check_generated, check_synthetic

TINY = {"epochs": 1, "hidden": 8, "latent_dim": 4, "critic_steps": 1}  # the contract, not quality
SMALL = {"epochs": 60, "hidden": 32, "latent_dim": 8}
TYPES = {"a": "numeric", "n": "numeric", "c": "categorical", "d": "categorical"}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks run fastest on one thread (and a busy machine makes more threads crawl)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@parametrize_with_checks([GANOverSampler(random_state=0, **TINY)])
def test_the_sampler_passes_imbalanced_learns_checks(estimator, check):
    check(estimator)


def test_parameters_are_validated():
    check_param_validation("GANOverSampler", GANOverSampler(**TINY))


def _frame(seed=0, n_major=120, n_minor=12):
    """Two classes; a float column with gaps, a whole-number column, two text columns."""
    rng = np.random.default_rng(seed)
    n = n_major + n_minor
    frame = pd.DataFrame(
        {
            "a": np.r_[rng.normal(0, 1, n_major), rng.normal(4, 1, n_minor)],
            "n": rng.integers(0, 9, n).astype("float64"),
            "c": rng.choice(["red", "green", "blue"], n),
            "d": np.r_[["x"] * n_major, rng.choice(["y", "z"], n_minor)],
            "y": ["major"] * n_major + ["minor"] * n_minor,
        }
    )
    frame.loc[[3, n_major + 1], "a"] = np.nan
    frame.loc[[5], "c"] = np.nan
    return frame.astype({"c": "str", "d": "str"})


@pytest.fixture(scope="module")
def gan_run():
    train = _frame()
    out, info = resample(train, "y", TYPES, "gan", 5, 0, gan=SMALL)
    info["synthetic"] = check_generated(train, out, info, "y", TYPES, 200, 0)
    return train, out, info


def test_original_rows_pass_through_untouched_and_classes_balance(gan_run):
    train, out, info = gan_run
    pd.testing.assert_frame_equal(out.iloc[: len(train)], train)  # gaps and text as they were
    assert info["counts_after"] == {"major": 120, "minor": 120}
    assert info["sampler"] == "GANOverSampler"
    assert list(out.dtypes) == list(train.dtypes)


def test_new_rows_come_only_from_the_training_rows(gan_run):
    train, out, _ = gan_run
    new = out.iloc[len(train) :]
    assert (new["y"] == "minor").all()
    assert not new[["a", "n"]].isna().any().any()  # numeric gaps: filled to train on
    assert new["a"].between(train["a"].min(), train["a"].max()).all()
    # a categorical gap is a category of its own, which new rows may draw like any other
    assert set(new["c"].dropna()) <= set(train["c"].dropna()) and set(new["d"]) <= set(train["d"])
    assert (new["n"] == new["n"].round()).all()  # whole numbers stay whole
    key = ["a", "n", "c", "d"]
    assert new.merge(train[key].drop_duplicates(), on=key).empty  # no copies


def test_the_class_condition_is_learned(gan_run):
    """Class 'minor' has a in N(4, 1) and d in {y, z}; the GAN trained on both classes must
    give its new rows that profile, not the majority's (a mean 0, d always x)."""
    train, out, _ = gan_run
    new = out.iloc[len(train) :]
    assert new["a"].mean() > 2.0
    assert (new["d"] != "x").mean() > 0.5


def test_generated_rows_are_checked(gan_run):
    _, out, info = gan_run
    check = info["synthetic"]
    assert check["rows_generated"] == 108
    assert 0.0 <= check["real_vs_synthetic_auc"] <= 1.0
    assert 0.0 < check["nearest_real_min"] <= check["nearest_real_median"]
    assert check["exact_copies"] == 0.0


def test_same_random_state_same_rows_and_the_global_rng_untouched():
    X = np.random.default_rng(1).normal(size=(80, 3))
    y = np.r_[np.zeros(70), np.ones(10)]
    state = torch.get_rng_state()
    sampler = GANOverSampler(random_state=7, **TINY)
    first = sampler.fit_resample(X, y)[0]
    assert torch.equal(torch.get_rng_state(), state)
    again = clone(sampler).fit_resample(X, y)[0]
    other = GANOverSampler(random_state=8, **TINY).fit_resample(X, y)[0]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first[80:], other[80:])
    np.testing.assert_array_equal(first[:80], X)


def test_auto_finds_text_columns_of_a_frame():
    frame = _frame().drop(columns="y")
    y = np.r_[np.zeros(120), np.ones(12)]
    X_res, y_res = GANOverSampler(categorical_features="auto", random_state=0, **TINY).fit_resample(
        frame, y
    )
    assert set(X_res["d"]) <= {"x", "y", "z"} and len(X_res) == len(y_res) == 240


def test_the_check_tells_copies_and_fakes_from_new_real_like_rows():
    rng = np.random.default_rng(0)
    real = pd.DataFrame({"a": rng.normal(0, 1, 150), "b": rng.normal(0, 1, 150), "y": "k"})
    alike = pd.DataFrame({"a": rng.normal(0, 1, 150), "b": rng.normal(0, 1, 150), "y": "k"})
    far = alike.assign(a=alike["a"] + 3)
    copies = real.iloc[:50]
    same = check_synthetic(real, alike, "y", [], 150, 0)
    shifted = check_synthetic(real, far, "y", [], 150, 0)
    copied = check_synthetic(real, copies, "y", [], 150, 0)
    assert same["real_vs_synthetic_auc"] < 0.65 < 0.95 < shifted["real_vs_synthetic_auc"]
    assert copied["exact_copies"] == 1.0 and copied["nearest_real_min"] == 0.0
    assert same["exact_copies"] == 0.0 and same["nearest_real_min"] > 0.0


def test_smote_rows_are_checked_too_and_random_over_rows_are_not():
    train = _frame().drop(columns=["c", "d"])
    out, info = resample(train, "y", TYPES, "smote", 5, 0)
    assert check_generated(train, out, info, "y", TYPES, 100, 0)["rows_generated"] == 108
    assert check_generated(train, out, info, "y", TYPES, 0, 0) is None  # check_rows: 0
    out, info = resample(train, "y", TYPES, "random_over", 5, 0)
    assert check_generated(train, out, info, "y", TYPES, 100, 0) is None


def test_gan_params_are_validated():
    params = Params.model_validate({"resample": {"method": "gan", "gan": {"epochs": 5}}})
    assert params.resample.gan.epochs == 5
    with pytest.raises(ValueError) as err:
        Params.model_validate({"resample": {"gan": {"latent": 5}}})
    message = format_error(err.value.errors()[0], Params)
    assert message.startswith("params.yaml: unknown key 'resample.gan.latent'; known keys:")


def test_only_categorical_columns_give_valid_categories_and_copies_are_counted():
    """Two text columns of 3 x 2 values: every combination is in training, so new rows can only
    repeat training rows; they are kept (the class is balanced) and the check says so."""
    train = _frame()[["c", "d", "y"]].dropna()
    types = {"c": "categorical", "d": "categorical"}
    out, info = resample(train, "y", types, "gan", 5, 0, gan=TINY)
    new = out.iloc[len(train) :]
    assert set(new["c"]) <= set(train["c"]) and set(new["d"]) <= set(train["d"])
    check = check_generated(train, out, info, "y", types, 100, 0)
    key = ["c", "d"]
    copies = new.merge(train[key].drop_duplicates(), on=key, how="left", indicator=True)
    assert check["exact_copies"] == pytest.approx((copies["_merge"] == "both").mean())
