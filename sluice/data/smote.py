"""SMOTE and SMOTE-NC for large tables: one class at a time, new rows a chunk at a time.

The algorithms are imbalanced-learn's (``SMOTE``, ``SMOTENC``), and with the same seed the new
numeric values are the same: a new row lies on the segment from a row of its class to one of
that row's ``k`` nearest neighbours, and each categorical value is the most frequent one among
those ``k`` neighbours (a tie broken at random). Distances see a category as the median
standard deviation of the class's numeric columns, as in SMOTE-NC.

What differs is memory. imbalanced-learn copies the whole training table into a sparse matrix,
returns it again as one object array with the new rows stacked under it, and SMOTENC densifies
``new rows x k x columns`` at once (about 10 GB for six million new rows of 41 encoded
columns). Here only the rows of the class being over-sampled are read, as float64 numbers and
integer category codes; the new rows are made in chunks and returned as small arrays for the
caller to append to the untouched original rows. A categorical column of many categories is
seen by distances through its ``cap`` most frequent ones (``data.max_categories``, as the model's
one-hot encoding sees it), and the categories of new rows are voted over each row's ``k``
neighbours, never over all categories: memory does not grow with the number of categories.
:func:`peak_bytes` says how much one class needs, before any of it is allocated, and
:func:`check_memory` refuses, in one line, a resampling (by any method) that would not fit.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from sluice.data.memory import memory_budget
from sluice.errors import SluiceError
from sluice.progress import Phase

CHUNK = 1 << 18  # new rows per chunk: bounds the (chunk, k, columns) neighbour arrays


def smote_class(
    numeric: np.ndarray,
    codes: np.ndarray,
    n_categories: list[int],
    n_new: int,
    k: int,
    seed: int,
    block: int = 0,
    cap: int = 0,
    bar: Phase | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``n_new`` synthetic rows of one class from its rows.

    Args:
        numeric: (n, p) float64, no gaps (SMOTE needs complete rows).
        codes: (n, c) integer category codes, ``0 <= codes[:, j] < n_categories[j]``.
        n_categories: number of categories of each categorical column.
        n_new: rows to make.
        k: neighbours per row (``n > k``).
        seed: the same seed gives the same rows.
        block: a class of more rows than this looks for neighbours within random blocks of
            about this many of its rows (exact search costs rows squared: 350,000 rows of 45
            columns take minutes on two cores; within blocks the cost grows linearly, and
            in many dimensions the neighbours found are hardly farther); 0: the whole class.
        cap: a column of more categories than ``cap`` (besides its last code, the gap) has
            distance columns for its codes below ``cap`` only, which the caller gives to the
            most frequent categories; the other codes are all zeros there; 0: no cap.
        bar: a phase counting new rows, advanced a chunk at a time (its ``search`` field
            counts the neighbour search's blocks).

    Returns:
        (n_new, p) float64 values and (n_new, c) codes.
    """
    space = _distance_space(numeric, codes, n_categories, cap)
    neighbours = _neighbours(space, k, block, seed, bar)
    del space  # (n, width): the largest array here
    rng = np.random.RandomState(seed)  # imbalanced-learn's draws: base row and neighbour, step
    picks = rng.randint(low=0, high=neighbours.size, size=n_new)
    steps = rng.uniform(size=n_new)
    rows, cols = np.divmod(picks, k)
    votes = np.random.default_rng(seed)
    new_numeric = np.empty((n_new, numeric.shape[1]))
    new_codes = np.empty((n_new, codes.shape[1]), dtype=codes.dtype)
    for start in range(0, n_new, CHUNK):
        part = slice(start, start + CHUNK)
        base, near = rows[part], neighbours[rows[part], cols[part]]
        gap = numeric[near] - numeric[base]
        new_numeric[part] = numeric[base] + steps[part, None] * gap
        for j in range(codes.shape[1]):
            new_codes[part, j] = _vote(codes[neighbours[base], j], votes)
        if bar is not None:
            bar.advance(len(base))
    return new_numeric, new_codes


def distance_widths(n_categories: list[int], cap: int = 0) -> list[int]:
    """Distance columns of each categorical column: its categories, at most ``cap`` + 1 (the
    gap code's column kept)."""
    return [min(size, cap + 1) if cap else size for size in n_categories]


def peak_bytes(
    n_rows: int, n_numeric: int, widths: list[int], n_new: int, k: int, block: int
) -> int:
    """Bytes :func:`smote_class` holds at once for one class of ``n_rows`` rows: the (n, width)
    distance space and a copy of one block of it while searching, the search's (256, block)
    distance chunks on two threads, the (n, k) neighbours, one chunk's values and votes, and the
    (n_new, columns) new rows. ``widths``: :func:`distance_widths`."""
    width = n_numeric + sum(widths)
    searched = min(n_rows, block) if block else n_rows
    chunk = min(n_new, CHUNK)
    cells = (n_rows + searched) * width + 512 * searched + n_rows * k
    cells += chunk * (4 * n_numeric + 6 * k) + n_new * (n_numeric + len(widths))
    return 8 * cells


def check_memory(
    train: pd.DataFrame,
    target: str,
    feature_types: Mapping[str, str],
    method: str,
    k: int,
    knn: tuple[int, int],
    max_memory_gb: float | None,
) -> int:
    """Refuse in one line a resampling whose estimated peak memory exceeds the budget:
    ``max_memory_gb``, or (None) a share of the memory available now. ``knn``:
    (resample.knn_block, data.max_categories). Returns the estimate in bytes."""
    need, detail, fix = _estimate(train, target, feature_types, method, k, knn)
    budget, source = memory_budget(max_memory_gb, "resample.max_memory_gb")
    if need > budget:
        raise SluiceError(
            f"resample.method {method} needs about {need / 1e9:.2f} GB of memory ({detail}), "
            f"more than its budget of {budget / 1e9:.2f} GB ({source}); {fix}, "
            "or raise resample.max_memory_gb"
        )
    return need


def _estimate(
    train: pd.DataFrame,
    target: str,
    types: Mapping[str, str],
    method: str,
    k: int,
    knn: tuple[int, int],
) -> tuple[int, str, str]:
    """(peak bytes, what drives them, what to change) of :func:`resample` on ``train``: the
    frames it returns, and the arrays of the sampler ``method`` (see each branch)."""
    counts = train[target].value_counts()
    categorical = [c for c, t in types.items() if t == "categorical" and c in train]
    numeric = len(train.columns) - 1 - len(categorical)
    n, most = len(train), int(counts.max())
    rows = {"none": n, "random_under": len(counts) * int(counts.min())}.get(method)
    rows = len(counts) * most if rows is None else rows  # over-samplers: up to the largest class
    new = max(rows - n, 0)
    need = int((rows + new) * _row_bytes(train)) if method != "none" else 0  # new rows, all rows
    detail, fix = f"{rows:,} rows out", "use resample.method random_under or none"
    if method in ("none", "random_over", "random_under"):
        return need, detail, fix
    over = {label: most - int(c) for label, c in counts.items() if c < most}  # rows to make
    label = max(over, key=lambda lab: counts[lab], default=counts.index[0])
    n_c = int(counts[label])  # the largest class to over-sample
    levels = {c: int(train[c].nunique()) for c in categorical}
    most_levels = max(levels, key=levels.get, default=None)
    widest = f"; column {most_levels!r} has {levels[most_levels]:,} categories" if levels else ""
    if method == "smote" and numeric:  # sluice.data.smote, a class at a time
        widths = distance_widths([levels[c] + 1 for c in categorical], knn[1])
        per_class = [
            peak_bytes(int(counts[c]), numeric, widths, m, k, knn[0]) for c, m in over.items()
        ]
        need += max(per_class, default=0)
        detail = f"class {label!r}: {n_c:,} rows x {numeric + sum(widths):,} distance columns"
        fix = "use resample.method random_over"
        if categorical:
            detail += widest
            fix = f"lower data.max_categories (now {knn[1]}), or {fix.removeprefix('use ')}"
    elif method == "smote":  # imbalanced-learn's SMOTEN: (n_c, n_c) distances, three at once
        need += 24 * n_c**2 + 16 * n * len(categorical)
        detail = f"SMOTEN compares every pair of the {n_c:,} rows of class {label!r}"
        fix = "use resample.method random_over"
    elif method == "gan":  # sluice.data.gan: every row one-hot, float32 and float64 copies
        width = numeric + sum(levels.values()) + len(categorical)
        need += 8 * n * (width + numeric + len(categorical)) + 12 * new * width
        detail = f"{n:,} rows x {width:,} one-hot columns{widest}"
        fix = "use resample.method smote (its distances see data.max_categories) or random_over"
    else:  # imbalanced-learn on numeric columns: the table as floats, in and out
        need += 8 * numeric * (2 * n + 3 * rows)
        detail, fix = f"{rows:,} rows x {numeric} columns", "use resample.method random_over"
    return need, detail, fix


def _row_bytes(frame: pd.DataFrame) -> float:
    """Bytes per row of ``frame`` in memory, strings included, from up to 10,000 rows."""
    sample = frame.iloc[:: max(1, len(frame) // 10_000)]
    return float(sample.memory_usage(index=False, deep=True).sum()) / max(len(sample), 1)


def _distance_space(
    numeric: np.ndarray, codes: np.ndarray, n_categories: list[int], cap: int = 0
) -> np.ndarray:
    """Numeric columns, then each category as a one-hot block scaled so that two rows with
    different values differ by the median numeric standard deviation (SMOTE-NC's rule). A
    column capped by ``cap`` keeps the columns of its codes below ``cap`` and of its gap code
    (the last); rows of its other codes are zeros there, as the model's one-hot encoding sees
    them. Filled in place: the (n, width) array is the only one of its size."""
    if not n_categories:
        return numeric
    width = np.median(numeric.std(axis=0)) / np.sqrt(2) if numeric.shape[1] else 1.0
    widths = distance_widths(n_categories, cap)
    space = np.zeros((len(codes), numeric.shape[1] + sum(widths)))
    space[:, : numeric.shape[1]] = numeric
    start, rows = numeric.shape[1], np.arange(len(codes))
    for j, (size, kept) in enumerate(zip(n_categories, widths, strict=True)):
        col = codes[:, j]
        if kept < size:  # the gap code moves to the last kept column; the rest have none
            col = np.where(col < cap, col, np.where(col == size - 1, cap, -1))
        seen = col >= 0
        space[rows[seen], start + col[seen]] = width
        start += kept
    return space


def _neighbours(
    space: np.ndarray, k: int, block: int, seed: int, bar: Phase | None = None
) -> np.ndarray:
    """(n, k) positions of each row's ``k`` nearest other rows (within its block, if any;
    ``bar``'s ``search`` field counts the blocks done)."""
    from sklearn.neighbors import NearestNeighbors

    n = len(space)
    if not block or n <= block:
        index = NearestNeighbors(n_neighbors=k + 1).fit(space)
        return index.kneighbors(space, return_distance=False)[:, 1:]
    neighbours = np.empty((n, k), dtype=np.int64)
    order = np.random.default_rng(seed).permutation(n)
    blocks = np.array_split(order, -(-n // block))
    for i, rows in enumerate(blocks):
        neighbours[rows] = rows[_neighbours(space[rows], k, 0, seed)]
        if bar is not None:
            bar.update(search=f"{i + 1}/{len(blocks)} blocks")
    return neighbours


def _vote(neighbour_codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Most frequent code in each row of ``neighbour_codes`` (m, k); ties broken at random.

    Counts runs of equal codes in each sorted row, so memory is (m, k) whatever the number of
    categories (a count per category would be (m, categories): gigabytes for thousands)."""
    m, k = neighbour_codes.shape
    ordered = np.sort(neighbour_codes, axis=1)
    runs = np.zeros((m, k), dtype=np.int64)  # each slot's run of equal codes, 0 .. k - 1
    runs[:, 1:] = np.cumsum(ordered[:, 1:] != ordered[:, :-1], axis=1)
    flat = (np.arange(m)[:, None] * k + runs).ravel()
    counts = np.bincount(flat, minlength=m * k).reshape(m, k).astype(np.float64)
    counts += rng.uniform(0.0, 0.5, size=counts.shape)  # below 1: only breaks ties
    first = (runs == counts.argmax(axis=1)[:, None]).argmax(axis=1)  # first slot of the winner
    return ordered[np.arange(m), first]
