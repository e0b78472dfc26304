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
caller to append to the untouched original rows.
"""

from __future__ import annotations

import numpy as np

CHUNK = 1 << 18  # new rows per chunk: bounds the (chunk, k, columns) neighbour arrays


def smote_class(
    numeric: np.ndarray,
    codes: np.ndarray,
    n_categories: list[int],
    n_new: int,
    k: int,
    seed: int,
    block: int = 0,
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

    Returns:
        (n_new, p) float64 values and (n_new, c) codes.
    """
    neighbours = _neighbours(_distance_space(numeric, codes, n_categories), k, block, seed)
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
        for j, size in enumerate(n_categories):
            new_codes[part, j] = _vote(codes[neighbours[base], j], size, votes)
    return new_numeric, new_codes


def _distance_space(numeric: np.ndarray, codes: np.ndarray, n_categories: list[int]) -> np.ndarray:
    """Numeric columns, then each category as a one-hot block scaled so that two rows with
    different values differ by the median numeric standard deviation (SMOTE-NC's rule)."""
    if not n_categories:
        return numeric
    width = np.median(numeric.std(axis=0)) / np.sqrt(2) if numeric.shape[1] else 1.0
    blocks = [numeric]
    for j, size in enumerate(n_categories):
        onehot = np.zeros((len(codes), size))
        onehot[np.arange(len(codes)), codes[:, j]] = width
        blocks.append(onehot)
    return np.hstack(blocks)


def _neighbours(space: np.ndarray, k: int, block: int, seed: int) -> np.ndarray:
    """(n, k) positions of each row's ``k`` nearest other rows (within its block, if any)."""
    from sklearn.neighbors import NearestNeighbors

    n = len(space)
    if not block or n <= block:
        index = NearestNeighbors(n_neighbors=k + 1).fit(space)
        return index.kneighbors(space, return_distance=False)[:, 1:]
    neighbours = np.empty((n, k), dtype=np.int64)
    order = np.random.default_rng(seed).permutation(n)
    for rows in np.array_split(order, -(-n // block)):
        neighbours[rows] = rows[_neighbours(space[rows], k, 0, seed)]
    return neighbours


def _vote(neighbour_codes: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Most frequent code in each row of ``neighbour_codes`` (m, k); ties broken at random."""
    m = len(neighbour_codes)
    flat = (np.arange(m)[:, None] * size + neighbour_codes).ravel()
    counts = np.bincount(flat, minlength=m * size).reshape(m, size).astype(np.float64)
    counts += rng.uniform(0.0, 0.5, size=counts.shape)  # below 1: only breaks ties
    return counts.argmax(axis=1)
