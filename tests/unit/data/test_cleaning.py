"""clean_table: labels, duplicates, conflicts, classes, report (column typing: test_columns)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from cleaning_helpers import DEFAULT, clean, fails

from sluice.config import CleanConfig
from sluice.data.cleaning import (
    DROP_REASONS,
    FIX_REASONS,
)

# --- step 4: labels ---------------------------------------------------------------------


def test_labels_become_strings() -> None:
    df = pd.DataFrame({"x": range(6), "y": [1.0, 2.0, 1.0, 2.0, 1.0, 2.0]})
    out, report = clean(df)
    assert out["y"].tolist() == ["1", "2"] * 3
    assert report["classes"] == {"1": 3, "2": 3}


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ([True, False] * 3, ["True", "False"]),
        ([" cat", "dog "] * 3, ["cat", "dog"]),
        ([0, 1] * 3, ["0", "1"]),
        ([0.5, 1.0] * 3, ["0.5", "1"]),
        ([3.0, "x"] * 3, ["3", "x"]),
    ],
)
def test_label_spellings(labels: list, expected: list) -> None:
    out, _ = clean(pd.DataFrame({"x": range(6), "y": labels}))
    assert out["y"].tolist()[:2] == expected


def test_missing_labels_are_dropped_by_default() -> None:
    df = pd.DataFrame({"x": range(8), "y": ["a", "b", None, "a", "b", " ", "a", "b"]})
    out, report = clean(df)
    assert report["dropped"]["missing_target"] == 2
    assert len(out) == 6 and out["x"].tolist() == [0, 1, 3, 4, 6, 7]


def test_missing_labels_error() -> None:
    df = pd.DataFrame({"x": range(8), "y": ["a", "b", "a", None, "b", "a", "b", None]})
    cfg = CleanConfig(min_class_rows=3, missing_target="error")
    fails(df, r"column 'y' has 2 missing labels, the first in data row 4; fill them", cfg)


def test_label_case_merge_uses_most_frequent_spelling() -> None:
    df = pd.DataFrame(
        {"x": range(9), "y": ["Cat", "cat", "Cat", "CAT", "dog", "Dog", "dog", "dog", "bird"]}
    )
    out, report = clean(df, CleanConfig(min_class_rows=3, rare_classes="drop"))
    assert report["label_merges"] == {"Cat": ["CAT", "cat"], "dog": ["Dog"]}
    assert report["fixed"]["label_normalised"] == 3
    assert report["classes"] == {"Cat": 4, "dog": 4}
    assert set(out["y"]) == {"Cat", "dog"}


def test_label_case_keep() -> None:
    df = pd.DataFrame({"x": range(12), "y": ["A", "a", "b"] * 4})
    out, report = clean(df, CleanConfig(min_class_rows=3, label_case="keep"))
    assert report["classes"] == {"A": 4, "a": 4, "b": 4}
    assert report["fixed"]["label_normalised"] == 0 and report["label_merges"] == {}


# --- step 5: duplicates and conflicting labels --------------------------------------------


def dup_frame() -> pd.DataFrame:
    """Rows 0/1 exact duplicates (with NaN), 2/3/4 same features with labels a, a, b."""
    head = pd.DataFrame(
        {
            "x": [np.nan, np.nan, 7.0, 7.0, 7.0],
            "c": ["u", "u", "v", "v", "v"],
            "y": ["a", "a", "a", "a", "b"],
        }
    )
    tail = pd.DataFrame({"x": [float(i) for i in range(10)], "c": ["w"] * 10, "y": ["a", "b"] * 5})
    return pd.concat([head, tail], ignore_index=True)


DROP_BOTH = CleanConfig(min_class_rows=3, duplicates="drop", conflicting_labels="drop")


def test_duplicates_and_conflicts_kept_and_counted_by_default() -> None:
    out, report = clean(dup_frame(), CleanConfig(min_class_rows=3))
    assert report["kept"] == {"duplicate": 2, "conflicting_label": 3}  # 7/v/a, 7/v/a, 7/v/b
    assert report["dropped"]["duplicate"] == report["dropped"]["conflicting_label"] == 0
    assert len(out) == 15 and out["y"].tolist() == dup_frame()["y"].tolist()


def test_duplicates_and_conflicts_dropped_on_request() -> None:
    out, report = clean(dup_frame(), DROP_BOTH)
    assert report["dropped"]["duplicate"] == 2  # second NaN row, and one of the 7/v/a rows
    assert report["dropped"]["conflicting_label"] == 2  # 7/v/a and 7/v/b
    assert not out.duplicated(subset=["x", "c"]).any()
    assert len(out) == 15 - 4 and pd.isna(out["x"][0])


def test_keep_duplicates() -> None:
    cfg = CleanConfig(min_class_rows=3, duplicates="keep", conflicting_labels="drop")
    out, report = clean(dup_frame(), cfg)
    assert report["dropped"]["duplicate"] == 0
    assert report["dropped"]["conflicting_label"] == 3
    assert out.duplicated().sum() == 1  # the NaN pair stays


def test_conflicting_labels_error_names_rows() -> None:
    cfg = CleanConfig(min_class_rows=3, conflicting_labels="error")
    message = fails(
        dup_frame(),
        r"data rows 3 and 5 have identical features but different labels "
        r"\('a' vs 'b'\) in column 'y'",
        cfg,
    )
    assert "clean.conflicting_labels: drop" in message


def test_random_frame_has_unique_features_after_dropping() -> None:
    rng = np.random.default_rng(3)
    n = 400
    x = rng.choice([*range(60), np.nan], n)
    y = np.where(x < 30, "a", "b")
    y[rng.random(n) < 0.1] = "c"  # some conflicting labels
    df = pd.DataFrame({"x": x, "c": rng.choice(["p", "q", None], n), "y": y})
    cfg = DROP_BOTH.model_copy(update={"rare_classes": "drop"})
    out, report = clean(df, cfg)
    assert report["dropped"]["duplicate"] > 0 and report["dropped"]["conflicting_label"] > 0
    assert not out.duplicated(subset=["x", "c"]).any()
    assert report["rows_out"] == len(out) == n - sum(report["dropped"].values())


# --- step 6: classes --------------------------------------------------------------------


def test_single_class() -> None:
    df = pd.DataFrame({"x": range(5), "y": ["spam"] * 5})
    fails(df, r"data\.csv has a single class 'spam' in column 'y'; a classifier needs at least two")


def test_no_labels_at_all() -> None:
    df = pd.DataFrame({"x": range(5), "y": [None] * 5})
    fails(df, r"no labelled rows left in column 'y'")


def test_rare_class_error() -> None:
    df = pd.DataFrame({"x": range(25), "y": ["a"] * 12 + ["b"] * 10 + ["c"] * 3})
    message = fails(
        df, r"class 'c' in column 'y' has 3 rows, fewer than clean\.min_class_rows=10", DEFAULT
    )
    assert message.endswith("add rows, or set clean.rare_classes: drop")


def test_rare_class_message_singular() -> None:
    df = pd.DataFrame({"x": range(21), "y": ["a"] * 10 + ["b"] * 10 + ["c"]})
    fails(df, r"class 'c' in column 'y' has 1 row, fewer than", DEFAULT)


def test_rare_class_drop() -> None:
    df = pd.DataFrame({"x": range(28), "y": ["a"] * 12 + ["b"] * 10 + ["c"] * 4 + ["d"] * 2})
    out, report = clean(df, CleanConfig(rare_classes="drop"))
    assert report["dropped"]["rare_class"] == 6
    assert report["dropped_classes"] == ["c", "d"]
    assert report["classes"] == {"a": 12, "b": 10}
    assert len(out) == 22


def test_rare_drop_leaving_one_class() -> None:
    df = pd.DataFrame({"x": range(14), "y": ["a"] * 12 + ["b"] * 2})
    fails(df, r"single class 'a'", CleanConfig(rare_classes="drop"))


# --- step 7 and the report --------------------------------------------------------------


def test_output_layout_and_report_shape() -> None:
    df = pd.DataFrame(
        {"y": ["a", "b"] * 5, "b": ["u", "v"] * 5, "a": range(10)}, index=range(50, 60)
    )
    out, report = clean(df)
    assert list(out.columns) == ["b", "a", "y"]
    assert isinstance(out.index, pd.RangeIndex) and out.index[0] == 0
    assert pd.api.types.is_string_dtype(out["y"])
    assert set(report) == {
        "source",
        "rows_in",
        "rows_out",
        "dropped",
        "fixed",
        "columns",
        "text_rule",
        "classes",
        "label_merges",
        "dropped_classes",
        "kept",
    }
    assert report["source"] == "data.csv" and report["rows_in"] == report["rows_out"] == 10
    assert report["dropped"] == dict.fromkeys(DROP_REASONS, 0)
    assert report["fixed"] == dict.fromkeys(FIX_REASONS, 0)
    assert json.loads(json.dumps(report)) == report


def test_input_is_not_mutated() -> None:
    df = dup_frame()
    df["s"] = [" 1"] * 15
    before = df.copy()
    clean(df)
    pd.testing.assert_frame_equal(df, before)
