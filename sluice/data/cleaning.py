"""Clean a raw table: typed features, string labels, no duplicates or conflicts, and a report.

Pure and vectorised, one named step per concern (``clean_table`` lists them in order). Missing
feature values stay missing: imputation is fitted later, on the training split only, so nothing
learnt from validation or test rows leaks in here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from sluice.config import CleanConfig
from sluice.data.columns import (
    COLUMN_TYPES,
    TEXT_RULE,
    as_text,
    describe_types,
    feature_types,
    type_column,
)
from sluice.data.columns import quote as _q
from sluice.errors import SluiceError
from sluice.progress import track

__all__ = ["DROP_REASONS", "FIX_REASONS", "clean_table", "describe_types", "feature_types"]

log = logging.getLogger(__name__)

DROP_REASONS = ("missing_target", "duplicate", "conflicting_label", "rare_class")
FIX_REASONS = ("bad_value_to_missing", "inf_to_missing", "label_normalised")
KEEP_REASONS = ("duplicate", "conflicting_label")  # counted, and kept by the default policy


@dataclass(frozen=True)
class _Cleaning:
    """What every step needs: where the data came from, the label column, the policy, and the
    report the steps fill in."""

    source: str
    target: str
    cfg: CleanConfig
    report: dict[str, Any]

    def fail(self, message: str) -> SluiceError:
        """A SluiceError whose message starts with the data source."""
        return SluiceError(f"{self.source}: {message}")


def clean_table(
    df: pd.DataFrame,
    target: str,
    cfg: CleanConfig,
    declared: dict[str, str] | None = None,
    source: str = "data",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Return the cleaned frame (features in order, then ``target`` as strings) and a report.

    The input is not modified; ``source`` names the data in error messages. Report keys:
    source, rows_in, rows_out, dropped {reason: rows}, fixed {reason: values}, kept {reason:
    rows} (duplicates and conflicting labels the policy keeps), columns
    {name: {type, inferred, missing}}, classes {label: rows}, label_merges {kept: [merged]},
    dropped_classes [label]. The index holds 0-based input rows until the last step.
    """
    declared = declared or {}
    run = _Cleaning(source, target, cfg, _new_report(source, len(df)))
    features = check_columns(run, df, declared)
    df = df.reset_index(drop=True)
    out = typed_frame(run, df, features, declared)
    out = drop_missing_target(run, out)
    out[target] = merge_label_case(run, out[target])
    hashes = pd.util.hash_pandas_object(out[features], index=False)  # once, for both checks
    out = drop_duplicates(run, out, hashes)
    out = drop_conflicting_labels(run, out, features, hashes.loc[out.index])
    check_classes(run, out[target])
    out = drop_rare_classes(run, out).reset_index(drop=True)
    _finish_report(run, out, features)
    log.info("cleaned %s: %d -> %d rows", source, len(df), len(out))
    return out, run.report


def check_columns(run: _Cleaning, df: pd.DataFrame, declared: dict[str, str]) -> list[str]:
    """Validate names (unique, target present, declared ones present); return the features."""
    repeated = df.columns[df.columns.duplicated()]
    if len(repeated):
        raise run.fail(f"column {_q(repeated[0])} appears twice; rename one")
    if run.target not in df.columns:
        raise run.fail(f"target column {_q(run.target)} not found; set data.target")
    for col, kind in declared.items():
        if col not in df.columns:
            raise run.fail(
                f"data.columns declares column {_q(col)}, which is not in the data; "
                "fix the name or remove it from data.columns"
            )
        if kind not in COLUMN_TYPES:
            raise run.fail(f"data.columns.{col} is {_q(kind)}; use numeric, categorical or text")
    if run.target in declared:
        log.warning("%s: data.columns entry for target %r ignored", run.source, run.target)
    features = [col for col in df.columns if col != run.target]
    if not features:
        raise run.fail(f"no feature columns besides the target {_q(run.target)}")
    return features


def typed_frame(
    run: _Cleaning, df: pd.DataFrame, features: list[str], declared: dict[str, str]
) -> pd.DataFrame:
    """Each feature typed and converted (see ``type_column``), then the label as text."""
    columns = {
        col: type_column(
            df[col], col, declared.get(col), run.cfg.bad_values, run.source, run.report
        )
        for col in track(features, f"clean {run.source}: type columns", unit="columns")
    }
    columns[run.target] = as_text(df[run.target])
    return pd.DataFrame(columns, index=df.index)


def drop_missing_target(run: _Cleaning, out: pd.DataFrame) -> pd.DataFrame:
    """Drop rows without a label, or refuse them when clean.missing_target is error."""
    missing = out[run.target].isna().to_numpy()
    if run.cfg.missing_target == "error" and missing.any():
        raise run.fail(
            f"column {_q(run.target)} has {_n(missing.sum(), 'missing label')}, the first in "
            f"data row {out.index[missing][0] + 1}; fill them or set clean.missing_target: drop"
        )
    run.report["dropped"]["missing_target"] = int(missing.sum())
    return out[~missing]


def merge_label_case(run: _Cleaning, labels: pd.Series) -> pd.Series:
    """Merge labels that differ only by case into their most frequent spelling."""
    if run.cfg.label_case != "merge" or labels.empty:
        return labels
    counts = labels.value_counts()
    mapping: dict[str, str] = {}
    for _, group in counts.groupby(counts.index.str.casefold()):
        if len(group) > 1:
            best = min(group.items(), key=_by_count)[0]
            others = sorted(str(k) for k in group.index if k != best)
            run.report["label_merges"][str(best)] = others
            mapping.update(dict.fromkeys(others, best))
    changed = labels.isin(list(mapping))
    run.report["fixed"]["label_normalised"] = int(changed.sum())
    return labels.mask(changed, labels.map(mapping)) if mapping else labels


def drop_duplicates(run: _Cleaning, out: pd.DataFrame, feature_hashes: pd.Series) -> pd.DataFrame:
    """Exact duplicate rows (features and label): counted, and dropped when clean.duplicates is
    drop. Kept by default: in real data they are repeated observations (several people share a
    profile), and dropping them would change how often each case is seen.
    ``feature_hashes``: each row's hash of its features."""
    label = pd.util.hash_pandas_object(out[run.target], index=False).to_numpy()
    dup = _duplicated(out, "first", feature_hashes.to_numpy() * _MIX ^ label)
    if run.cfg.duplicates == "keep":
        run.report["kept"]["duplicate"] = int(dup.sum())
        return out
    run.report["dropped"]["duplicate"] = int(dup.sum())
    return out[~dup]


def drop_conflicting_labels(
    run: _Cleaning, out: pd.DataFrame, features: list[str], feature_hashes: pd.Series
) -> pd.DataFrame:
    """Rows whose identical features carry different labels: kept (the default), dropped, or
    refused. Kept, they are label noise that makes the problem probabilistic, which the model
    should learn as a probability; ``split`` keeps identical feature rows in one split."""
    same = out[_duplicated(out[features], False, feature_hashes.to_numpy())]
    groups = same.groupby(features, dropna=False, sort=False)
    conflict = groups[run.target].transform("nunique").to_numpy() > 1
    if run.cfg.conflicting_labels == "error" and conflict.any():
        raise run.fail(_conflict_message(run, same, groups.ngroup(), conflict))
    if run.cfg.conflicting_labels == "keep":
        run.report["kept"]["conflicting_label"] = int(conflict.sum())
        return out
    run.report["dropped"]["conflicting_label"] = int(conflict.sum())
    return out.drop(index=same.index[conflict])


def _conflict_message(
    run: _Cleaning, same: pd.DataFrame, gid: pd.Series, conflict: np.ndarray
) -> str:
    """Name one pair of rows with identical features and different labels."""
    labels = same[run.target]
    first = same.index[conflict][0]
    other = same.index[(gid == gid.loc[first]) & (labels != labels.loc[first])][0]
    return (
        f"data rows {first + 1} and {other + 1} have identical features but different "
        f"labels ({_q(labels.loc[first])} vs {_q(labels.loc[other])}) in column "
        f"{_q(run.target)}, {conflict.sum()} rows in all; "
        "fix the labels, or set clean.conflicting_labels: drop (or keep them as label noise)"
    )


def check_classes(run: _Cleaning, labels: pd.Series) -> None:
    """A classifier needs at least two classes."""
    classes = labels.unique()
    if len(classes) == 0:
        raise run.fail(f"no labelled rows left in column {_q(run.target)}; add rows")
    if len(classes) == 1:
        raise SluiceError(
            f"{run.source} has a single class {_q(classes[0])} in column "
            f"{_q(run.target)}; a classifier needs at least two"
        )


def drop_rare_classes(run: _Cleaning, out: pd.DataFrame) -> pd.DataFrame:
    """Refuse or drop classes with fewer than clean.min_class_rows rows."""
    counts = out[run.target].value_counts()
    rare = counts[counts < run.cfg.min_class_rows]
    if run.cfg.rare_classes == "error" and len(rare):
        label, rows = min(rare.items(), key=lambda kv: (kv[1], str(kv[0])))
        more = f" (and {len(rare) - 1} more rare classes)" if len(rare) > 1 else ""
        raise run.fail(
            f"class {_q(label)} in column {_q(run.target)} has {_n(rows, 'row')}, fewer than "
            f"clean.min_class_rows={run.cfg.min_class_rows}{more}; "
            "add rows, or set clean.rare_classes: drop"
        )
    drop = out[run.target].isin(rare.index).to_numpy()
    run.report["dropped"]["rare_class"] = int(drop.sum())
    run.report["dropped_classes"] = sorted(str(label) for label in rare.index)
    if len(rare):
        dropped = {str(k): int(v) for k, v in rare.items()}
        log.warning("%s: dropped rare classes %s", run.source, dropped)
        check_classes(run, out.loc[~drop, run.target])
    return out[~drop]


def _finish_report(run: _Cleaning, out: pd.DataFrame, features: list[str]) -> None:
    """Missing values per column, rows per class (most frequent first), rows out."""
    for col in features:
        run.report["columns"][col]["missing"] = int(out[col].isna().sum())
    counts = out[run.target].value_counts()
    run.report["classes"] = {str(k): int(v) for k, v in sorted(counts.items(), key=_by_count)}
    run.report["rows_out"] = len(out)


def _new_report(source: str, rows: int) -> dict[str, Any]:
    """The report skeleton: every drop and fix reason present, at zero."""
    return {
        "source": source,
        "rows_in": rows,
        "rows_out": 0,
        "dropped": dict.fromkeys(DROP_REASONS, 0),
        "fixed": dict.fromkeys(FIX_REASONS, 0),
        "kept": dict.fromkeys(KEEP_REASONS, 0),
        "columns": {},
        "text_rule": TEXT_RULE,
        "classes": {},
        "label_merges": {},
        "dropped_classes": [],
    }


_MIX = np.uint64(0x9E3779B97F4A7C15)  # spreads a features hash before the label's joins it


def _duplicated(
    frame: pd.DataFrame, keep: Literal["first", False], hashes: np.ndarray
) -> np.ndarray:
    """``frame.duplicated(keep=keep)`` (NaN equals NaN), comparing only the rows whose
    ``hashes`` (one uint64 per row, equal for equal rows) match another's."""
    maybe = pd.Series(hashes).duplicated(keep=False).to_numpy()
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
