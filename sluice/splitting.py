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

    Rows are expected to be unique on their features (the clean stage guarantees it), so no
    identical row can land in two splits.

    Returns:
        (train, val, test) frames with fresh indexes.
    """
    from sklearn.model_selection import train_test_split

    counts = df[target].value_counts()
    too_small = counts[counts < 3]
    if len(too_small):
        label, n = too_small.index[0], int(too_small.iloc[0])
        raise SluiceError(
            f"class '{label}' has {n} row(s); a train/val/test split needs at least 3 per class "
            "(set clean.min_class_rows higher and clean.rare_classes: drop)"
        )
    rest, test = train_test_split(
        df, test_size=test_size, stratify=df[target], random_state=seed
    )
    val_share = val_size / (1.0 - test_size)
    train, val = train_test_split(
        rest, test_size=val_share, stratify=rest[target], random_state=seed
    )
    return tuple(part.reset_index(drop=True) for part in (train, val, test))  # type: ignore[return-value]


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
    log.info("long-tail cut (imbalance %g): %d -> %d training rows", imbalance_factor,
             len(train), len(kept))
    return train.iloc[kept].reset_index(drop=True)


def sorted_labels(labels: pd.Series | list[str]) -> list[str]:
    """Class names in natural order: numerically when every label is a number, else as text."""
    unique = sorted(set(map(str, labels)))
    try:
        return sorted(unique, key=float)
    except ValueError:
        return unique
