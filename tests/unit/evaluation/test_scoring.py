"""Choosing the challenger: validation scores, tie-breaks, NaN."""

import numpy as np

from sluice.evaluation.scoring import pick_challenger, selection_scores


def test_primary_metric_decides_first():
    scores = {
        "base": {"roc_auc": 0.98, "f1_macro": 0.99, "log_loss": 0.01},
        "finetuned": {"roc_auc": 0.99, "f1_macro": 0.90, "log_loss": 0.50},
    }
    assert pick_challenger(scores, "roc_auc") == "finetuned"


def test_ties_fall_to_macro_f1_then_log_loss():
    tied = {"roc_auc": 1.0, "f1_macro": 0.95}
    assert pick_challenger({"base": tied, "finetuned": {**tied, "f1_macro": 0.96}}, "roc_auc") == (
        "finetuned"
    )
    scores = {"base": {**tied, "log_loss": 0.20}, "finetuned": {**tied, "log_loss": 0.10}}
    assert pick_challenger(scores, "roc_auc") == "finetuned"
    scores["base"]["log_loss"] = 0.05
    assert pick_challenger(scores, "roc_auc") == "base"


def test_nan_never_wins():
    scores = {
        "base": {"roc_auc": float("nan"), "f1_macro": 1.0},
        "ft": {"roc_auc": 0.5, "f1_macro": 0.1},
    }
    assert pick_challenger(scores, "roc_auc") == "ft"


def test_selection_scores_on_validation_predictions():
    y = np.array([0, 1, 1, 0])
    good = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    worse = np.array([[0.6, 0.4], [0.4, 0.6], [0.45, 0.55], [0.55, 0.45]])
    a, b = selection_scores(y, good, "roc_auc"), selection_scores(y, worse, "roc_auc")
    assert set(a) == {"roc_auc", "f1_macro", "log_loss"}
    assert a["roc_auc"] == b["roc_auc"] == 1.0 and a["f1_macro"] == b["f1_macro"] == 1.0
    assert a["log_loss"] < b["log_loss"]
    assert pick_challenger({"worse": b, "good": a}, "roc_auc") == "good"
