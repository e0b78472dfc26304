"""clean_table: column typing, bad values, labels, duplicates, conflicts, classes, report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sluice.cleaning import (
    DROP_REASONS,
    FIX_REASONS,
    clean_table,
    describe_types,
    feature_types,
)
from sluice.config import CleanConfig
from sluice.errors import SluiceError

DEFAULT = CleanConfig()
SMALL = CleanConfig(min_class_rows=3)


def frame(n: int = 10, **extra: list) -> pd.DataFrame:
    """``n`` rows of two classes with distinct numeric features, plus ``extra`` columns."""
    data = {"x": [float(i) for i in range(n)], **extra}
    data["y"] = ["a", "b"] * (n // 2)
    return pd.DataFrame(data)


def clean(df: pd.DataFrame, cfg: CleanConfig = SMALL, **kwargs):
    """clean_table with target ``y`` and source ``data.csv``."""
    return clean_table(df, "y", cfg, source="data.csv", **kwargs)


def fails(df: pd.DataFrame, pattern: str, cfg: CleanConfig = SMALL, **kwargs) -> str:
    """Assert clean() raises a one-line SluiceError naming data.csv and matching ``pattern``."""
    with pytest.raises(SluiceError, match=pattern) as exc:
        clean(df, cfg, **kwargs)
    message = str(exc.value)
    assert "\n" not in message and message.startswith("data.csv")
    return message


# --- step 1: column types ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ([True, False] * 5, "categorical"),
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "numeric"),
        ([str(i) for i in range(10)], "numeric"),
        (["1", " 2 ", "3.5", "-4e2", None, "", "7", "8", "9", "10"], "numeric"),
        (["red", "blue"] * 5, "categorical"),
        (["1", "2", "3", "4", "5", "6", "7", "8", "x", "y"], "categorical"),
        ([1.5, "a"] * 5, "categorical"),
    ],
)
def test_inferred_types(values: list, kind: str) -> None:
    _, report = clean(frame(z=values), CleanConfig(min_class_rows=3, bad_values="missing"))
    assert report["columns"]["z"]["type"] == kind
    assert report["columns"]["z"]["inferred"] is True
    assert feature_types(report) == {"x": "numeric", "z": kind}


@pytest.mark.parametrize(("n_text", "kind"), [(1, "numeric"), (2, "categorical")])
def test_numeric_threshold_is_95_percent(n_text: int, kind: str) -> None:
    values = [str(i) for i in range(20 - n_text)] + ["n/a"] * n_text
    df = frame(20, z=values)
    _, report = clean(df, CleanConfig(min_class_rows=3, bad_values="missing"))
    assert report["columns"]["z"]["type"] == kind


def test_declared_types_override_inference() -> None:
    df = frame(z=list(range(10)), w=["1", "2", "x", "4", "5", "6", "7", "8", "9", "10"])
    out, report = clean(
        df,
        CleanConfig(min_class_rows=3, bad_values="missing"),
        declared={"z": "categorical", "w": "numeric"},
    )
    assert report["columns"]["z"] == {"type": "categorical", "inferred": False, "missing": 0}
    assert out["z"].tolist() == [str(i) for i in range(10)]
    assert report["columns"]["w"]["type"] == "numeric" and pd.isna(out["w"][2])
    assert report["fixed"]["bad_value_to_missing"] == 1
    assert describe_types(report) == (
        "1 numeric (inferred): x; 1 categorical (declared): z; 1 numeric (declared): w"
    )


def test_type_summary_shortens_long_groups() -> None:
    pixels = {f"px_{i}": list(range(i, i + 10)) for i in range(64)}
    _, report = clean(frame(**pixels))
    assert describe_types(report, shown=2) == "65 numeric (inferred): x, px_0, ... (+63 more)"


def test_declared_column_absent() -> None:
    fails(
        frame(),
        r"data\.columns declares column 'zz', which is not in the data",
        declared={"zz": "numeric"},
    )


def test_declared_kind_must_be_known() -> None:
    fails(
        frame(), r"data\.columns\.x is 'text'; use numeric or categorical", declared={"x": "text"}
    )


def test_declared_target_is_ignored() -> None:
    out, _ = clean(frame(), declared={"y": "numeric"})
    assert out["y"].tolist()[:2] == ["a", "b"]


# --- step 2: empty columns, missing columns -----------------------------------------------


@pytest.mark.parametrize("values", [[np.nan] * 10, [None] * 10, ["", "  "] * 5])
def test_empty_column(values: list) -> None:
    fails(
        frame(z=values),
        r"column 'z' is empty \(all values missing\); drop it with data\.drop_columns",
    )


def test_no_feature_columns() -> None:
    fails(pd.DataFrame({"y": ["a", "b"]}), r"no feature columns besides the target 'y'")


def test_target_column_missing() -> None:
    fails(frame().rename(columns={"y": "label"}), r"target column 'y' not found")


def test_duplicate_column_names() -> None:
    df = pd.concat([frame(), frame()[["x"]]], axis=1)
    fails(df, r"column 'x' appears twice")


# --- step 3: numeric conversion, bad values, categoricals ---------------------------------


def test_numeric_columns_become_float64() -> None:
    out, _ = clean(frame(z=list(range(10)), s=[str(i) for i in range(10)]))
    assert out["z"].dtype == "float64" and out["s"].dtype == "float64"
    assert out["s"].tolist() == [float(i) for i in range(10)]


def test_bad_value_error_names_column_value_row_and_fix() -> None:
    values = [str(i) for i in range(30)]
    values[6], values[20] = "12kg", "oops"
    df = frame(30, w=values)
    message = fails(
        df,
        r"column 'w' has non-numeric value '12kg' in data row 7 \(and 1 more\)",
        declared={"w": "numeric"},
    )
    assert "declare the column categorical in data.columns" in message
    assert "clean.bad_values: missing" in message


def test_bad_value_row_is_position_not_index_label() -> None:
    values = [str(i) for i in range(30)]
    values[3] = "?"
    df = frame(30, w=values)
    df.index = range(100, 130)
    fails(df, r"value '\?' in data row 4;")


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_inf_is_an_error_by_default(bad: float) -> None:
    values = [float(i) for i in range(10)]
    values[2] = bad
    fails(frame(w=values), r"column 'w' has infinite value '-?inf' in data row 3; fix the file")


def test_bad_values_missing_counts_fixes() -> None:
    values = ["1", "inf", "x", "4", "-inf"] + [str(i) for i in range(5, 40)]
    df = frame(40, w=values)
    out, report = clean(
        df, CleanConfig(min_class_rows=3, bad_values="missing"), declared={"w": "numeric"}
    )
    assert report["fixed"]["bad_value_to_missing"] == 1
    assert report["fixed"]["inf_to_missing"] == 2
    assert out["w"][:5].isna().tolist() == [False, True, True, False, True]
    assert report["columns"]["w"]["missing"] == 3


def test_categorical_values_are_stripped_strings_and_missing_stays_missing() -> None:
    df = frame(c=[" red", "blue ", "", None, np.nan, "red", "blue", "red", "blue", "green"])
    out, report = clean(df)
    assert out["c"].tolist()[:2] == ["red", "blue"]
    assert out["c"][5:].tolist() == ["red", "blue", "red", "blue", "green"]
    assert out["c"][2:5].isna().all()  # not imputed here
    assert report["columns"]["c"]["missing"] == 3
    assert pd.api.types.is_string_dtype(out["c"])


def test_bool_column_becomes_true_false_strings() -> None:
    out, report = clean(frame(f=[True, False] * 5))
    assert report["columns"]["f"]["type"] == "categorical"
    assert out["f"].tolist()[:2] == ["True", "False"]


def test_bool_column_with_missing_values() -> None:
    out, _ = clean(frame(f=[True, None, False, True, False, True, False, True, False, True]))
    assert out["f"][0] == "True" and out["f"][2] == "False" and pd.isna(out["f"][1])


def test_declared_categorical_floats_lose_trailing_zero() -> None:
    out, _ = clean(frame(zip=[10001.0, np.nan] * 5), declared={"zip": "categorical"})
    assert out["zip"][0] == "10001" and pd.isna(out["zip"][1])


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


def test_duplicates_and_conflicts_dropped_by_default() -> None:
    out, report = clean(dup_frame())
    assert report["dropped"]["duplicate"] == 2  # second NaN row, and one of the 7/v/a rows
    assert report["dropped"]["conflicting_label"] == 2  # 7/v/a and 7/v/b
    assert not out.duplicated(subset=["x", "c"]).any()
    assert len(out) == 15 - 4 and pd.isna(out["x"][0])


def test_keep_duplicates() -> None:
    cfg = CleanConfig(min_class_rows=3, duplicates="keep")
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


def test_random_frame_has_unique_features_after_defaults() -> None:
    rng = np.random.default_rng(3)
    n = 400
    x = rng.choice([*range(60), np.nan], n)
    y = np.where(x < 30, "a", "b")
    y[rng.random(n) < 0.1] = "c"  # some conflicting labels
    df = pd.DataFrame({"x": x, "c": rng.choice(["p", "q", None], n), "y": y})
    out, report = clean(df, CleanConfig(min_class_rows=3, rare_classes="drop"))
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
        "classes",
        "label_merges",
        "dropped_classes",
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
