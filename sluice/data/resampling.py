"""imbalanced-learn resampling of the training split (and only the training split)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from sluice.data.smote import check_memory
from sluice.errors import SluiceError
from sluice.progress import Phase

log = logging.getLogger(__name__)

SYNTHETIC = ("smote", "borderline_smote", "adasyn", "smote_tomek", "smote_enn", "gan")
APPENDING = ("smote", "borderline_smote", "adasyn", "gan")  # originals first, then new rows
MISSING_CATEGORY = "__missing__"
# Samplers that copy or drop whole rows: the only ones that can keep a text column meaningful
# (interpolating between two reviews, or generating one, makes no text).
TEXT_METHODS = ("none", "random_over", "random_under")
MAX_CATEGORIES = 50  # data.max_categories' default, for callers that do not pass theirs


def check_text_method(method: str, feature_types: Mapping[str, str]) -> None:
    """Refuse a sampler that would make rows up when the table has a text column."""
    text = [c for c, t in feature_types.items() if t == "text"]
    if text and method not in TEXT_METHODS:
        raise SluiceError(
            f"resample.method {method} cannot make text (column {text[0]!r} is text); use "
            f"{', '.join(TEXT_METHODS)}, or resample.class_weights: true"
        )


def resample(
    train: pd.DataFrame,
    target: str,
    feature_types: dict[str, str],
    method: str,
    k_neighbors: int,
    seed: int,
    *,
    gan: Mapping[str, Any] | None = None,
    knn_block: int = 50_000,
    max_categories: int = MAX_CATEGORIES,
    max_memory_gb: float | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Rebalance the training split with the imbalanced-learn sampler named by ``method``.

    Random samplers pick whole rows (missing values and categories pass through untouched).
    The SMOTE family needs complete rows: numeric gaps are filled with the training median and
    categorical gaps with a ``__missing__`` category first; SMOTENC / SMOTEN take over from SMOTE
    when there are categorical features. ``gan`` (sluice.data.gan) keeps the original rows as
    they are and adds generated ones; ``gan`` holds its options (epochs, batch_size, ...).
    ``knn_block``: plain SMOTE looks for neighbours within random blocks of about this many rows
    of a larger class (0: the whole class; see :func:`sluice.data.smote.smote_class`).
    ``max_categories``: SMOTE-NC's distances see at most this many categories of a column, its
    most frequent ones (``data.max_categories``, as the model's one-hot encoding sees them).
    ``max_memory_gb``: the memory budget (:func:`sluice.data.smote.check_memory`), checked
    before any work.

    Returns:
        (resampled frame, info) where info holds class counts before/after and, for synthetic
        methods, ``sampler`` (e.g. SMOTENC when features are categorical) and SMOTE's
        ``k_neighbors``. Over-samplers that keep the original rows first and append new ones
        (smote, borderline_smote, adasyn, gan) also give ``rows_generated``: the frame's last
        rows, which ``sluice.data.synthetic.check_generated`` can compare with the real ones.
    """
    check_text_method(method, feature_types)
    knn = (knn_block, max_categories)
    need = check_memory(train, target, feature_types, method, k_neighbors, knn, max_memory_gb)
    before = _counts(train[target])
    info: dict = {"method": method, "rows_before": len(train), "counts_before": before}
    info["memory_estimate_gb"] = round(need / 1e9, 3)
    if method == "none":
        out = train
    elif method in ("random_over", "random_under"):
        out = _resample_rows(train, target, method, seed)
    elif method == "gan":
        out, info["sampler"] = _resample_gan(train, target, feature_types, seed, gan or {})
    else:
        k = _neighbours(before, method, k_neighbors)
        info["k_neighbors"] = k
        out, info["sampler"] = _resample_synthetic(
            train, target, feature_types, method, k, seed, knn
        )
    info["rows_after"] = len(out)
    info["counts_after"] = _counts(out[target])
    if method in APPENDING:  # the original rows first, then the generated ones
        info["rows_generated"] = len(out) - len(train)
    return out.reset_index(drop=True), info


def _neighbours(counts: dict[str, int], method: str, k_neighbors: int) -> int:
    """SMOTE's k, lowered to (smallest class - 1) with a warning; refused below one neighbour."""
    label, smallest = min(counts.items(), key=lambda kv: (kv[1], kv[0]))
    k = min(k_neighbors, smallest - 1)
    if k < 1:
        raise SluiceError(
            f"resample.method {method} needs at least 2 training rows per class, but class "
            f"'{label}' has {smallest} in the training split; use resample.method random_over, "
            "add rows of that class, or raise clean.min_class_rows with clean.rare_classes: drop"
        )
    if k != k_neighbors:
        log.warning(
            "resample: k_neighbors lowered from %d to %d (class '%s' has %d training rows)",
            k_neighbors,
            k,
            label,
            smallest,
        )
    return k


def class_weights(labels: pd.Series, classes: list[str]) -> list[float]:
    """Inverse-frequency weights (mean 1 over classes), the alternative to resampling."""
    counts = labels.value_counts()
    raw = np.array([len(labels) / (len(classes) * max(int(counts.get(c, 0)), 1)) for c in classes])
    return (raw / raw.mean()).round(6).tolist()


def _resample_rows(train: pd.DataFrame, target: str, method: str, seed: int) -> pd.DataFrame:
    from imblearn.over_sampling import RandomOverSampler
    from imblearn.under_sampling import RandomUnderSampler

    sampler_cls = RandomOverSampler if method == "random_over" else RandomUnderSampler
    sampler = sampler_cls(random_state=seed)
    rows = np.arange(len(train)).reshape(-1, 1)
    picked, _ = sampler.fit_resample(rows, train[target].to_numpy())
    return train.iloc[picked.ravel()]


def _resample_synthetic(
    train: pd.DataFrame,
    target: str,
    feature_types: dict[str, str],
    method: str,
    k: int,
    seed: int,
    knn: tuple[int, int],
) -> tuple[pd.DataFrame, str]:
    """Synthetic rows from the training split; returns them and the sampler's class name.
    ``knn``: (resample.knn_block, data.max_categories) for plain SMOTE / SMOTE-NC.

    Over-samplers keep the original rows as they are (gaps included) and append the new ones;
    plain SMOTE / SMOTE-NC go through :mod:`sluice.data.smote`, which reads only the rows of the
    classes it over-samples.
    """
    features = [c for c in train.columns if c != target]
    categorical = [c for c in features if feature_types.get(c) == "categorical"]
    if method == "smote" and len(categorical) < len(features):
        return _smote(train, target, features, categorical, (k, seed, *knn)), (
            "SMOTENC" if categorical else "SMOTE"
        )
    X = _fill_gaps(train[features], categorical)
    sampler = _make_sampler(method, k, seed, features, categorical)
    with Phase(f"resample {type(sampler).__name__}"):  # one call: a bar that counts seconds
        X_new, y_new = sampler.fit_resample(X, train[target].to_numpy())
    keep = len(train) if method in APPENDING else 0  # imbalanced-learn puts the originals first
    out = pd.DataFrame(X_new[keep:], columns=features)
    for col in features:
        out[col] = out[col].astype(X[col].dtype)
    out[target] = y_new[keep:]
    if keep:
        out = pd.concat([train, out], ignore_index=True)
    return out, type(sampler).__name__


def _smote(
    train: pd.DataFrame, target: str, features: list[str], categorical: list[str], knn: tuple
) -> pd.DataFrame:
    """The training rows, then SMOTE (SMOTE-NC with categories) rows for every class below the
    largest one, up to its count; gaps filled as :func:`_fill_gaps` does, for the new rows only.
    ``knn``: (k, seed, block, cap) for :func:`sluice.data.smote.smote_class`; categories
    are coded most frequent first, so the cap keeps the most frequent ones."""
    from sluice.data.smote import smote_class

    numeric = [c for c in features if c not in categorical]
    medians = train[numeric].median()
    levels = {c: train[c].value_counts().index for c in categorical}
    for c in categorical:
        if len(levels[c]) > knn[3]:
            log.info(
                "resample: column %r has %d categories; SMOTE-NC's distances see its %d most "
                "frequent (data.max_categories), as the model does",
                c,
                len(levels[c]),
                knn[3],
            )
    sizes = [len(levels[c]) + 1 for c in categorical]
    labels = train[target]
    counts = labels.value_counts()
    parts = [train]
    with Phase("resample smote", int((counts.max() - counts).sum()), "rows") as bar:
        for label in sorted(counts.index):
            n_new = int(counts.max() - counts[label])
            if not n_new:
                continue
            bar.update(**{"class": label})
            rows = train.loc[(labels == label).to_numpy()]
            codes = np.empty((len(rows), len(categorical)), dtype=np.int64)
            for j, c in enumerate(categorical):
                found = levels[c].get_indexer(rows[c])
                codes[:, j] = np.where(found < 0, len(levels[c]), found)  # a gap: the last code
            values, new_codes = smote_class(
                rows[numeric].fillna(medians).to_numpy(np.float64), codes, sizes, n_new, *knn, bar
            )
            new = {c: values[:, i].astype(train[c].dtype) for i, c in enumerate(numeric)}
            for j, c in enumerate(categorical):
                decode = np.append(levels[c].to_numpy(dtype=object), np.nan)
                new[c] = pd.Series(decode[new_codes[:, j]]).astype(train[c].dtype)
            new[target] = pd.Series([label] * n_new, dtype=labels.dtype)
            parts.append(pd.DataFrame(new)[list(train.columns)])
    return pd.concat(parts, ignore_index=True)


def _resample_gan(
    train: pd.DataFrame, target: str, feature_types: dict[str, str], seed: int, options: Mapping
) -> tuple[pd.DataFrame, str]:
    """The training rows as they are, then rows from a class-conditional GAN trained on them."""
    from sluice.data.gan import GANOverSampler

    features = [c for c in train.columns if c != target]
    categorical = [i for i, c in enumerate(features) if feature_types.get(c) == "categorical"]
    sampler = GANOverSampler(random_state=seed, categorical_features=categorical, **options)
    out, y_new = sampler.fit_resample(train[features], train[target].to_numpy())
    out[target] = y_new
    return out, type(sampler).__name__


def _make_sampler(method: str, k: int, seed: int, features: list[str], categorical: list[str]):
    from imblearn import combine, over_sampling

    if categorical:
        if method not in ("smote",):
            raise SluiceError(
                f"resample.method {method} needs numeric features, but column "
                f"'{categorical[0]}' is categorical; use smote (SMOTENC), random_over or none"
            )
        if len(categorical) == len(features):
            return over_sampling.SMOTEN(k_neighbors=k, random_state=seed)
        return over_sampling.SMOTENC(
            categorical_features=[features.index(c) for c in categorical],
            k_neighbors=k,
            random_state=seed,
        )
    smote = over_sampling.SMOTE(k_neighbors=k, random_state=seed)
    return {
        "smote": lambda: smote,
        "borderline_smote": lambda: over_sampling.BorderlineSMOTE(k_neighbors=k, random_state=seed),
        "adasyn": lambda: over_sampling.ADASYN(n_neighbors=k, random_state=seed),
        "smote_tomek": lambda: combine.SMOTETomek(smote=smote, random_state=seed),
        "smote_enn": lambda: combine.SMOTEENN(smote=smote, random_state=seed),
    }[method]()


def _fill_gaps(X: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    """Fill missing values with training-split statistics (the only data this ever sees)."""
    X = X.copy()
    for col in X.columns:
        if col in categorical:
            X[col] = X[col].astype(object).where(X[col].notna(), MISSING_CATEGORY)
        elif X[col].isna().any():
            X[col] = X[col].fillna(X[col].median())
    return X


def _counts(labels: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in labels.value_counts().sort_index().items()}
