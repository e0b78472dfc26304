"""Stratified, seeded splits and the long-tailed cut of a training split."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from sluice.errors import SluiceError

log = logging.getLogger(__name__)


def stratified_split(
    df: pd.DataFrame, target: str, val_size: float, test_size: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Split rows into train / val / test, stratified on ``target``.

    Rows with identical features (kept when ``clean.duplicates: keep``) form one group that goes
    to a single split, so no feature row is shared between splits. Every class of val and test
    must also be in train, or the model could never learn it.

    Returns:
        (train, val, test) frames with fresh indexes.
    """
    from sklearn.model_selection import train_test_split

    df = df.reset_index(drop=True)
    groups = feature_groups(df.drop(columns=[target]))
    distinct = np.flatnonzero(~groups.duplicated().to_numpy())  # one row per group
    # Labels as integer codes in sorted order: the same strata as the labels, sorted fast.
    labels, names = pd.factorize(df[target], sort=True)
    _check_class_sizes(pd.Series(names[labels[distinct]]), has_duplicates=len(distinct) < len(df))
    # Positions, not frames: the table is copied once, into its three parts.
    rest, test = train_test_split(
        distinct, test_size=test_size, stratify=labels[distinct], random_state=seed
    )
    val_share = val_size / (1.0 - test_size)
    train, val = train_test_split(
        rest, test_size=val_share, stratify=labels[rest], random_state=seed
    )
    parts = tuple(_with_group_members(df, groups, part) for part in (train, val, test))
    _check_train_has_every_class(*parts, target=target)
    return parts  # type: ignore[return-value]


def feature_groups(features: pd.DataFrame) -> pd.Series:
    """A group id per row; rows with identical feature values (NaN equal to NaN) share one."""
    hashes = pd.util.hash_pandas_object(features, index=False).to_numpy()
    codes, _ = pd.factorize(hashes)
    return pd.Series(codes, index=features.index)


def _with_group_members(df: pd.DataFrame, groups: pd.Series, picked: np.ndarray) -> pd.DataFrame:
    """The rows of every group whose representative is at a position in ``picked``, in
    ``picked`` order."""
    rank = pd.Series(np.arange(len(picked)), index=groups.iloc[picked].to_numpy())
    order = groups.map(rank)  # NaN for groups of other splits
    members = order.dropna().sort_values(kind="stable").index
    return df.iloc[members].reset_index(drop=True)


def _check_class_sizes(labels: pd.Series, has_duplicates: bool) -> None:
    """Each class needs a row for train, val and test."""
    counts = labels.value_counts()
    too_small = counts[counts < 3]
    if len(too_small):
        label, n = too_small.index[0], int(too_small.iloc[0])
        distinct = " with distinct features" if has_duplicates else ""
        raise SluiceError(
            f"class '{label}' has {n} row(s){distinct}; a train/val/test split needs at least 3 "
            "per class (set clean.min_class_rows higher and clean.rare_classes: drop)"
        )


def _check_train_has_every_class(
    train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame, target: str
) -> None:
    """Refuse a split whose val or test holds a class that train never shows the model."""
    unseen = sorted(
        set(val[target].unique()).union(test[target].unique()) - set(train[target].unique())
    )
    if unseen:
        label = unseen[0]
        n_val, n_test = int((val[target] == label).sum()), int((test[target] == label).sum())
        raise SluiceError(
            f"class '{label}' has no rows in the training split (val {n_val}, test {n_test}); "
            "lower split.val_size and split.test_size, add rows of that class, or raise "
            "clean.min_class_rows and set clean.rare_classes: drop"
        )


def long_tail_counts(classes: list[str], n_max: int, imbalance_factor: float) -> dict[str, int]:
    """Per-class counts falling exponentially from ``n_max`` to ``n_max / imbalance_factor``.

    Class ``i`` of ``C`` keeps ``n_max * imbalance_factor ** (-i / (C - 1))`` rows, the
    CIFAR-10-LT profile.
    """
    n_classes = len(classes)
    if n_classes < 2:
        return {c: n_max for c in classes}
    return {
        label: max(1, int(n_max * imbalance_factor ** (-i / (n_classes - 1))))
        for i, label in enumerate(classes)
    }


def cut_long_tail(
    train: pd.DataFrame, target: str, classes: list[str], imbalance_factor: float, seed: int
) -> pd.DataFrame:
    """Subsample ``train`` to a long-tailed class profile (val and test stay untouched)."""
    counts = train[target].value_counts()
    quota = long_tail_counts(classes, int(counts.min()), imbalance_factor)
    rng = np.random.default_rng(seed)
    keep = []
    for label, n in quota.items():
        rows = np.flatnonzero(train[target].to_numpy() == label)
        keep.append(rng.choice(rows, size=min(n, len(rows)), replace=False))
    kept = np.sort(np.concatenate(keep))
    log.info(
        "long-tail cut (imbalance %g): %d -> %d training rows",
        imbalance_factor,
        len(train),
        len(kept),
    )
    return train.iloc[kept].reset_index(drop=True)


def sorted_labels(labels: pd.Series | list[str]) -> list[str]:
    """Class names in natural order: numerically when every label is a number, else as text."""
    unique = sorted(set(map(str, labels)))
    try:
        return sorted(unique, key=float)
    except ValueError:
        return unique
