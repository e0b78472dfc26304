"""Free text: normalising, tokenising, telling text from categories, and a vocabulary fitted on
training texts only.

Tokens are case-folded runs of letters and digits, each punctuation mark on its own, and each
character of the scripts written without spaces (Chinese, Japanese kana and kanji) on its own, so
Chinese text gets character tokens instead of one token per sentence. The rule is a regular
expression over NFKC-normalised text: the same string gives the same tokens on any machine, and
a vocabulary is a plain list of strings, saved as JSON with the model.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

PAD, OOV = 0, 1  # token ids: padding (after the last real token) and out-of-vocabulary
SPECIALS = ("<pad>", "<unk>")

# Scripts written without spaces: CJK ideographs (with extensions and compatibility forms),
# hiragana and katakana. Hangul is written with spaces and stays in words.
_NO_SPACE = "\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_TOKEN = re.compile(rf"[{_NO_SPACE}]|[^\W{_NO_SPACE}]+|[^\w\s]")
_SPACES = re.compile(r"\s+")
_LETTER = re.compile(r"[^\W\d_]")  # a token that holds a letter (or ideograph) is a word

# A string column is free text when most of its values differ and they are several tokens long.
TEXT_MIN_WORDS = 3.0  # mean words (tokens with a letter) per non-missing value
TEXT_MIN_DISTINCT = 0.5  # distinct values / non-missing values
TEXT_SAMPLE = 5000  # values looked at (evenly spaced) to decide


def normalize_text(text: str) -> str:
    """NFKC (full-width letters and digits become ASCII, ligatures split) and one space for
    any run of whitespace, trimmed."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def tokenize(text: str) -> list[str]:
    """The tokens of one text (normalised, case-folded), in order."""
    return _TOKEN.findall(normalize_text(text).casefold())


def text_profile(values: pd.Series) -> dict[str, float]:
    """What the text rule looks at, on up to :data:`TEXT_SAMPLE` evenly spaced non-missing
    values: ``mean_words`` (tokens holding a letter, so that dates, codes and numbers do not
    count) and ``distinct`` (share of distinct values)."""
    present = values.dropna()
    if len(present) > TEXT_SAMPLE:
        present = present.iloc[np.linspace(0, len(present) - 1, TEXT_SAMPLE).astype(int)]
    if present.empty:
        return {"mean_words": 0.0, "distinct": 0.0}
    strings = present.astype(str)
    words = strings.map(lambda s: sum(1 for t in tokenize(s) if _LETTER.search(t)))
    return {
        "mean_words": round(float(words.mean()), 3),
        "distinct": round(strings.nunique() / len(strings), 3),
    }


def is_text(profile: dict[str, float]) -> bool:
    """The inference rule: free text when values average at least :data:`TEXT_MIN_WORDS`
    words and at least :data:`TEXT_MIN_DISTINCT` of them are distinct (a city name, a product
    code or a date is a category; a review, a remark or a ticket is text)."""
    return profile["mean_words"] >= TEXT_MIN_WORDS and profile["distinct"] >= TEXT_MIN_DISTINCT


def fit_vocabulary(tokens: Iterable[Sequence[str]], max_size: int, min_count: int) -> list[str]:
    """The vocabulary of tokenised training texts: :data:`SPECIALS`, then tokens seen at least
    ``min_count`` times, most frequent first (ties in code-point order), ``max_size`` in all.

    Sorting on (count, token) alone makes it the same list on every run and machine.
    """
    counts = Counter(tok for doc in tokens for tok in doc)
    kept = sorted((t for t, n in counts.items() if n >= min_count), key=lambda t: (-counts[t], t))
    return [*SPECIALS, *kept[: max(0, max_size - len(SPECIALS))]]


def length_cap(tokens: Iterable[Sequence[str]], percentile: float, cap: int) -> int:
    """The sequence length kept: the ``percentile`` of training lengths, at most ``cap``,
    at least 1."""
    lengths = np.fromiter((len(doc) for doc in tokens), dtype=np.int64)
    if lengths.size == 0:
        return 1
    return int(min(cap, max(1, math.ceil(float(np.percentile(lengths, percentile))))))


def encode(tokens: Iterable[Sequence[str]], index: dict[str, int], max_len: int) -> np.ndarray:
    """Token ids (n, max_len) int32: the first ``max_len`` tokens of each text, right-padded with
    :data:`PAD`; a token outside ``index`` is :data:`OOV`."""
    docs = list(tokens)
    out = np.full((len(docs), max_len), PAD, dtype=np.int32)
    for row, doc in enumerate(docs):
        ids = [index.get(tok, OOV) for tok in doc[:max_len]]
        out[row, : len(ids)] = ids
    return out
