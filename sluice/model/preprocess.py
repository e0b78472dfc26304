"""Fitted preprocessing that travels with a model: raw columns in, a float matrix out."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sluice.data.columns import as_text
from sluice.data.text import encode, fit_vocabulary, length_cap, tokenize
from sluice.errors import SluiceError

CHUNK_ROWS = 1 << 18  # rows transformed at once


class Preprocessor:
    """Impute, scale and one-hot encode raw feature columns, fitted on training rows only.

    Numeric columns: missing -> training median, then standardised: per column (``column``),
    per column after a Yeo-Johnson power transform that makes skewed columns closer to normal
    (``power``), or with one global mean/std for image pixels so that shifting an image stays
    meaningful (``global``). Standardised values are clipped to +-1e6, so that an extreme input
    never turns into inf or NaN.
    Categorical columns: one-hot over the ``max_categories`` most frequent training values;
    missing or unseen values encode as all zeros.
    Text columns: token ids (``sluice.data.text``) over a vocabulary of the training texts, the
    first ``max_len`` tokens of each text right-padded with 0, stored as float32 (exact below
    2**24) after the tabular columns, so that every network, sampler and loop that slices rows
    of one float matrix carries text unchanged. Only the text networks read those ids.

    Args:
        feature_types: column name -> "numeric" | "categorical" | "text", in input order.
        scaling: "column", "power" or "global".
        max_categories: cap on one-hot width per categorical column.
        text: for text columns: ``max_vocab``, ``min_count``, ``max_len`` (a cap) and
            ``len_percentile`` (of the training lengths, the length kept).
    """

    def __init__(
        self,
        feature_types: dict[str, str],
        scaling: str = "column",
        max_categories: int = 50,
        text: dict[str, Any] | None = None,
    ) -> None:
        self.feature_types = dict(feature_types)
        self.scaling = scaling
        self.max_categories = max_categories
        self.text = dict(text or TEXT_DEFAULTS)

    @property
    def numeric(self) -> list[str]:
        return [c for c, t in self.feature_types.items() if t == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [c for c, t in self.feature_types.items() if t == "categorical"]

    @property
    def text_columns(self) -> list[str]:
        return [c for c, t in self.feature_types.items() if t == "text"]

    def fit(self, df: pd.DataFrame) -> Preprocessor:
        """Learn medians, means, scales and category lists from the training frame."""
        self._check_columns(df, "training data")
        num = self._numeric_frame(df, "training data")
        self.medians_ = num.median().fillna(0.0).to_numpy(dtype=np.float64)
        values = num.fillna(dict(zip(self.numeric, self.medians_, strict=True)))
        values = values.to_numpy(dtype=np.float64)
        self.lambdas_ = None
        if self.scaling == "power":
            self.lambdas_ = np.array([_yeo_johnson_lambda(col) for col in values.T])
            values = self._power(values)
        if self.scaling == "global":
            mean, std = float(values.mean()), float(values.std())
            self.means_ = np.full(len(self.numeric), mean)
            self.scales_ = np.full(len(self.numeric), std if std > 0 else 1.0)
        else:
            self.means_ = values.mean(axis=0) if len(values) else np.zeros(len(self.numeric))
            std = values.std(axis=0) if len(values) else np.ones(len(self.numeric))
            self.scales_ = np.where(std > 0, std, 1.0)
        self.categories_ = {
            col: sorted(map(str, as_text(df[col]).value_counts().index[: self.max_categories]))
            for col in self.categorical
        }
        self.vocab_, self.max_len_ = {}, {}
        for col in self.text_columns:
            docs = [tokenize(t) for t in _texts(df[col])]
            self.vocab_[col] = fit_vocabulary(docs, self.text["max_vocab"], self.text["min_count"])
            self.max_len_[col] = length_cap(docs, self.text["len_percentile"], self.text["max_len"])
        return self

    @property
    def n_tabular(self) -> int:
        """Width of the numeric and one-hot columns, which come first in the matrix."""
        return len(self.numeric) + sum(len(v) for v in self.categories_.values())

    @property
    def n_outputs(self) -> int:
        """Width of the matrix :meth:`transform` returns."""
        return self.n_tabular + sum(self.max_len_.values())

    def text_layout(self) -> list[dict[str, Any]]:
        """Per text column, in matrix order: ``column``, ``start`` (its first matrix column),
        ``length`` (token ids kept) and ``vocab`` (vocabulary size)."""
        layout, start = [], self.n_tabular
        for col in self.text_columns:
            layout.append(
                {
                    "column": col,
                    "start": start,
                    "length": self.max_len_[col],
                    "vocab": len(self.vocab_[col]),
                }
            )
            start += self.max_len_[col]
        return layout

    def transform(self, df: pd.DataFrame, source: str = "input") -> np.ndarray:
        """Turn raw feature columns into a float32 matrix (extra columns are ignored).

        Rows are transformed a chunk at a time into the one output matrix, so that the float64
        intermediates of a table of millions of rows never exist all at once.
        """
        self._check_columns(df, source)
        out = np.empty((len(df), self.n_outputs), dtype=np.float32)
        for start in range(0, len(df), CHUNK_ROWS):
            rows = df.iloc[start : start + CHUNK_ROWS]
            out[start : start + len(rows)] = self._transform_rows(rows, source, start)
        return out

    def _transform_rows(self, df: pd.DataFrame, source: str, offset: int) -> np.ndarray:
        num = self._numeric_frame(df, source, offset).to_numpy(dtype=np.float64)
        num = np.where(np.isnan(num), self.medians_, num)
        if self.lambdas_ is not None:
            num = self._power(num)
        scaled = np.clip((num - self.means_) / self.scales_, -1e6, 1e6)
        parts = [scaled.astype(np.float32)]
        for col, cats in self.categories_.items():
            # Raw input spells categories as cleaning did: 10001.0 (a float column with gaps),
            # 10001 and " 10001" are all the training category "10001".
            codes = pd.Categorical(as_text(df[col]), categories=cats).codes
            onehot = np.zeros((len(df), len(cats)), dtype=np.float32)
            rows = np.flatnonzero(codes >= 0)
            onehot[rows, codes[rows]] = 1.0
            parts.append(onehot)
        for col in self.text_columns:
            index = self._index(col)
            docs = (tokenize(t) for t in _texts(df[col]))
            parts.append(encode(docs, index, self.max_len_[col]).astype(np.float32))
        return np.concatenate(parts, axis=1)

    def _index(self, col: str) -> dict[str, int]:
        """Token -> id of a text column's vocabulary (built once, on first use)."""
        cache = self.__dict__.setdefault("_indexes", {})
        if col not in cache:
            cache[col] = {tok: i for i, tok in enumerate(self.vocab_[col])}
        return cache[col]

    def _power(self, values: np.ndarray) -> np.ndarray:
        """Yeo-Johnson transform of each column with its fitted lambda."""
        from scipy.stats import yeojohnson

        with np.errstate(over="ignore"):  # a huge input becomes inf, then the clip bounds it
            cols = [
                yeojohnson(col, lmbda=lam) for col, lam in zip(values.T, self.lambdas_, strict=True)
            ]
        return np.column_stack(cols) if cols else values

    def _check_columns(self, df: pd.DataFrame, source: str) -> None:
        missing = [c for c in self.feature_types if c not in df.columns]
        if missing:
            shown = ", ".join(f"'{c}'" for c in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise SluiceError(
                f"{source}: missing required column(s) {shown}{more}; "
                "give the same feature columns the model was trained on"
            )

    def _numeric_frame(self, df: pd.DataFrame, source: str, offset: int = 0) -> pd.DataFrame:
        """The numeric columns as float64; a value that is not a number is refused, naming its
        row (``offset``: rows of the whole input before ``df``). Columns are checked first."""
        num = df[self.numeric].apply(pd.to_numeric, errors="coerce")
        bad = num.isna() & df[self.numeric].notna()
        inf = np.isinf(num.to_numpy(dtype=np.float64, na_value=np.nan))
        if bad.to_numpy().any() or inf.any():
            mask = bad.to_numpy() | inf
            row, col = map(int, np.argwhere(mask)[0])
            value = df[self.numeric].iat[row, col]
            raise SluiceError(
                f"{source}: column '{self.numeric[col]}' has non-numeric value {value!r} "
                f"(row {offset + row + 1}); give a number or leave it empty"
            )
        return num.astype(np.float64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state, so loading a model never unpickles anything."""
        return {
            "feature_types": self.feature_types,
            "scaling": self.scaling,
            "max_categories": self.max_categories,
            "medians": self.medians_.tolist(),
            "means": self.means_.tolist(),
            "scales": self.scales_.tolist(),
            "lambdas": None if self.lambdas_ is None else self.lambdas_.tolist(),
            "categories": self.categories_,
            **(
                {"text": self.text, "vocab": self.vocab_, "max_len": self.max_len_}
                if self.text_columns
                else {}
            ),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Preprocessor:
        """Rebuild a fitted preprocessor from :meth:`to_dict` output."""
        pre = cls(
            state["feature_types"], state["scaling"], state["max_categories"], state.get("text")
        )
        pre.medians_ = np.asarray(state["medians"], dtype=np.float64)
        pre.means_ = np.asarray(state["means"], dtype=np.float64)
        pre.scales_ = np.asarray(state["scales"], dtype=np.float64)
        lambdas = state.get("lambdas")  # absent in models saved before power scaling existed
        pre.lambdas_ = None if lambdas is None else np.asarray(lambdas, dtype=np.float64)
        pre.categories_ = {k: list(v) for k, v in state["categories"].items()}
        pre.vocab_ = {k: list(v) for k, v in state.get("vocab", {}).items()}
        pre.max_len_ = {k: int(v) for k, v in state.get("max_len", {}).items()}
        return pre


TEXT_DEFAULTS = {"max_vocab": 30_000, "min_count": 2, "max_len": 256, "len_percentile": 95.0}


def _texts(s: pd.Series) -> list[str]:
    """A text column's values as strings; a missing value is the empty text."""
    return [str(v) for v in as_text(s).fillna("")]


def _yeo_johnson_lambda(col: np.ndarray, max_rows: int = 100_000) -> float:
    """The maximum-likelihood Yeo-Johnson lambda of one column (1.0, the identity, when the
    column is constant). Long columns are estimated on evenly spaced rows, which is as good and
    takes a fraction of the time."""
    from scipy.stats import yeojohnson_normmax

    if len(col) == 0 or np.ptp(col) == 0:
        return 1.0
    sample = col[:: max(1, -(-len(col) // max_rows))]
    with np.errstate(over="ignore"):
        return float(yeojohnson_normmax(sample))


def encode_labels(labels: pd.Series, classes: list[str], source: str) -> np.ndarray:
    """Class indices (int64) of string labels; a label outside ``classes`` is refused."""
    index = {c: i for i, c in enumerate(classes)}
    codes = labels.astype(str).map(index)
    if codes.isna().any():
        unseen = sorted(set(labels[codes.isna()].astype(str)))[:5]
        raise SluiceError(
            f"{source}: label(s) {', '.join(map(repr, unseen))} never seen in training "
            f"(known: {', '.join(classes[:10])}); give every class enough rows to reach all splits"
        )
    return codes.to_numpy(dtype=np.int64)
