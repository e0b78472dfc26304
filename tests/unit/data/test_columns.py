"""Column typing in clean_table: inferred and declared types, bad values, text spellings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from cleaning_helpers import clean, fails, frame

from sluice.config import CleanConfig
from sluice.data.cleaning import describe_types, feature_types

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
        frame(),
        r"data\.columns\.x is 'words'; use numeric, categorical or text",
        declared={"x": "words"},
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
