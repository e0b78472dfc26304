"""Stratified splits without leakage, and the long-tailed training profile."""

import numpy as np
import pandas as pd
import pytest

from sluice.data.splitting import cut_long_tail, long_tail_counts, sorted_labels, stratified_split
from sluice.errors import SluiceError


def _frame(n_per_class: dict[str, int], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = [c for c, n in n_per_class.items() for _ in range(n)]
    return pd.DataFrame(
        {"a": rng.normal(size=len(labels)), "b": rng.normal(size=len(labels)), "y": labels}
    )


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_split_is_disjoint_complete_and_stratified(seed):
    df = _frame({"x": 300, "y": 100, "z": 50}, seed)
    train, val, test = stratified_split(df, "y", 0.2, 0.2, seed)
    assert len(train) + len(val) + len(test) == len(df)
    keys = [set(map(tuple, part[["a", "b"]].to_numpy())) for part in (train, val, test)]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    for part, share in ((train, 0.6), (val, 0.2), (test, 0.2)):
        assert abs(len(part) / len(df) - share) < 0.01
        assert abs((part["y"] == "z").mean() - 50 / 450) < 0.01


def test_split_is_seeded():
    df = _frame({"x": 100, "y": 100})
    first = stratified_split(df, "y", 0.2, 0.2, 3)[2]
    again = stratified_split(df, "y", 0.2, 0.2, 3)[2]
    other = stratified_split(df, "y", 0.2, 0.2, 4)[2]
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)


def test_split_refuses_a_class_too_small_to_reach_every_split():
    df = _frame({"x": 100, "tiny": 2})
    with pytest.raises(SluiceError, match="class 'tiny' has 2 row"):
        stratified_split(df, "y", 0.2, 0.2, 0)


def test_long_tail_profile_falls_exponentially_to_the_imbalance_factor():
    counts = long_tail_counts([str(i) for i in range(10)], 100, 10.0)
    values = list(counts.values())
    assert values[0] == 100 and values[-1] == 10
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    ratios = [a / b for a, b in zip(values, values[1:], strict=False)]
    assert max(ratios) / min(ratios) < 1.15  # a constant ratio, up to rounding


def test_cut_long_tail_only_removes_rows():
    df = _frame({str(i): 50 for i in range(5)})
    cut = cut_long_tail(df, "y", [str(i) for i in range(5)], 5.0, 0)
    assert cut["y"].value_counts().to_dict() == {"0": 50, "1": 33, "2": 22, "3": 14, "4": 10}
    merged = cut.merge(df, how="left", indicator=True)
    assert (merged["_merge"] == "both").all()


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (["10", "9", "1"], ["1", "9", "10"]),
        (["b", "a", "B"], ["B", "a", "b"]),
        (["1.5", "x"], ["1.5", "x"]),
    ],
)
def test_sorted_labels(labels, expected):
    assert sorted_labels(labels) == expected
