"""Where trials are scored: the validation split, or folds of train + val on a small table."""

import numpy as np
import pandas as pd
import pytest

from sluice.tuning.data import TuneData


def _table(rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x": rng.integers(0, rows // 3, rows), "y": rng.normal(size=rows)})
    frame.loc[: rows // 4, "y"] = 0.5  # many identical feature rows, some with both labels
    frame["label"] = np.where(rng.random(rows) < 0.3, "b", "a")
    return frame


def test_a_small_validation_split_gives_way_to_folds_that_keep_identical_rows_together():
    frame = _table(300)
    data = TuneData(frame.iloc[:240], frame.iloc[240:], "label", {}, ["a", "b"])
    assert data.scored_on == "the validation split (60 rows)"
    data.cross_validate(folds=4, below_rows=61, seed=0)
    assert data.scored_on == "4-fold cross-validation over train + val (300 rows)"
    assert len(data.parts) == 4
    held_out = [held for _, held in data.parts]
    for fit, held in data.parts:
        assert len(fit) + len(held) == 300
        assert 0.15 < (held["label"] == "b").mean() < 0.45  # stratified
        # No feature row is on both sides of a fold.
        both = fit.merge(held.drop(columns="label"), on=["x", "y"])
        assert both.empty
    # The held-out folds together are train + val, each row once.
    together = pd.concat(held_out, ignore_index=True)
    key = ["x", "y", "label"]
    in_order = together.sort_values(key, ignore_index=True)
    assert in_order.equals(frame.sort_values(key, ignore_index=True))


@pytest.mark.parametrize(
    ("folds", "below", "val_rows", "minority", "parts"),
    [
        (5, 60, 60, 30, 1),  # validation split as large as the bar
        (1, 10_000, 60, 30, 1),  # one fold: the validation split
        (5, 10_000, 60, 3, 3),  # three distinct minority rows: three folds
        (5, 10_000, 60, 1, 1),  # one: no cross-validation possible
    ],
)
def test_cross_validation_only_when_the_validation_split_is_small_and_classes_allow(
    folds, below, val_rows, minority, parts
):
    frame = _table(300)
    frame["label"] = "a"
    frame.loc[frame.index[-minority:], "label"] = "b"
    frame.loc[frame.index[-minority:], "y"] = range(minority)  # distinct rows
    train, val = frame.iloc[: 300 - val_rows], frame.iloc[300 - val_rows :]
    data = TuneData(train, val, "label", {}, ["a", "b"])
    data.cross_validate(folds=folds, below_rows=below, seed=0)
    assert len(data.parts) == parts
    if parts == 1:
        assert data.parts[0][0] is train and data.parts[0][1] is val
