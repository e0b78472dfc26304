"""Clean a raw table: typed features, string labels, no duplicates or conflicts, and a report.

Pure and vectorised. Missing feature values stay missing: imputation is fitted later, on the
training split only, so nothing learnt from validation or test rows leaks in here.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import pandas as pd

from sluice.config import CleanConfig
from sluice.errors import SluiceError

log = logging.getLogger(__name__)

DROP_REASONS = ("missing_target", "duplicate", "conflicting_label", "rare_class")
FIX_REASONS = ("bad_value_to_missing", "inf_to_missing", "label_normalised")
COLUMN_TYPES = ("numeric", "categorical")
NUMERIC_SHARE = 0.95
_BAD_VALUE_FIX = (
    "fix the file, declare the column categorical in data.columns, "
    "or set clean.bad_values: missing"
)


def clean_table(
    df: pd.DataFrame,
    target: str,
    cfg: CleanConfig,
    declared: dict[str, str] | None = None,
    source: str = "data",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Return the cleaned frame (features in order, then ``target`` as strings) and a report."""
    declared = declared or {}
    features = _check_columns(df, target, declared, source)
    report = _new_report(source, len(df))
    df = df.reset_index(drop=True)  # index = 0-based data row, kept for messages until the end
    columns = {col: _feature(df[col], col, declared, cfg, source, report) for col in features}
    columns[target] = _text(df[target])
    out = pd.DataFrame(columns, index=df.index)
    out = _drop_missing_target(out, target, cfg, source, report)
    out[target] = _merge_case(out[target], cfg, report)
    out = _drop_duplicates(out, features, target, cfg, source, report)
    _check_classes(out[target], target, source)
    out = _drop_rare(out, target, cfg, source, report)
    out = out.reset_index(drop=True)
    for col in features:
        report["columns"][col]["missing"] = int(out[col].isna().sum())
    counts = out[target].value_counts()
    report["classes"] = {str(k): int(v) for k, v in sorted(counts.items(), key=_by_count)}
    report["rows_out"] = len(out)
    log.info("cleaned %s: %d -> %d rows, dropped %s", source, len(df), len(out), report["dropped"])
    return out, report


def feature_types(report: dict[str, Any]) -> dict[str, str]:
    """Map each feature column to "numeric" or "categorical", from a clean_table report."""
    return {name: info["type"] for name, info in report["columns"].items()}


def _new_report(source: str, rows: int) -> dict[str, Any]:
    """The report skeleton: every drop and fix reason present, at zero."""
    return {
        "source": source,
        "rows_in": rows,
        "rows_out": 0,
        "dropped": dict.fromkeys(DROP_REASONS, 0),
        "fixed": dict.fromkeys(FIX_REASONS, 0),
        "columns": {},
        "classes": {},
        "label_merges": {},
        "dropped_classes": [],
    }


def _check_columns(
    df: pd.DataFrame, target: str, declared: dict[str, str], source: str
) -> list[str]:
    """Validate names (unique, target present, declared ones present) and return the features."""
    repeated = df.columns[df.columns.duplicated()]
    if len(repeated):
        raise SluiceError(f"{source}: column {_q(repeated[0])} appears twice; rename one")
    if target not in df.columns:
        raise SluiceError(f"{source}: target column {_q(target)} not found; set data.target")
    for col, kind in declared.items():
        if col not in df.columns:
            raise SluiceError(
                f"{source}: data.columns declares column {_q(col)}, which is not in the data; "
                "fix the name or remove it from data.columns"
            )
        if kind not in COLUMN_TYPES:
            raise SluiceError(f"{source}: data.columns.{col} is {_q(kind)}; use numeric or categorical")
    if target in declared:
        log.warning("%s: data.columns entry for the target %r is ignored", source, target)
    features = [col for col in df.columns if col != target]
    if not features:
        raise SluiceError(f"{source} has no feature columns besides the target {_q(target)}")
    return features


def _feature(
    s: pd.Series, col: str, declared: dict[str, str], cfg: CleanConfig, source: str, report: dict
) -> pd.Series:
    """Type one feature column, convert it, and record its type in the report."""
    if s.dtype == object:
        s = s.infer_objects()  # hand-built frames: a column of Python floats becomes float64
    numbers = None if pd.api.types.is_bool_dtype(s) and col not in declared else _numbers(s)
    kind, inferred = (declared[col], False) if col in declared else (_infer(numbers), True)
    report["columns"][col] = {"type": kind, "inferred": inferred, "missing": 0}
    if kind == "numeric":
        values = _to_float(s, numbers, col, cfg, source, report["fixed"])
    else:
        values = _text(s)
    if not values.notna().any():
        raise SluiceError(
            f"{source}: column {_q(col)} is empty (all values missing); "
            "drop it with data.drop_columns"
        )
    return values


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
    text = _text(s)
    head = text.iloc[:1000]
    if head.nunique() > len(head) // 2:  # mostly distinct: parse directly
        values = pd.to_numeric(text, errors="coerce").astype("float64")
    else:  # few distinct strings (categories): parse each once
        codes, uniques = pd.factorize(text)
        parsed = np.append(np.asarray(pd.to_numeric(uniques, errors="coerce"), "float64"), np.nan)
        values = pd.Series(parsed[codes], index=s.index, dtype="float64")  # code -1 -> NaN
    return values, text.notna() & values.isna()


def _text(s: pd.Series) -> pd.Series:
    """Non-missing values as stripped strings ("3" for 3.0, "True" for True); blanks -> missing."""
    if pd.api.types.is_float_dtype(s):
        text = _float_text(s.astype("float64"))
    elif pd.api.types.is_string_dtype(s) and s.dtype != object:
        text = s.astype("str")
    else:
        text = s.astype("object").astype("str")
        mixed = s.dtype == object and pd.api.types.infer_dtype(s) in ("mixed", "mixed-integer-float")
        if mixed:  # Python floats among other values get the float format too
            floats = s.map(lambda v: isinstance(v, float), na_action="ignore").fillna(False)
            text[floats] = _float_text(s[floats].astype("float64"))
    text = text.str.strip()
    return text.mask(text == "")


def _float_text(values: pd.Series) -> pd.Series:
    """Floats as strings, integral ones without the ".0" (3.0 -> "3"); NaN stays missing."""
    whole = np.isfinite(values) & (values == np.round(values)) & (values.abs() < 2**53)
    text = values.astype("str")
    text[whole] = values[whole].astype("int64").astype("str")
    return text


def _to_float(
    s: pd.Series,
    numbers: tuple[pd.Series, pd.Series],
    col: str,
    cfg: CleanConfig,
    source: str,
    fixed: dict[str, int],
) -> pd.Series:
    """Float64 values; text and +/-inf are an error or become missing, per clean.bad_values."""
    values, bad = numbers
    inf = pd.Series(np.isinf(values.to_numpy()), index=s.index)
    if cfg.bad_values == "error" and (bad | inf).any():
        raise SluiceError(_bad_value_message(s, bad, inf, col, source))
    fixed["bad_value_to_missing"] += int(bad.sum())
    fixed["inf_to_missing"] += int(inf.sum())
    return values.mask(inf)


def _bad_value_message(
    s: pd.Series, bad: pd.Series, inf: pd.Series, col: str, source: str
) -> str:
    """Name the first offending value, its 1-based data row, and how many more there are."""
    offending = (bad | inf).to_numpy()
    row = int(np.flatnonzero(offending)[0])
    what = "infinite" if inf.iloc[row] else "non-numeric"
    more = int(offending.sum()) - 1
    extra = f" (and {more} more)" if more else ""
    return (
        f"{source}: column {_q(col)} has {what} value {_q(s.iloc[row])} in data row {row + 1}"
        f"{extra}; {_BAD_VALUE_FIX}"
    )


def _drop_missing_target(
    out: pd.DataFrame, target: str, cfg: CleanConfig, source: str, report: dict
) -> pd.DataFrame:
    """Drop rows without a label, or refuse them when clean.missing_target is error."""
    missing = out[target].isna()
    if not missing.any():
        return out
    if cfg.missing_target == "error":
        row = int(out.index[missing.to_numpy()][0]) + 1
        raise SluiceError(
            f"{source}: column {_q(target)} has {int(missing.sum())} missing labels, the first in "
            f"data row {row}; fill them or set clean.missing_target: drop"
        )
    report["dropped"]["missing_target"] = int(missing.sum())
    return out[~missing]


def _merge_case(labels: pd.Series, cfg: CleanConfig, report: dict) -> pd.Series:
    """Merge labels that differ only by case into their most frequent spelling."""
    if cfg.label_case != "merge" or labels.empty:
        return labels
    counts = labels.value_counts()
    mapping: dict[str, str] = {}
    for _, group in counts.groupby(counts.index.str.casefold()):
        if len(group) > 1:
            best = min(group.items(), key=_by_count)[0]
            others = sorted(str(k) for k in group.index if k != best)
            report["label_merges"][str(best)] = others
            mapping.update(dict.fromkeys(others, best))
    if not mapping:
        return labels
    changed = labels.isin(list(mapping))
    report["fixed"]["label_normalised"] = int(changed.sum())
    return labels.mask(changed, labels.map(mapping))


def _drop_duplicates(
    out: pd.DataFrame, features: list[str], target: str, cfg: CleanConfig, source: str, report: dict
) -> pd.DataFrame:
    """Drop exact duplicate rows, then rows whose identical features carry different labels."""
    if cfg.duplicates == "drop":
        dup = _duplicated(out, keep="first")
        report["dropped"]["duplicate"] = int(dup.sum())
        out = out[~dup]
    same = out[_duplicated(out[features], keep=False)]
    if same.empty:
        return out
    groups = same.groupby(features, dropna=False, sort=False)
    conflict = groups[target].transform("nunique").to_numpy() > 1
    if not conflict.any():
        return out
    if cfg.conflicting_labels == "error":
        raise SluiceError(_conflict_message(same, groups.ngroup(), conflict, target, source))
    report["dropped"]["conflicting_label"] = int(conflict.sum())
    return out.drop(index=same.index[conflict])


def _duplicated(frame: pd.DataFrame, keep: Literal["first", False]) -> np.ndarray:
    """``frame.duplicated(keep=keep)`` (NaN equals NaN), comparing only rows whose hashes collide."""
    hashes = pd.util.hash_pandas_object(frame, index=False)
    maybe = hashes.duplicated(keep=False).to_numpy()
    result = np.zeros(len(frame), dtype=bool)
    if maybe.any():
        result[maybe] = frame[maybe].duplicated(keep=keep).to_numpy()
    return result


def _conflict_message(
    same: pd.DataFrame, gid: pd.Series, conflict: np.ndarray, target: str, source: str
) -> str:
    """Name one pair of rows with identical features and different labels."""
    first = same.index[conflict][0]
    labels = same[target]
    partner = same.index[(gid == gid.loc[first]) & (labels != labels.loc[first])][0]
    return (
        f"{source}: data rows {first + 1} and {partner + 1} have identical features but "
        f"different labels ({_q(labels.loc[first])} vs {_q(labels.loc[partner])}) in column {_q(target)}, "
        f"{int(conflict.sum())} rows in all; fix the labels or set clean.conflicting_labels: drop"
    )


def _check_classes(labels: pd.Series, target: str, source: str) -> None:
    """A classifier needs at least two classes."""
    classes = labels.unique()
    if len(classes) == 0:
        raise SluiceError(f"{source} has no labelled rows left in column {_q(target)}; add rows")
    if len(classes) == 1:
        raise SluiceError(
            f"{source} has a single class {_q(classes[0])} in column {_q(target)}; "
            "a classifier needs at least two"
        )


def _drop_rare(
    out: pd.DataFrame, target: str, cfg: CleanConfig, source: str, report: dict
) -> pd.DataFrame:
    """Refuse or drop classes with fewer than clean.min_class_rows rows."""
    counts = out[target].value_counts()
    rare = counts[counts < cfg.min_class_rows]
    if rare.empty:
        return out
    if cfg.rare_classes == "error":
        label, rows = min(rare.items(), key=lambda kv: (kv[1], kv[0]))
        more = f" (and {len(rare) - 1} more rare classes)" if len(rare) > 1 else ""
        raise SluiceError(
            f"{source}: class {_q(label)} in column {_q(target)} has {rows} rows, fewer than "
            f"clean.min_class_rows={cfg.min_class_rows}{more}; "
            "add rows, or set clean.rare_classes: drop"
        )
    drop = out[target].isin(rare.index)
    report["dropped"]["rare_class"] = int(drop.sum())
    report["dropped_classes"] = sorted(str(label) for label in rare.index)
    log.warning("%s: dropped rare classes %s", source, {str(k): int(v) for k, v in rare.items()})
    out = out[~drop]
    _check_classes(out[target], target, source)
    return out


def _by_count(item: tuple[Any, int]) -> tuple[int, str]:
    """Sort key: most frequent first, then by label."""
    return -int(item[1]), str(item[0])


def _q(value: object, limit: int = 60) -> str:
    """Quote a name or value for a one-line message (newlines escaped, long text cut)."""
    text = str(value)
    return repr(text if len(text) <= limit else text[:limit] + "...")
