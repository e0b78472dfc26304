"""Clean a raw table: typed features, string labels, no duplicates or conflicts, and a report.

Pure and vectorised. Missing feature values stay missing: imputation is fitted later, on the
training split only, so nothing learnt from validation or test rows leaks in here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
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
    "fix the file, declare the column categorical in data.columns, or set clean.bad_values: missing"
)


def clean_table(
    df: pd.DataFrame,
    target: str,
    cfg: CleanConfig,
    declared: dict[str, str] | None = None,
    source: str = "data",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Return the cleaned frame (features in order, then ``target`` as strings) and a report.

    The input is not modified; ``source`` names the data in error messages. Report keys:
    source, rows_in, rows_out, dropped {reason: rows}, fixed {reason: values}, columns
    {name: {type, inferred, missing}}, classes {label: rows}, label_merges {kept: [merged]},
    dropped_classes [label].
    """
    run = _Run(source, target, cfg, declared or {})
    return run.clean(df)


def feature_types(report: dict[str, Any]) -> dict[str, str]:
    """Map each feature column to "numeric" or "categorical", from a clean_table report."""
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


@dataclass
class _Run:
    """One cleaning run: its settings and the report it fills in."""

    source: str
    target: str
    cfg: CleanConfig
    declared: dict[str, str]
    report: dict[str, Any] = field(default_factory=dict)

    def clean(self, df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
        """Run every step in order; the index holds 0-based input rows until the end."""
        features = self.check_columns(df)
        self.report = _new_report(self.source, len(df))
        df = df.reset_index(drop=True)
        columns = {col: self.feature(df[col], col) for col in features}
        columns[self.target] = as_text(df[self.target])
        out = self.drop_missing_target(pd.DataFrame(columns, index=df.index))
        out[self.target] = self.merge_case(out[self.target])
        out = self.drop_duplicates(out, features)
        self.check_classes(out[self.target])
        out = self.drop_rare(out).reset_index(drop=True)
        for col in features:
            self.report["columns"][col]["missing"] = int(out[col].isna().sum())
        counts = out[self.target].value_counts()
        self.report["classes"] = {str(k): int(v) for k, v in sorted(counts.items(), key=_by_count)}
        self.report["rows_out"] = len(out)
        log.info("cleaned %s: %d -> %d rows", self.source, len(df), len(out))
        return out, self.report

    def fail(self, message: str) -> SluiceError:
        """A SluiceError whose message starts with the data source."""
        return SluiceError(f"{self.source}: {message}")

    def check_columns(self, df: pd.DataFrame) -> list[str]:
        """Validate names (unique, target present, declared ones present); return the features."""
        repeated = df.columns[df.columns.duplicated()]
        if len(repeated):
            raise self.fail(f"column {_q(repeated[0])} appears twice; rename one")
        if self.target not in df.columns:
            raise self.fail(f"target column {_q(self.target)} not found; set data.target")
        for col, kind in self.declared.items():
            if col not in df.columns:
                raise self.fail(
                    f"data.columns declares column {_q(col)}, which is not in the data; "
                    "fix the name or remove it from data.columns"
                )
            if kind not in COLUMN_TYPES:
                raise self.fail(f"data.columns.{col} is {_q(kind)}; use numeric or categorical")
        if self.target in self.declared:
            log.warning("%s: data.columns entry for target %r ignored", self.source, self.target)
        features = [col for col in df.columns if col != self.target]
        if not features:
            raise self.fail(f"no feature columns besides the target {_q(self.target)}")
        return features

    def feature(self, s: pd.Series, col: str) -> pd.Series:
        """Type one feature column, convert it, and record its type in the report."""
        if s.dtype == object:
            s = s.infer_objects()  # hand-built frames: a column of Python floats becomes float64
        declared = self.declared.get(col)
        textual = declared == "categorical" or (not declared and pd.api.types.is_bool_dtype(s))
        numbers = None if textual else _numbers(s)
        kind = declared or _infer(numbers)
        self.report["columns"][col] = {"type": kind, "inferred": declared is None, "missing": 0}
        values = self.to_float(s, numbers, col) if kind == "numeric" else as_text(s)
        if not values.notna().any():
            raise self.fail(
                f"column {_q(col)} is empty (all values missing); drop it with data.drop_columns"
            )
        return values

    def to_float(self, s: pd.Series, numbers: tuple[pd.Series, pd.Series], col: str) -> pd.Series:
        """Float64 values; text and +/-inf are an error or become missing, per clean.bad_values."""
        values, bad = numbers
        inf = pd.Series(np.isinf(values.to_numpy()), index=s.index)
        offending = (bad | inf).to_numpy()
        if self.cfg.bad_values == "error" and offending.any():
            row = int(np.flatnonzero(offending)[0])
            what = "infinite" if inf.iloc[row] else "non-numeric"
            more = f" (and {offending.sum() - 1} more)" if offending.sum() > 1 else ""
            raise self.fail(
                f"column {_q(col)} has {what} value {_q(s.iloc[row])} in data row {row + 1}"
                f"{more}; {_BAD_VALUE_FIX}"
            )
        self.report["fixed"]["bad_value_to_missing"] += int(bad.sum())
        self.report["fixed"]["inf_to_missing"] += int(inf.sum())
        return values.mask(inf)

    def drop_missing_target(self, out: pd.DataFrame) -> pd.DataFrame:
        """Drop rows without a label, or refuse them when clean.missing_target is error."""
        missing = out[self.target].isna().to_numpy()
        if self.cfg.missing_target == "error" and missing.any():
            raise self.fail(
                f"column {_q(self.target)} has {_n(missing.sum(), 'missing label')}, the first in "
                f"data row {out.index[missing][0] + 1}; fill them or set clean.missing_target: drop"
            )
        self.report["dropped"]["missing_target"] = int(missing.sum())
        return out[~missing]

    def merge_case(self, labels: pd.Series) -> pd.Series:
        """Merge labels that differ only by case into their most frequent spelling."""
        if self.cfg.label_case != "merge" or labels.empty:
            return labels
        counts = labels.value_counts()
        mapping: dict[str, str] = {}
        for _, group in counts.groupby(counts.index.str.casefold()):
            if len(group) > 1:
                best = min(group.items(), key=_by_count)[0]
                others = sorted(str(k) for k in group.index if k != best)
                self.report["label_merges"][str(best)] = others
                mapping.update(dict.fromkeys(others, best))
        changed = labels.isin(list(mapping))
        self.report["fixed"]["label_normalised"] = int(changed.sum())
        return labels.mask(changed, labels.map(mapping)) if mapping else labels

    def drop_duplicates(self, out: pd.DataFrame, features: list[str]) -> pd.DataFrame:
        """Drop exact duplicate rows, then rows whose identical features carry different labels."""
        if self.cfg.duplicates == "drop":
            dup = _duplicated(out, keep="first")
            self.report["dropped"]["duplicate"] = int(dup.sum())
            out = out[~dup]
        same = out[_duplicated(out[features], keep=False)]
        groups = same.groupby(features, dropna=False, sort=False)
        conflict = groups[self.target].transform("nunique").to_numpy() > 1
        if self.cfg.conflicting_labels == "error" and conflict.any():
            raise self.fail(self.conflict_message(same, groups.ngroup(), conflict))
        self.report["dropped"]["conflicting_label"] = int(conflict.sum())
        return out.drop(index=same.index[conflict])

    def conflict_message(self, same: pd.DataFrame, gid: pd.Series, conflict: np.ndarray) -> str:
        """Name one pair of rows with identical features and different labels."""
        labels = same[self.target]
        first = same.index[conflict][0]
        other = same.index[(gid == gid.loc[first]) & (labels != labels.loc[first])][0]
        return (
            f"data rows {first + 1} and {other + 1} have identical features but different "
            f"labels ({_q(labels.loc[first])} vs {_q(labels.loc[other])}) in column "
            f"{_q(self.target)}, {conflict.sum()} rows in all; "
            "fix the labels or set clean.conflicting_labels: drop"
        )

    def check_classes(self, labels: pd.Series) -> None:
        """A classifier needs at least two classes."""
        classes = labels.unique()
        if len(classes) == 0:
            raise self.fail(f"no labelled rows left in column {_q(self.target)}; add rows")
        if len(classes) == 1:
            raise SluiceError(
                f"{self.source} has a single class {_q(classes[0])} in column "
                f"{_q(self.target)}; a classifier needs at least two"
            )

    def drop_rare(self, out: pd.DataFrame) -> pd.DataFrame:
        """Refuse or drop classes with fewer than clean.min_class_rows rows."""
        counts = out[self.target].value_counts()
        rare = counts[counts < self.cfg.min_class_rows]
        if self.cfg.rare_classes == "error" and len(rare):
            label, rows = min(rare.items(), key=lambda kv: (kv[1], str(kv[0])))
            more = f" (and {len(rare) - 1} more rare classes)" if len(rare) > 1 else ""
            raise self.fail(
                f"class {_q(label)} in column {_q(self.target)} has {_n(rows, 'row')}, fewer than "
                f"clean.min_class_rows={self.cfg.min_class_rows}{more}; "
                "add rows, or set clean.rare_classes: drop"
            )
        drop = out[self.target].isin(rare.index).to_numpy()
        self.report["dropped"]["rare_class"] = int(drop.sum())
        self.report["dropped_classes"] = sorted(str(label) for label in rare.index)
        if len(rare):
            dropped = {str(k): int(v) for k, v in rare.items()}
            log.warning("%s: dropped rare classes %s", self.source, dropped)
            self.check_classes(out.loc[~drop, self.target])
        return out[~drop]


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


def _duplicated(frame: pd.DataFrame, keep: Literal["first", False]) -> np.ndarray:
    """``frame.duplicated(keep=keep)`` (NaN equals NaN), comparing only rows whose hashes match."""
    hashes = pd.util.hash_pandas_object(frame, index=False)
    maybe = hashes.duplicated(keep=False).to_numpy()
    result = np.zeros(len(frame), dtype=bool)
    if maybe.any():
        result[maybe] = frame[maybe].duplicated(keep=keep).to_numpy()
    return result


def _by_count(item: tuple[Any, int]) -> tuple[int, str]:
    """Sort key: most frequent first, then by label."""
    return -int(item[1]), str(item[0])


def _n(count: int, noun: str) -> str:
    """``"1 row"``, ``"2 rows"``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _q(value: object, limit: int = 60) -> str:
    """Quote a name or value for a one-line message (newlines escaped, long text cut)."""
    text = str(value)
    return repr(text if len(text) <= limit else text[:limit] + "...")
