"""Calibration: temperature scaling, ECE, Brier, reliability data, decision thresholds, the
calibration guards of the gate, and a calibrated model's bundle (temperature and threshold)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import fit_settings

from sluice.config import EvaluateConfig, Params, PromoteConfig
from sluice.errors import SluiceError
from sluice.evaluation import calibration as cal
from sluice.evaluation.gate import decide


def sample_labels(logits: np.ndarray, seed: int) -> np.ndarray:
    """Labels drawn from softmax(logits): the logits are calibrated for these labels."""
    rng = np.random.default_rng(seed)
    prob = cal.proba(logits)
    return (prob.cumsum(axis=1) > rng.random((len(prob), 1))).argmax(axis=1)


@pytest.fixture(scope="module")
def overconfident():
    """Calibrated logits (4 classes) scaled by 3: the same ranking, far too sure of itself."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 4)) * 1.5
    y = sample_labels(logits, 1)
    return logits * 3.0, y


def test_temperature_undoes_overconfidence_and_keeps_every_argmax(overconfident):
    logits, y = overconfident
    val, test = slice(0, 2000), slice(2000, None)
    fit = cal.fit_temperature(logits[val], y[val])
    assert fit.temperature == pytest.approx(3.0, rel=0.1)
    assert fit.nll_after < fit.nll_before - 0.1
    assert cal.nll(logits[test], y[test], fit.temperature) < cal.nll(logits[test], y[test])
    before, after = cal.proba(logits[test]), cal.proba(logits[test], fit.temperature)
    assert (before.argmax(axis=1) == after.argmax(axis=1)).all()
    ece_before = cal.expected_calibration_error(y[test], before)
    ece_after = cal.expected_calibration_error(y[test], after)
    # As close to calibrated as the true probabilities are on these rows (ECE has sampling
    # noise of about 0.03 at 2,000 rows and 15 bins).
    ece_true = cal.expected_calibration_error(y[test], cal.proba(logits[test] / 3.0))
    assert ece_before > 0.2 and ece_after < ece_true + 0.01


def test_an_underconfident_model_is_sharpened():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(3000, 3)) * 2
    y = sample_labels(logits, 3)
    assert cal.fit_temperature(logits / 2.0, y).temperature == pytest.approx(0.5, rel=0.1)


def test_an_ensemble_is_scaled_on_its_mean_softmax_as_torch_does():
    from sluice.model.inference import to_proba

    logits = np.random.default_rng(4).normal(size=(50, 8, 3)) * 3  # (n, k, C): TabM's shape
    members = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(cal.proba(logits), members.mean(axis=1), rtol=1e-12)
    expected = to_proba(torch.from_numpy(logits), torch.float64, temperature=1.7).numpy()
    np.testing.assert_allclose(cal.proba(logits, 1.7), expected, rtol=1e-12)
    # T scales log(mean softmax): each row keeps its class, its ranking is T-free.
    sharp, soft = cal.proba(logits, 0.3), cal.proba(logits, 3.0)
    assert (sharp.argmax(axis=1) == soft.argmax(axis=1)).all()
    y = sample_labels(logits.mean(axis=1) / 4, 5)
    fit = cal.fit_temperature(logits, y)
    assert fit.temperature > 1 and fit.nll_after < fit.nll_before


def test_no_temperature_is_fitted_when_validation_cannot_pin_one_down():
    y = np.array([0, 1, 1, 0, 1])
    separable = np.stack([1 - 2.0 * y, 2.0 * y - 1], axis=1)  # every row right
    fit = cal.fit_temperature(separable, y)
    assert fit.temperature == 1.0 and "classified correctly" in fit.note
    with pytest.raises(SluiceError, match="rows of logits"):
        cal.fit_temperature(separable[:3], y)


def test_ece_and_reliability_bins_by_hand():
    # Top-label confidences 0.9, 0.9 (one right) in bin (13/15, 14/15]; 0.6, 0.6 (both right)
    # in (8/15, 9/15]: ECE = 0.5 * |0.5 - 0.9| + 0.5 * |1.0 - 0.6| = 0.4.
    prob = np.array([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.4, 0.6]])
    y = np.array([0, 0, 0, 1])
    assert cal.expected_calibration_error(y, prob) == pytest.approx(0.4)
    rows = cal.reliability_bins(y, prob)
    assert [r["count"] for r in rows] == [2, 2]
    assert [r["accuracy"] for r in rows] == [1.0, 0.5]
    assert [r["confidence"] for r in rows] == [0.6, 0.9]
    assert rows[0]["bin_low"] < 0.6 <= rows[0]["bin_high"]


def test_brier_is_the_summed_squared_error_multiclass_and_the_usual_one_binary():
    prob = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    y = np.array([0, 1])
    assert cal.brier_score(y, prob) == pytest.approx((0.09 + 0.04 + 0.01 + 0.01 + 0.81 + 0.64) / 2)
    binary = np.array([[0.8, 0.2], [0.3, 0.7]])
    assert cal.brier_score(np.array([0, 0]), binary) == pytest.approx((0.04 + 0.49) / 2)


@pytest.mark.parametrize("k", [2, 3, 10])
def test_log_loss_and_brier_agree_with_scikit_learn(k):
    from sklearn.metrics import brier_score_loss, log_loss

    rng = np.random.default_rng(k)
    prob = rng.dirichlet(np.ones(k), size=200)
    y = rng.integers(0, k, size=200)
    labels = list(range(k))
    assert cal.log_loss(y, prob) == pytest.approx(log_loss(y, prob, labels=labels), rel=1e-12)
    assert cal.brier_score(y, prob) == pytest.approx(
        brier_score_loss(y, prob, labels=labels), rel=1e-12
    )
    prob[0] = np.eye(k)[(y[0] + 1) % k]  # the true class of row 0 gets probability 0
    assert cal.log_loss(y, prob) == np.inf


def brute_force(y, p, score) -> float:
    """The best ``score(decision_scores)`` over every possible cut of the scores."""
    cuts = np.concatenate([[1.1], np.unique(p), [0.0]])
    return max(score(cal.decision_scores(y, p, t, {"fp": 1.0, "fn": 5.0})) for t in cuts)


@pytest.mark.parametrize(
    ("rule", "score"),
    [
        ("f1", lambda d: d["f1"]),
        ("youden", lambda d: d["recall"] - d["fpr"]),
        ("cost", lambda d: -d["cost_per_row"]),
    ],
)
def test_each_threshold_rule_reaches_its_optimum_on_the_rows(rule, score):
    rng = np.random.default_rng(6)
    y = (rng.random(400) < 0.3).astype(int)
    p = np.clip(0.35 * y + 0.65 * rng.random(400), 0, 1)
    chosen = cal.choose_threshold(y, p, rule, {"fp": 1.0, "fn": 5.0})
    assert 0 < chosen["threshold"] < 1
    assert score(chosen["val"]) == pytest.approx(brute_force(y, p, score))
    assert not np.isin(chosen["threshold"], p)  # midway between two scores, not on one


def test_expensive_misses_lower_the_threshold():
    rng = np.random.default_rng(7)
    y = (rng.random(500) < 0.4).astype(int)
    p = np.clip(0.3 * y + 0.7 * rng.random(500), 0, 1)
    cheap = cal.choose_threshold(y, p, "cost", {"fp": 5.0, "fn": 1.0})["threshold"]
    dear = cal.choose_threshold(y, p, "cost", {"fp": 1.0, "fn": 5.0})["threshold"]
    assert dear < cheap


def test_threshold_on_a_single_class_keeps_one_half():
    chosen = cal.choose_threshold(np.zeros(5, dtype=int), np.linspace(0, 1, 5), "f1")
    assert chosen["threshold"] == 0.5 and "single class" in chosen["note"]


def test_calibration_guards_refuse_a_worse_calibrated_challenger(overconfident):
    logits, y = overconfident
    calibrated, sure = cal.proba(logits, 3.0), cal.proba(logits)  # same ranking and argmax
    cfg = PromoteConfig(guards={"ece": 0.02, "brier": 0.02, "f1_macro": 0.01}, bootstrap=100)
    verdict = decide(y, calibrated, sure, cfg)
    failed = {g.metric for g in verdict.guards if not g.ok}
    assert failed == {"ece", "brier"} and not verdict.passed
    ece = next(g for g in verdict.guards if g.metric == "ece")
    assert ece.lower_is_better and ece.drop == pytest.approx(ece.challenger - ece.champion)
    assert any("guard ece" in r and "increase" in r for r in verdict.reasons)
    better = decide(y, sure, calibrated, cfg)
    assert all(g.ok for g in better.guards if g.metric in ("ece", "brier"))


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"promote": {"metric": "ece"}}, "'promote.metric'; ece and brier"),
        ({"promote": {"floors": {"brier": 0.1}}}, "'promote.floors'; ece and brier"),
        ({"evaluate": {"threshold": "best"}}, "evaluate.threshold"),
        ({"evaluate": {"costs": {"fp": 0, "fn": 0}}}, "'evaluate.costs'; give fp or fn"),
    ],
)
def test_bad_calibration_params_are_refused_by_name(section, message):
    from pydantic import ValidationError

    from sluice.config import format_error

    try:
        Params.model_validate(section)
    except ValidationError as exc:
        text = format_error(exc.errors()[0], Params)
    except SluiceError as exc:
        text = str(exc)
    else:
        pytest.fail("accepted")
    assert message in text


@pytest.fixture(scope="module")
def tabular():
    """Breast-cancer rows split in three, a fitted preprocessor and an MLP trained to
    over-confidence (no weight decay, no dropout, many epochs, head weights scaled up)."""
    from sklearn.model_selection import train_test_split

    from sluice.data.datasets import load_builtin
    from sluice.model.nets import MLP
    from sluice.model.preprocess import Preprocessor, encode_labels
    from sluice.model.training import fit

    torch.set_num_threads(1)
    df = load_builtin("breast-cancer")
    df["target"] = df["target"].astype(str)
    rest, test = train_test_split(df, test_size=0.3, stratify=df["target"], random_state=0)
    train, val = train_test_split(rest, test_size=0.4, stratify=rest["target"], random_state=0)
    pre = Preprocessor({c: "numeric" for c in df.columns[:-1]}).fit(train)
    arrays = [pre.transform(train), encode_labels(train["target"], ["0", "1"], "train")]
    arrays += [pre.transform(val), encode_labels(val["target"], ["0", "1"], "val")]
    torch.manual_seed(0)
    net = MLP(pre.n_outputs, 2, [32], 0.0)
    settings = fit_settings(optimizer="adam", epochs=60, patience=60)
    net.load_state_dict(fit(net, tuple(arrays), 2, settings).state_dict)
    with torch.no_grad():
        net.head.weight *= 4.0  # over-confident: the same ranking, sharper probabilities
    spec = {
        "arch": "mlp",
        "args": {"n_inputs": pre.n_outputs, "n_classes": 2, "hidden": [32], "dropout": 0.0},
        "classes": ["0", "1"],
        "preprocessor": pre.to_dict(),
    }
    return net.eval(), spec, arrays, val, test


def test_a_calibrated_bundle_applies_its_temperature_and_threshold(tabular, tmp_path):
    from sluice.model.bundle import load_bundle, save_bundle
    from sluice.model.inference import predict_logits
    from sluice.pipeline.runner import calibrate

    net, spec, arrays, val, test = tabular
    X_val, y_val = arrays[2], arrays[3]
    fitted = calibrate(net, X_val, y_val, spec["classes"], EvaluateConfig(threshold="youden"))
    cal_, decision = fitted["calibration"], fitted["decision"]
    assert cal_["temperature"] > 1.5 and cal_["fitted_on"] == "val"
    assert cal_["val_after"]["log_loss"] < cal_["val_before"]["log_loss"]
    assert decision["rule"] == "youden" and decision["positive_class"] == "1"
    save_bundle(tmp_path / "m", net, {**spec, **fitted})
    clf = load_bundle(tmp_path / "m")
    assert (clf.temperature, clf.threshold) == (cal_["temperature"], decision["threshold"])
    prob, raw = clf.predict_proba(test), clf.predict_proba(test, calibrated=False)
    logits = predict_logits(net, torch.from_numpy(clf.preprocessor.transform(test)))
    np.testing.assert_allclose(prob, cal.proba(logits.double().numpy(), clf.temperature))
    assert (prob.argmax(axis=1) == raw.argmax(axis=1)).all()
    labels = clf.predict_labels(prob)
    assert (labels == np.where(prob[:, 1] >= clf.threshold, "1", "0")).all()
    out = clf.output_frame(test)
    assert list(out.columns) == clf.output_columns == ["0", "1", "predicted"]
    assert out["predicted"].tolist() == labels.tolist()


def test_multiclass_and_older_bundles_decide_by_argmax(tabular, tmp_path):
    from sluice.model.bundle import load_bundle, save_bundle
    from sluice.pipeline.runner import calibrate

    net, spec, arrays, _, test = tabular
    save_bundle(tmp_path / "old", net, spec)  # no calibration, no decision: an older model
    old = load_bundle(tmp_path / "old")
    assert (old.temperature, old.threshold, old.output_columns) == (1.0, None, ["0", "1"])
    prob = old.predict_proba(test)
    np.testing.assert_array_equal(prob, old.predict_proba(test, calibrated=False))
    assert (old.predict_labels(prob) == np.asarray(["0", "1"])[prob.argmax(axis=1)]).all()
    argmax = calibrate(net, arrays[2], arrays[3], ["0", "1"], EvaluateConfig(threshold="argmax"))
    assert argmax["decision"] == {"rule": "argmax", "threshold": None}
    three = calibrate(net, arrays[2], arrays[3], ["a", "b", "c"], EvaluateConfig())
    assert three["decision"]["threshold"] is None


def test_a_bundle_with_a_bad_temperature_is_refused(tabular, tmp_path):
    from sluice.model.bundle import load_bundle, save_bundle

    net, spec, *_ = tabular
    save_bundle(tmp_path / "bad", net, {**spec, "calibration": {"temperature": 0.0}})
    with pytest.raises(SluiceError, match="temperature 0.0 is not positive"):
        load_bundle(tmp_path / "bad")
    three = {**spec, "classes": ["a", "b", "c"], "decision": {"threshold": 0.3}}
    save_bundle(tmp_path / "three", net, three)
    with pytest.raises(SluiceError, match="needs a binary model"):
        load_bundle(tmp_path / "three")


def _confident(n_errors: int, n: int = 114) -> tuple[np.ndarray, np.ndarray]:
    """Binary logits, each row right with a margin of 1.5-4, except ``n_errors`` flipped rows."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    logits = np.zeros((n, 2))
    logits[np.arange(n), y] = rng.uniform(1.5, 4.0, n)
    logits[3 : 3 + 47 * n_errors : 47] = logits[3 : 3 + 47 * n_errors : 47, ::-1]
    return logits, y


def test_sharpening_that_rests_on_one_error_is_refused_by_cross_validation():
    logits, y = _confident(n_errors=1)
    assert cal._best_log_temperature(logits, y) < np.log(0.6)  # the whole split would sharpen
    fit = cal.fit_temperature(logits, y)
    assert fit.temperature == 1.0 and "cross-validation" in fit.note


def test_sharpening_that_holds_out_is_kept():
    logits, y = _confident(n_errors=2)
    fit = cal.fit_temperature(logits, y)
    assert fit.temperature < 0.8 and fit.nll_after < fit.nll_before and fit.note == ""
