"""Test-split evaluation of probabilities (metrics, intervals, curves), the scikit-learn references,
choosing the challenger and judging it against the references. Pure: no IO or tracking."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from sluice.data.text import tokenize
from sluice.errors import SluiceError
from sluice.evaluation.metrics import (
    bootstrap_metrics,
    compute_metrics,
    confusion_rows,
    metric_value,
    paired_bootstrap_delta,
    pr_points,
    roc_points,
)

HEADLINE = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc")
# The scikit-learn references evaluate.reference may name (see resolve_reference for text).
REFERENCES = ("logreg", "hgb", "tfidf_logreg")
# A word or word pair in fewer training texts than this is left out of the TF-IDF vocabulary:
# on 4,000 food reviews (1,000 held out) 1, 2, 3 and 5 give ROC AUC 0.868, 0.871, 0.872 and
# 0.872 with 127k, 38k, 23k and 13k features; 2 drops the one-off n-grams and keeps the rest.
TFIDF_MIN_DF = 2
SKIPPED = "skipped"  # the verdict of a reference that could not be fitted on this table
COMPARE_METRIC = "roc_auc"  # the challenger is judged against each reference on this metric
_DELTA = ("delta", "low", "high")


def evaluate_predictions(
    y_true: np.ndarray, y_prob: np.ndarray, classes: list[str], n_boot: int, seed: int
) -> dict:
    """Everything a report needs about one model on the test split.

    Returns:
        {"metrics": {...scalars, per_class, confusion_matrix, ci}, "roc": {...}, "pr": {...},
         "confusion": [rows]}
    """
    metrics = compute_metrics(y_true, y_prob, classes)
    if n_boot:
        intervals = bootstrap_metrics(y_true, y_prob, n_boot=n_boot, seed=seed, metrics=HEADLINE)
        metrics["ci95"] = {
            k: [round(float(lo), 6), round(float(hi), 6)] for k, (lo, hi) in intervals.items()
        }
    return {
        "metrics": metrics,
        "roc": roc_points(y_true, y_prob),
        "pr": pr_points(y_true, y_prob),
        "confusion": confusion_rows(y_true, y_prob, classes),
    }


def resolve_reference(kind: str, n_text: int, n_tabular: int) -> tuple[str | None, str]:
    """What a reference named in ``evaluate.reference`` is on this table.

    Token ids mean nothing to scikit-learn models, so on a table with text columns ``logreg`` is
    fitted as ``tfidf_logreg``, and ``hgb`` sees the numeric and one-hot columns only (it is
    skipped when there are none). On a table without text, ``tfidf_logreg`` is plain ``logreg``.

    Args:
        kind: one of :data:`REFERENCES`.
        n_text: text columns; n_tabular: numeric and one-hot columns of the matrix.

    Returns:
        ``(kind fitted, or None when skipped; why it is not plain kind on the matrix, or "")``.
    """
    if kind not in REFERENCES:
        raise SluiceError(
            f"unknown reference {kind!r} in params.yaml evaluate.reference; "
            f"choose from {', '.join(REFERENCES)}"
        )
    if not n_text:
        plain = "no text columns: logistic regression on the preprocessed features"
        return ("logreg", plain) if kind == "tfidf_logreg" else (kind, "")
    if kind == "logreg":
        return "tfidf_logreg", "text columns: logistic regression on TF-IDF word 1-2-grams"
    if kind == "hgb" and not n_tabular:
        return None, (
            "the table has only text columns: gradient boosting has no numeric or categorical "
            "feature to use (token ids mean nothing to it); tfidf_logreg is the text reference"
        )
    if kind == "hgb":
        return "hgb", f"on the {n_tabular} numeric and one-hot columns only, not on token ids"
    return kind, ""


def reference_input(
    X: np.ndarray, n_tabular: int, texts: Mapping[str, Sequence[str]]
) -> pd.DataFrame:
    """The references' input on a table with text: the matrix's first ``n_tabular`` columns
    (numeric and one-hot, already scaled) then each raw text column, as one frame labelled by
    position (0, 1, ...), so a text column may have any name. Pass ``n_text=len(texts)`` to
    :func:`fit_reference`."""
    tabular = pd.DataFrame(np.asarray(X)[:, :n_tabular])
    raw = [pd.Series(list(values), dtype=object) for values in texts.values()]
    return pd.concat([tabular, *raw], axis=1, ignore_index=True)


def fit_reference(kind: str, X_train, y_train: np.ndarray, seed: int, n_text: int = 0):
    """A scikit-learn reference fitted on the same (preprocessed) training rows as the models.

    Args:
        kind: one of :data:`REFERENCES`: ``logreg`` (logistic regression, C = 1), ``hgb``
            (histogram gradient boosting, scikit-learn's defaults) or ``tfidf_logreg`` (TF-IDF
            of each text column next to the tabular columns, then ``logreg``); what each is on
            a table with or without text: :func:`resolve_reference`.
        X_train: features (n, d), or :func:`reference_input`'s frame when ``n_text`` > 0.
        y_train: int class indices (n,).
        seed: ``random_state`` (HGB's early-stopping split on large data; the lbfgs fit of
            logreg does not draw random numbers).
        n_text: raw text columns at the end of ``X_train``.

    Returns:
        The fitted estimator (``classes_`` holds the class indices it saw).
    """
    from threadpoolctl import threadpool_limits

    n_tabular = X_train.shape[1] - n_text
    fitted, why = resolve_reference(kind, n_text, n_tabular)
    if fitted is None:
        raise SluiceError(
            f"reference {kind} cannot be fitted: {why}; "
            "leave it out of params.yaml evaluate.reference"
        )
    # One thread (BLAS and OpenMP): with several, these small fits run many times slower on a
    # shared 2-core machine, and one thread keeps the result the same on any machine.
    with threadpool_limits(1):
        return _new_reference(fitted, seed, n_tabular, n_text).fit(X_train, y_train)


def _new_reference(kind: str, seed: int, n_tabular: int, n_text: int):
    """An unfitted ``kind`` as :func:`resolve_reference` resolved it, for this input layout."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    # lbfgs, also on sparse TF-IDF: as good as liblinear there (0.871 vs 0.871 ROC AUC on the
    # food reviews), about as fast, multinomial for several classes, intercept not penalised.
    logreg = LogisticRegression(C=1.0, max_iter=3000, random_state=seed)
    tabular = [("tabular", "passthrough", list(range(n_tabular)))] if n_tabular else []
    if kind == "logreg":
        return logreg
    if kind == "hgb":
        hgb = HistGradientBoostingClassifier(random_state=seed)
        return _on_columns(tabular, hgb) if n_text else hgb
    texts = [(f"text_{i}", _tfidf(), n_tabular + i) for i in range(n_text)]
    return _on_columns(tabular + texts, logreg)


def _on_columns(columns: list[tuple], model):
    """``model`` after a ColumnTransformer of ``columns`` (others dropped), stacked sparse when
    any part is (TF-IDF)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    features = ColumnTransformer(columns, remainder="drop", sparse_threshold=1.0)
    return Pipeline([("columns", features), ("model", model)])


def _tfidf():
    """TF-IDF of word 1-2-grams over sluice's own tokens (case-folded words, punctuation, one
    token per Chinese or Japanese character), sublinear term frequency."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(
        tokenizer=tokenize,
        lowercase=False,  # tokenize case-folds
        token_pattern=None,
        ngram_range=(1, 2),
        sublinear_tf=True,
        min_df=TFIDF_MIN_DF,
    )


def reference_params(model) -> dict[str, str]:
    """The estimator's class and constructor arguments, as MLflow params; for a pipeline, its
    steps' classes and every leaf argument (``columns__text_0__min_df``, ``model__C``)."""
    if not hasattr(model, "steps"):
        return {"model": type(model).__name__, **{k: str(v) for k, v in model.get_params().items()}}
    leaves = {
        k: _param_text(v)
        for k, v in model.get_params().items()
        if "__" in k and not hasattr(v, "get_params") and not k.endswith("transformers")
    }
    return {"model": " > ".join(type(step).__name__ for _, step in model.steps), **leaves}


def _param_text(value) -> str:
    """A param value as text; a function by its qualified name (its repr holds an address)."""
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{value.__module__}.{value.__qualname__}"
    return str(value)


def reference_proba(model, X, n_classes: int) -> np.ndarray:
    """(n, K) probabilities of the reference, with zero columns for classes it never saw.
    ``X``: what it was fitted on (matrix, or :func:`reference_input`'s frame)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        seen = model.predict_proba(X)
    prob = np.zeros((len(X), n_classes))
    prob[:, model.classes_] = seen
    return prob


def skipped_comparison(reason: str, metric: str = COMPARE_METRIC) -> dict:
    """The comparison entry of a reference that was not fitted on this table: the keys of
    :func:`compare_with_reference` without values, verdict :data:`SKIPPED`, and ``reason``."""
    empty = dict.fromkeys(("challenger", "reference", *_DELTA))
    return {"metric": metric, **empty, "n_boot": 0, "verdict": SKIPPED, "reason": reason}


def compare_with_reference(
    y_true: np.ndarray,
    prob_challenger: np.ndarray,
    prob_reference: np.ndarray,
    n_boot: int,
    seed: int,
    metric: str = COMPARE_METRIC,
) -> dict:
    """Is the challenger worse than a reference on the same test rows? A paired bootstrap of
    ``metric(challenger) - metric(reference)`` (the same resamples for both) decides.

    Returns:
        ``{"metric", "challenger", "reference", "delta", "low", "high", "n_boot", "verdict"}``:
        point values, their difference and its 95 % interval (``None`` where undefined), and
        ``verdict``: ``worse`` when the whole interval lies below 0, ``better`` when above 0,
        ``no clear difference`` when it holds 0, ``undefined`` when the metric or interval is
        not defined on these rows, ``not compared`` when ``n_boot`` is 0.
    """
    if n_boot:
        d = paired_bootstrap_delta(
            y_true, prob_reference, prob_challenger, metric, n_boot=n_boot, seed=seed
        )
    else:  # no resamples: the point values alone, and no judgement
        ref, chal = (metric_value(y_true, p, metric) for p in (prob_reference, prob_challenger))
        d = {"a": ref, "b": chal, "delta": chal - ref, "low": math.nan, "high": math.nan}
    values = {"challenger": d["b"], "reference": d["a"], **{k: d[k] for k in _DELTA}}
    return {
        "metric": metric,
        **{k: float(v) if math.isfinite(v) else None for k, v in values.items()},
        "n_boot": int(n_boot),
        "verdict": _verdict(d, n_boot),
    }


def _verdict(d: dict[str, float], n_boot: int) -> str:
    if not n_boot:
        return "not compared"
    if not all(math.isfinite(d[k]) for k in _DELTA):
        return "undefined"
    if d["high"] < 0:
        return "worse"
    return "better" if d["low"] > 0 else "no clear difference"


def selection_scores(y_val: np.ndarray, y_prob: np.ndarray, primary: str) -> dict[str, float]:
    """The validation scores that choose the challenger: the primary metric, macro F1 and log
    loss (ROC AUC and F1 often tie near 1.0 on validation rows; log loss rarely does)."""
    from sklearn.metrics import log_loss

    scores = {k: metric_value(y_val, y_prob, k) for k in dict.fromkeys((primary, "f1_macro"))}
    scores["log_loss"] = float(log_loss(y_val, y_prob, labels=list(range(y_prob.shape[1]))))
    return scores


def pick_challenger(metrics: dict[str, dict], primary: str) -> str:
    """The role with the best primary metric (ties: macro F1, then the lower log loss, when
    given); NaN never wins."""

    def key(role: str) -> tuple[float, ...]:
        m = metrics[role]
        keys = [m[primary], m["f1_macro"], -m.get("log_loss", 0.0)]
        return tuple(-np.inf if np.isnan(v) else v for v in keys)

    return max(metrics, key=key)
