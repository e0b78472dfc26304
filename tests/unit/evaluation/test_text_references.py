"""The references on tables with text columns: TF-IDF + logistic regression reads the words,
gradient boosting sees the tabular part only (or is skipped), and the report says so."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from sluice.errors import SluiceError
from sluice.evaluation.metrics import metric_value
from sluice.evaluation.scoring import (
    fit_reference,
    reference_input,
    reference_params,
    reference_proba,
    resolve_reference,
    skipped_comparison,
)
from sluice.model.preprocess import Preprocessor
from sluice.pipeline.evaluating import (
    Evaluation,
    fit_references,
    plan_references,
    reference_features,
    skipped_line,
)

_WORDS = (
    "the box arrived on time we ordered it for our office and my sister said this brand was sold "
    "in small bags at a shop near that station last week so I tried one more flavour with coffee"
)
NEUTRAL = tuple(_WORDS.split())
# Cue words in spelling order, positive at both ends. Each is used as often, and more often than
# any neutral word, so in the preprocessor's vocabulary (most frequent first, ties by spelling)
# they get consecutive ids with the positive ones outside: no linear function of a token id
# tells the classes apart.
CUES, POSITIVE = ("amazing", "bland", "dull", "superb"), ("amazing", "superb")
CHINESE_NEUTRAL = tuple("这家店的菜今天我们和朋友一起去吃了午饭价格还可以服务员")
CHINESE_CUES, CHINESE_POSITIVE = ("好吃", "很差", "很棒", "难吃"), ("好吃", "很棒")


def reviews(
    n: int, seed: int, cues=CUES, positive=POSITIVE, neutral=NEUTRAL, sep: str = " "
) -> tuple[list[str], np.ndarray]:
    """``n`` texts of six random neutral words and one cue word at a random place, the cues in
    turn; the label is 1 for a positive cue: only the words tell the classes apart."""
    rng = np.random.default_rng(seed)
    docs, y = [], []
    for i in range(n):
        cue = cues[i % len(cues)]
        words = list(rng.choice(neutral, 6))
        words.insert(int(rng.integers(0, 7)), cue)
        docs.append(sep.join(words))
        y.append(int(cue in positive))
    return docs, np.array(y)


def text_table(docs: list[str], **tabular) -> pd.DataFrame:
    return pd.DataFrame({**tabular, "review": docs})


def fitted_preprocessor(frame: pd.DataFrame) -> Preprocessor:
    types = {"x": "numeric", "shop": "categorical", "review": "text"}
    return Preprocessor({c: types[c] for c in frame.columns}).fit(frame)


def roc_auc(y: np.ndarray, prob: np.ndarray) -> float:
    return metric_value(y, prob, "roc_auc")


def test_tfidf_reads_the_words_where_logreg_on_token_ids_cannot():
    docs, y = reviews(600, seed=0)
    train, test = text_table(docs[:400]), text_table(docs[400:])
    pre = fitted_preprocessor(train)
    refs = fit_references(["tfidf_logreg"], pre, train, y[:400], seed=0)
    X_test = reference_features(pre, test, "test")
    assert roc_auc(y[400:], reference_proba(refs["tfidf_logreg"], X_test, 2)) > 0.95
    # The same rows as token ids (what the matrix holds): a linear model finds nothing there.
    assert np.ptp([pre.vocab_["review"].index(cue) for cue in CUES]) == len(CUES) - 1
    ids = fit_reference("logreg", pre.transform(train), y[:400], seed=0)
    assert abs(roc_auc(y[400:], reference_proba(ids, pre.transform(test), 2)) - 0.5) < 0.1


def test_chinese_text_is_read_by_character_and_character_pair():
    docs, y = reviews(400, 1, CHINESE_CUES, CHINESE_POSITIVE, CHINESE_NEUTRAL, sep="")
    assert " " not in docs[0]  # written without spaces: one "word" per review without tokenize
    train, test = text_table(docs[:300]), text_table(docs[300:])
    pre = fitted_preprocessor(train)
    model = fit_references(["tfidf_logreg"], pre, train, y[:300], seed=0)["tfidf_logreg"]
    prob = reference_proba(model, reference_features(pre, test, "test"), 2)
    assert roc_auc(y[300:], prob) > 0.95
    vocabulary = model.named_steps["columns"].named_transformers_["text_0"].vocabulary_
    assert {"好", "吃", "好 吃", "难 吃"} <= set(vocabulary)


def test_on_a_text_only_table_hgb_is_skipped_with_a_reason(caplog):
    docs, y = reviews(60, seed=2)
    pre = fitted_preprocessor(text_table(docs))
    with caplog.at_level(logging.INFO, logger="sluice.pipeline.evaluating"):
        kinds, skipped = plan_references(["logreg", "hgb"], pre)
    assert kinds == ["tfidf_logreg"]
    assert list(skipped) == ["hgb"] and "only text columns" in skipped["hgb"]
    assert "reference logreg fitted as tfidf_logreg" in caplog.text
    assert "reference hgb skipped: the table has only text columns" in caplog.text
    frame = reference_features(pre, text_table(docs), "train")
    with pytest.raises(SluiceError, match="reference hgb cannot be fitted: the table has only"):
        fit_reference("hgb", frame, y, seed=0, n_text=1)


def test_the_report_names_a_skipped_reference_and_why():
    _, skipped = plan_references(["hgb"], fitted_preprocessor(text_table(reviews(60, 3)[0])))
    entry = skipped_comparison(skipped["hgb"])
    assert entry["verdict"] == "skipped" and entry["reason"] == skipped["hgb"]
    assert entry["delta"] is None and entry["metric"] == "roc_auc"
    metrics = {"accuracy": 0.9, "balanced_accuracy": 0.9, "f1_macro": 0.9, "roc_auc": 0.9}
    selection = {
        "role": "base",
        "val_scores": {"base": {"roc_auc": 0.9}},
        "vs_references": {"hgb": entry},
    }
    text = Evaluation({"base": {"metrics": metrics}}, {"base": "1"}, selection).summary()
    assert skipped_line("hgb", skipped["hgb"]) in text.splitlines()
    assert "challenger base vs hgb" not in text  # no comparison line of n/a values


def mixed_table(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The label follows the numeric column ``x``; the text is noise and ``shop`` is noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = (x + rng.normal(0.0, 0.3, n) > 0).astype(int)
    docs, _ = reviews(n, seed=seed + 100)
    docs[0] = None  # a missing text is the empty text
    return text_table(docs, x=x, shop=rng.choice(["north", "south"], n)), y


def test_on_text_and_numbers_both_references_use_the_tabular_part(caplog):
    frame, y = mixed_table(400, seed=4)
    train, test = frame.iloc[:300], frame.iloc[300:]
    pre = fitted_preprocessor(train)
    assert pre.n_tabular == 3 and pre.n_outputs > 3  # x, shop=north, shop=south; token ids
    with caplog.at_level(logging.INFO, logger="sluice.pipeline.evaluating"):
        kinds, skipped = plan_references(["logreg", "hgb", "tfidf_logreg"], pre)
    assert kinds == ["tfidf_logreg", "hgb"] and not skipped
    assert "reference hgb: on the 3 numeric and one-hot columns only" in caplog.text
    refs = fit_references(kinds, pre, train, y[:300], seed=0)
    X_test = reference_features(pre, test, "test")
    for kind, model in refs.items():
        assert roc_auc(y[300:], reference_proba(model, X_test, 2)) > 0.9, kind
    assert refs["hgb"].named_steps["model"].n_features_in_ == pre.n_tabular
    tfidf = refs["tfidf_logreg"].named_steps["columns"]
    assert tfidf.output_indices_["tabular"] == slice(0, 3)


def test_words_and_numbers_together_beat_either_alone():
    rng = np.random.default_rng(5)
    docs, cue = reviews(600, seed=5)
    x = rng.normal(size=600)
    y = (x + 2.0 * cue - 1.0 + rng.normal(0.0, 0.3, 600) > 0).astype(int)
    frame = text_table(docs, x=x)
    pre = fitted_preprocessor(frame.iloc[:400])
    refs = fit_references(["tfidf_logreg", "hgb"], pre, frame.iloc[:400], y[:400], seed=0)
    X_test = reference_features(pre, frame.iloc[400:], "test")
    auc = {k: roc_auc(y[400:], reference_proba(m, X_test, 2)) for k, m in refs.items()}
    assert auc["tfidf_logreg"] > auc["hgb"] + 0.05, auc


def test_the_text_reference_is_seeded_and_its_params_are_plain_text():
    frame, y = mixed_table(200, seed=6)
    X = reference_input(frame[["x"]].to_numpy(), 1, {"review": frame["review"].fillna("")})
    first = reference_proba(fit_reference("logreg", X, y, seed=0, n_text=1), X, 2)
    model = fit_reference("tfidf_logreg", X, y, seed=0, n_text=1)
    np.testing.assert_array_equal(first, reference_proba(model, X, 2))
    params = reference_params(model)
    assert params["model"] == "ColumnTransformer > LogisticRegression"
    assert params["columns__text_0__tokenizer"] == "sluice.data.text.tokenize"
    assert params["columns__text_0__ngram_range"] == "(1, 2)"
    assert params["model__C"] == "1.0" and params["model__random_state"] == "0"
    assert not [v for v in params.values() if " at 0x" in v]  # no memory addresses


@pytest.mark.parametrize(
    ("kind", "n_text", "n_tabular", "fitted", "explained"),
    [
        ("logreg", 0, 5, "logreg", False),
        ("tfidf_logreg", 0, 5, "logreg", True),  # no text: plain logistic regression
        ("logreg", 1, 0, "tfidf_logreg", True),
        ("tfidf_logreg", 2, 5, "tfidf_logreg", False),
        ("hgb", 0, 5, "hgb", False),
        ("hgb", 1, 5, "hgb", True),  # the tabular part only
        ("hgb", 1, 0, None, True),  # nothing but text: skipped
    ],
)
def test_what_each_named_reference_is_on_each_table(kind, n_text, n_tabular, fitted, explained):
    got, why = resolve_reference(kind, n_text, n_tabular)
    assert got == fitted
    assert bool(why) == explained
