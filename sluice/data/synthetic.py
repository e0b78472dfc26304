"""How new and how realistic generated training rows are, measured against the real rows.

Two checks, both on the training split only: can a classifier tell generated rows from real ones
of the same classes (a detection ROC AUC: 0.5 when it cannot), and how close each generated row
lies to its nearest real row (0 is a copy, which adds no new information).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sluice.progress import Phase

FOLDS = 5
TREES = 100
MISSING = "__missing__"


def check_generated(
    train: pd.DataFrame,
    resampled: pd.DataFrame,
    info: dict,
    target: str,
    feature_types: dict[str, str],
    max_rows: int,
    seed: int,
) -> dict | None:
    """``check_synthetic`` of the rows ``resample`` generated (the last ``rows_generated`` of
    ``resampled``) against ``train``; None when it generated none or ``max_rows`` is 0."""
    generated = info.get("rows_generated", 0)
    if not generated or not max_rows:
        return None
    categorical = [c for c in train.columns if feature_types.get(c) == "categorical"]
    new_rows = resampled.iloc[len(resampled) - generated :]
    return check_synthetic(train, new_rows, target, categorical, max_rows, seed)


def check_synthetic(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    target: str,
    categorical: list[str],
    max_rows: int,
    seed: int,
) -> dict:
    """Compare generated rows with the real rows they were made from.

    Rows are encoded with statistics of the real rows of the classes generated (the rows the new
    ones were made from): numeric columns standardised (gaps filled with the median), categorical
    columns one-hot. Detection and distances use those real rows; copies are counted against
    every real row.

    Returns:
        ``real_vs_synthetic_auc``: ROC AUC of a random forest, cross-validated over 5 folds,
        telling generated rows from real rows of the same classes (per class as many real as
        generated rows, at most ``max_rows`` of each); None when too few rows. ``nearest_real_min``
        / ``_median``: Euclidean distance from a generated row (at most ``max_rows`` of them) to
        the closest real row; ``real_nearest_median``: the same from a real row to the closest
        other real row, for scale. ``exact_copies``: share of generated rows equal to a real row.
    """
    from threadpoolctl import threadpool_limits

    features = [c for c in real.columns if c != target]
    rng = np.random.default_rng(seed)
    same = real[real[target].isin(synthetic[target].unique())]  # of the classes generated
    encode = _encoder(same[features], categorical)
    real_part, fake_part = _matched_rows(same, synthetic, target, max_rows, rng)
    fake_sample = synthetic.iloc[_pick(len(synthetic), max_rows, rng)]
    real_sample = same.iloc[_pick(len(same), max_rows, rng)]
    with Phase("check generated rows", 3, "checks") as bar:
        with threadpool_limits(1):  # BLAS threads on a busy machine slow small sklearn work
            auc = _detection_auc(encode(real_part[features]), encode(fake_part[features]), seed)
            bar.advance()
            to_fake, to_real = _nearest(
                encode(same[features]), encode(fake_sample[features]), encode(real_sample[features])
            )
            bar.advance()
        copies = np.isin(
            _row_hashes(_as_objects(synthetic[features], categorical)),
            _row_hashes(_as_objects(real[features], categorical)),
        )
        bar.advance()
    return {
        "rows_generated": len(synthetic),
        "rows_compared": len(fake_part),
        "real_vs_synthetic_auc": auc,
        "nearest_real_min": round(float(to_fake.min()), 6),
        "nearest_real_median": round(float(np.median(to_fake)), 6),
        "real_nearest_median": round(float(np.median(to_real)), 6),
        "exact_copies": round(float(copies.mean()), 6),
    }


def _encoder(real: pd.DataFrame, categorical: list[str]):
    """A function rows -> float matrix, fitted on ``real``."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [c for c in real.columns if c not in categorical]
    numeric_steps = make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()
    )
    encoder = ColumnTransformer(
        [
            ("num", numeric_steps, numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
        ],
        sparse_threshold=0.0,
    )
    encoder.fit(_as_objects(real, categorical))
    return lambda rows: encoder.transform(_as_objects(rows, categorical))


def _as_objects(rows: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    """Categorical columns as Python strings (a gap as its own value), numeric as float64."""
    rows = rows.copy()
    for col in rows.columns:
        if col in categorical:
            rows[col] = rows[col].astype(object).where(rows[col].notna(), MISSING).astype(str)
        else:
            rows[col] = rows[col].astype("float64")
    return rows.astype({c: object for c in categorical})


def _matched_rows(
    real: pd.DataFrame, synthetic: pd.DataFrame, target: str, max_rows: int, rng
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Real and generated rows with equal counts per class, so the class mix gives nothing away."""
    real_counts = real[target].value_counts()
    wanted = {
        label: min(int(n), int(real_counts.get(label, 0)))
        for label, n in synthetic[target].value_counts().sort_index().items()
    }
    total = sum(wanted.values())
    if total > max_rows:
        wanted = {k: max(1, v * max_rows // total) for k, v in wanted.items()}
    parts = []
    for frame in (real, synthetic):
        picked = [
            frame.iloc[rng.choice(np.flatnonzero(frame[target].to_numpy() == k), n, replace=False)]
            for k, n in wanted.items()
            if n
        ]
        parts.append(pd.concat(picked) if picked else frame.iloc[:0])
    return parts[0], parts[1]


def _detection_auc(real: np.ndarray, fake: np.ndarray, seed: int) -> float | None:
    """Cross-validated ROC AUC of a random forest separating ``fake`` (1) from ``real`` (0)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    folds = min(FOLDS, len(real), len(fake))
    if folds < 2:
        return None
    X = np.vstack([real, fake])
    y = np.r_[np.zeros(len(real)), np.ones(len(fake))]
    forest = RandomForestClassifier(n_estimators=TREES, random_state=seed, n_jobs=1)
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    prob = cross_val_predict(forest, X, y, cv=cv, method="predict_proba")[:, 1]
    return round(float(roc_auc_score(y, prob)), 6)


def _nearest(
    real: np.ndarray, fake: np.ndarray, real_sample: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each fake row to its nearest real row, and from each sampled real row to
    its nearest other real row (the second neighbour: the first is the row itself)."""
    from sklearn.neighbors import NearestNeighbors

    index = NearestNeighbors(n_neighbors=2).fit(real)
    to_fake = index.kneighbors(fake, n_neighbors=1)[0][:, 0]
    to_real = index.kneighbors(real_sample, n_neighbors=min(2, len(real)))[0][:, -1]
    return to_fake, to_real


def _pick(n: int, k: int, rng) -> np.ndarray:
    """At most ``k`` of ``n`` positions, in order."""
    return np.sort(rng.choice(n, min(n, k), replace=False))


def _row_hashes(rows: pd.DataFrame) -> np.ndarray:
    """One 64-bit hash per row (index ignored): equal rows, equal hashes."""
    return pd.util.hash_pandas_object(rows.reset_index(drop=True), index=False).to_numpy()
