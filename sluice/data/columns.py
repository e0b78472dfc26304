"""Column typing: which feature columns are numeric, categorical or free text, and their values
as such.

Shared by cleaning and by the model's preprocessing (``as_text`` is the one spelling of a
category or label), so a value means the same in training and in serving.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sluice.data.text import (
    TEXT_MIN_DISTINCT,
    TEXT_MIN_WORDS,
    is_text,
    normalize_text,
    text_profile,
)
from sluice.errors import SluiceError

COLUMN_TYPES = ("numeric", "categorical", "text")
# What the inference rule for text looks at, recorded in the cleaning report.
TEXT_RULE = {
    "rule": "a column that is not numeric is text when its values average at least "
    f"{TEXT_MIN_WORDS:g} words and at least {TEXT_MIN_DISTINCT:.0%} of them are distinct",
    "min_mean_words": TEXT_MIN_WORDS,
    "min_distinct": TEXT_MIN_DISTINCT,
}
NUMERIC_SHARE = 0.95
_BAD_VALUE_FIX = (
    "fix the file, declare the column categorical in data.columns, or set clean.bad_values: missing"
)


def type_column(
    s: pd.Series, col: str, declared: str | None, bad_values: str, source: str, report: dict
) -> pd.Series:
    """Type one feature column and convert it: float64 for numeric, stripped strings for
    categorical, normalised strings for text (NFKC, single spaces; a missing text is "").

    Records the column's type in ``report["columns"]`` (with the text rule's measurements for an
    inferred column that is not numeric) and the values made missing in ``report["fixed"]``.
    Text or inf in a numeric column is an error unless ``bad_values`` is ``missing``.
    """
    if s.dtype == object:
        s = s.infer_objects()  # hand-built frames: a column of Python floats becomes float64
    textual = declared in ("categorical", "text") or (
        not declared and pd.api.types.is_bool_dtype(s)
    )
    numbers = None if textual else _numbers(s)
    kind = declared or _infer(numbers)
    info = report["columns"][col] = {"type": kind, "inferred": declared is None, "missing": 0}
    if kind == "numeric":
        values = _to_float(s, numbers, col, bad_values, source, report["fixed"])
    else:
        values = as_text(s)
    if not values.notna().any():
        raise SluiceError(
            f"{source}: column {quote(col)} is empty (all values missing); "
            "drop it with data.drop_columns"
        )
    if kind == "categorical" and declared is None and not pd.api.types.is_bool_dtype(s):
        info["text_profile"] = text_profile(values)
        if is_text(info["text_profile"]):
            kind = info["type"] = "text"
    if kind == "text":
        values = values.map(normalize_text, na_action="ignore").fillna("")
    return values


def _to_float(
    s: pd.Series,
    numbers: tuple[pd.Series, pd.Series],
    col: str,
    bad_values: str,
    source: str,
    fixed: dict[str, int],
) -> pd.Series:
    """Float64 values; text and +/-inf are an error or become missing, per clean.bad_values."""
    values, bad = numbers
    inf = pd.Series(np.isinf(values.to_numpy()), index=s.index)
    offending = (bad | inf).to_numpy()
    if bad_values == "error" and offending.any():
        row = int(np.flatnonzero(offending)[0])
        what = "infinite" if inf.iloc[row] else "non-numeric"
        more = f" (and {offending.sum() - 1} more)" if offending.sum() > 1 else ""
        raise SluiceError(
            f"{source}: column {quote(col)} has {what} value {quote(s.iloc[row])} in data row "
            f"{row + 1}{more}; {_BAD_VALUE_FIX}"
        )
    fixed["bad_value_to_missing"] += int(bad.sum())
    fixed["inf_to_missing"] += int(inf.sum())
    return values.mask(inf)


def feature_types(report: dict[str, Any]) -> dict[str, str]:
    """Map each feature column to "numeric", "categorical" or "text", from a clean_table
    report."""
    return {name: info["type"] for name, info in report["columns"].items()}


def describe_types(report: dict[str, Any], shown: int = 4) -> str:
    """What the user should check, one group per type and origin, e.g.
    ``2 numeric (inferred): age, income; 1 categorical (declared): zip``. Long groups show
    their first ``shown`` columns and how many more there are."""
    groups: dict[str, list[str]] = {}
    for col, info in report["columns"].items():
        origin = "inferred" if info["inferred"] else "declared"
        groups.setdefault(f"{info['type']} ({origin})", []).append(col)
    parts = []
    for kind, cols in groups.items():
        more = f", ... (+{len(cols) - shown} more)" if len(cols) > shown else ""
        parts.append(f"{len(cols)} {kind}: {', '.join(cols[:shown])}{more}")
    return "; ".join(parts)


def _infer(numbers: tuple[pd.Series, pd.Series] | None) -> str:
    """bool -> categorical; otherwise numeric when 95% of the non-missing values are numbers."""
    if numbers is None:
        return "categorical"
    values, bad = numbers
    parsed = int(values.notna().sum())
    return "numeric" if parsed >= NUMERIC_SHARE * (parsed + int(bad.sum())) else "categorical"


def _numbers(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """``(float64 values, bad)``: bad marks non-missing text that does not parse as a number."""
    if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        return s.astype("float64"), pd.Series(False, index=s.index)
    text = as_text(s)
    head = text.iloc[:1000]
    if head.nunique() > len(head) // 2:  # mostly distinct: parse directly
        values = pd.to_numeric(text, errors="coerce").astype("float64")
    else:  # few distinct strings (categories): parse each once
        codes, uniques = pd.factorize(text)
        parsed = np.append(np.asarray(pd.to_numeric(uniques, errors="coerce"), "float64"), np.nan)
        values = pd.Series(parsed[codes], index=s.index, dtype="float64")  # code -1 -> NaN
    return values, text.notna() & values.isna()


def as_text(s: pd.Series) -> pd.Series:
    """Non-missing values as stripped strings ("3" for 3.0, "True" for True); blanks -> missing.

    The one spelling of categorical values and labels: cleaning and the fitted preprocessor
    (training and serving) both use it, so 3, 3.0 and " 3" are the same category everywhere.
    """
    if pd.api.types.is_float_dtype(s):
        text = _float_text(s.astype("float64"))
    elif pd.api.types.is_string_dtype(s) and s.dtype != object:
        text = s.astype("str")
    else:
        text = s.astype("object").astype("str")
        if s.dtype == object and pd.api.types.infer_dtype(s) in ("mixed", "mixed-integer-float"):
            floats = s.map(lambda v: isinstance(v, float), na_action="ignore").fillna(False)
            text[floats] = _float_text(s[floats].astype("float64"))  # 3.0 among text -> "3"
    text = text.str.strip()
    return text.mask(text == "")


def _float_text(values: pd.Series) -> pd.Series:
    """Floats as strings, integral ones without the ".0" (3.0 -> "3"); NaN stays missing."""
    whole = np.isfinite(values) & (values == np.round(values)) & (values.abs() < 2**53)
    text = values.astype("str")
    text[whole] = values[whole].astype("int64").astype("str")
    return text


def quote(value: object, limit: int = 60) -> str:
    """Quote a name or value for a one-line message (newlines escaped, long text cut)."""
    text = str(value)
    return repr(text if len(text) <= limit else text[:limit] + "...")
