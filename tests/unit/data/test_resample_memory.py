"""Resampling a hostile table: a category of thousands of values stays small, and a method whose
estimated peak memory exceeds resample.max_memory_gb is refused in one line before any work."""

import tracemalloc

import numpy as np
import pandas as pd
import pytest

from sluice.config import ResampleConfig
from sluice.data.resampling import resample
from sluice.data.smote import _vote
from sluice.errors import SluiceError

TYPES = {"a": "numeric", "b": "numeric", "zip": "categorical"}


def _many_levels(rows=6000, levels=2000, minority=0.1, seed=0):
    """Two numeric columns and a ``zip`` of ``levels`` values (half the rows among 20 of them)."""
    rng = np.random.default_rng(seed)
    common = rng.random(rows) < 0.5
    codes = np.where(common, rng.integers(0, 20, rows), rng.integers(0, levels, rows))
    return pd.DataFrame(
        {
            "a": rng.normal(size=rows),
            "b": rng.normal(size=rows),
            "zip": pd.Series(codes).map("z{:05d}".format),
            "y": np.where(rng.random(rows) < minority, "minor", "major"),
        }
    )


def test_smotenc_memory_does_not_grow_with_the_categories():
    """Before: a (new rows x categories) vote array and a one-hot block per value (here about
    230 MB); now the distances see data.max_categories values and the vote each row's k."""
    df = _many_levels()
    assert df["zip"].nunique() > 1500
    resample(df.iloc[:300], "y", TYPES, "smote", 5, 0)  # imports, which tracemalloc would count
    tracemalloc.start()
    try:
        out, info = resample(df, "y", TYPES, "smote", 5, 0, max_categories=50)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20e6, f"peak {peak / 1e6:.0f} MB"
    assert info["sampler"] == "SMOTENC" and 0 < info["memory_estimate_gb"] < 0.1
    new = out.iloc[len(df) :]
    assert (new["y"] == "minor").all() and len(new) == info["rows_generated"] > 4000
    assert set(new["zip"]) <= set(df["zip"])  # real values, rare ones included


def test_the_category_cap_keeps_small_tables_as_they_were():
    """Under the cap, capping changes nothing: same rows with a cap of 50 and of 10,000."""
    df = _many_levels(rows=800, levels=30)
    capped, _ = resample(df, "y", TYPES, "smote", 5, 0, max_categories=50)
    whole, _ = resample(df, "y", TYPES, "smote", 5, 0, max_categories=10_000)
    pd.testing.assert_frame_equal(capped, whole)


def test_smotenc_over_the_budget_is_refused_in_one_line():
    df = _many_levels(rows=3000, levels=2000)
    with pytest.raises(SluiceError) as err:
        resample(df, "y", TYPES, "smote", 5, 0, max_categories=10_000, max_memory_gb=0.001)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("resample.method smote needs about ")
    assert "more than its budget of 0.00 GB (resample.max_memory_gb)" in message
    assert "column 'zip' has " in message and "distance columns" in message
    assert "lower data.max_categories (now 10000)" in message
    assert message.endswith("or raise resample.max_memory_gb")


@pytest.mark.parametrize(
    ("method", "types", "words"),
    [
        ("smote", {"zip": "categorical"}, "SMOTEN compares every pair of the "),
        ("gan", TYPES, "one-hot columns; column 'zip' has "),
        ("adasyn", {"a": "numeric", "b": "numeric"}, "rows x 2 columns"),
        ("random_over", TYPES, "rows out"),
    ],
)
def test_every_method_is_checked_against_the_budget(method, types, words):
    df = _many_levels(rows=2000)[[*types, "y"]]
    with pytest.raises(SluiceError, match=f"resample.method {method} needs about .*{words}"):
        resample(df, "y", types, method, 5, 0, max_memory_gb=1e-6)


def test_a_generous_budget_lets_it_run_and_reports_the_estimate():
    df = _many_levels(rows=2000)
    out, info = resample(df, "y", TYPES, "smote", 5, 0, max_memory_gb=100.0)
    assert info["counts_after"]["minor"] == info["counts_after"]["major"]
    assert info["memory_estimate_gb"] > 0
    assert ResampleConfig(max_memory_gb=2).max_memory_gb == 2.0
    assert ResampleConfig().max_memory_gb is None  # null: 80 % of the memory available


def test_the_vote_picks_the_most_frequent_code_and_breaks_ties_at_random():
    rng = np.random.default_rng(0)
    codes = np.array([[7, 3, 7, 9, 7], [4999, 1, 4999, 1, 2]])
    picked = {tuple(_vote(codes, rng)) for _ in range(200)}
    assert {p[0] for p in picked} == {7}
    assert {p[1] for p in picked} == {1, 4999}  # a tie, both chosen some of the time
