"""The evaluation use case behind the evaluate stage.

Both models and the scikit-learn references are scored on the test split; the challenger is
chosen on the validation split and judged against each reference (paired bootstrap on the test
rows); everything is logged to MLflow, the models are registered, and the reports DVC tracks
are written last.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sluice import paths
from sluice.atomic import outputs_together
from sluice.config import Params
from sluice.data.columns import as_text
from sluice.evaluation.calibration import calibration_scores, decision_scores, reliability_bins
from sluice.evaluation.metrics import metric_value
from sluice.evaluation.scoring import (
    SKIPPED,
    compare_with_reference,
    evaluate_predictions,
    fit_reference,
    pick_challenger,
    reference_input,
    reference_params,
    reference_proba,
    resolve_reference,
    selection_scores,
    skipped_comparison,
)
from sluice.io import write_json, write_table
from sluice.model.bundle import Classifier
from sluice.model.preprocess import Preprocessor, encode_labels
from sluice.pipeline.publish import log_reference, publish, summary
from sluice.progress import Phase, track

log = logging.getLogger(__name__)

# Where each frame the use case receives was read from (for error messages).
SOURCES = {"train": paths.RESAMPLED, "val": paths.SPLITS["val"], "test": paths.SPLITS["test"]}


@dataclass(frozen=True)
class Evaluation:
    """What the evaluate stage reports.

    ``results``: role -> :func:`evaluate_predictions` output, the models first (with the
    ``cost`` record training kept in their bundles), then the references; ``versions``: role
    -> registered version; ``selection``: the challenger's role, the validation scores it was
    chosen on, and ``vs_references`` (reference -> comparison; a reference that could not be
    fitted on this table has verdict ``skipped`` and a ``reason``).
    """

    results: dict[str, dict]
    versions: dict[str, str]
    selection: dict

    def summary(self) -> str:
        """The table printed at the end of the pipeline, the challenger's comparisons, and one
        line per reference skipped on this table, saying why."""
        vs = self.selection.get("vs_references", {})
        judged = {ref: c for ref, c in vs.items() if c["verdict"] != SKIPPED}
        text = summary(self.results, self.versions, {**self.selection, "vs_references": judged})
        skipped = [skipped_line(ref, c["reason"]) for ref, c in vs.items() if ref not in judged]
        return text + "".join(f"{line}\n" for line in skipped)


def skipped_line(ref: str, reason: str) -> str:
    """One plain line: a reference named in evaluate.reference that was not fitted, and why."""
    return f"reference {ref} skipped, the challenger is not compared with it: {reason}"


def run_evaluation(
    models: dict[str, Classifier],
    frames: dict[str, pd.DataFrame],
    target: str,
    params: Params,
    experiment_id: str,
) -> Evaluation:
    """Score, choose, compare, log and register (or, on failure, register nothing).

    Args:
        models: role -> loaded bundle (``base``, ``finetuned``).
        frames: the ``val`` and ``test`` splits and, when ``evaluate.reference`` names any
            reference, ``train``: the resampled training split the models were fitted on.
        target: the label column.
        params: all params (``seed``, ``evaluate``, ``promote.metric``, ``registry``).
        experiment_id: the MLflow experiment the reference runs go to.
    """
    from sluice.tracking.runs import run_tags

    classes, pre = models["base"].classes, models["base"].preprocessor
    y = {name: encode_labels(df[target], classes, _source(name)) for name, df in frames.items()}
    n_boot, seed = params.evaluate.bootstrap, params.seed
    # The challenger is chosen on the validation split: choosing on test would bias the very
    # test scores reported for it.
    selection = choose_challenger(models, frames["val"], y["val"], params.promote.metric)
    kinds, skipped = plan_references(params.evaluate.reference, pre)
    fitted = fit_references(
        kinds, pre, frames.get("train"), y.get("train"), seed, params.evaluate.reference_rows
    )
    probs = score_test_split(models, fitted, frames["test"])
    results = {
        role: evaluate_predictions(y["test"], prob, classes, n_boot, seed)
        for role, prob in track(probs.items(), "evaluate: bootstrap", unit="models")
    }
    add_calibration(results, models, probs, frames["test"], y["test"])
    for role, clf in models.items():  # measured after training; shown in the summary
        results[role]["cost"] = clf.spec.get("cost")
    best = probs[selection["role"]]
    selection["vs_references"] = {
        kind: compare_with_reference(y["test"], best, probs[kind], n_boot, seed)
        for kind in track(fitted, "evaluate: challenger vs references", unit="references")
    } | {kind: skipped_comparison(reason) for kind, reason in skipped.items()}
    tags, figures = run_tags("evaluate"), params.evaluate.figures
    for kind, model in fitted.items():
        run_params = reference_params(model)
        log_reference(kind, run_params, results[kind], classes, experiment_id, tags, figures)
    versions = publish({r: results[r] for r in models}, models, frames["test"], params, selection)
    return Evaluation(results, versions, selection)


def score_test_split(
    models: dict[str, Classifier], references: dict, test: pd.DataFrame
) -> dict[str, np.ndarray]:
    """role -> (n, K) test probabilities: the models, then the references (which see the base
    model's preprocessed features, and raw texts, as they did in training)."""
    with Phase("evaluate: predictions", len(models) + len(references), "models") as bar:
        probs = {}
        for role, clf in models.items():
            probs[role] = clf.predict_proba(test, _source("test"))
            bar.advance()
        if references:
            n_classes = len(models["base"].classes)
            X_test = reference_features(models["base"].preprocessor, test, _source("test"))
            for kind, model in references.items():
                probs[kind] = reference_proba(model, X_test, n_classes)
                bar.advance()
    return probs


def add_calibration(
    results: dict[str, dict],
    models: dict[str, Classifier],
    probs: dict[str, np.ndarray],
    test: pd.DataFrame,
    y_test: np.ndarray,
) -> None:
    """Calibration on the test split, added to ``results`` in place.

    Every role gets ``reliability`` (the diagram's bins). Each model's metrics also get its
    ``temperature``, ``uncalibrated`` (log loss, ECE, Brier and ROC AUC at temperature 1: the
    same network before scaling) and, when it carries a threshold, ``decision`` (the labels
    under that threshold: precision, recall and F1 of the positive class, balanced accuracy,
    and the cost per row for the cost rule); ``reliability_uncalibrated`` holds the bins
    before scaling.
    """
    for role, prob in probs.items():
        results[role]["reliability"] = reliability_bins(y_test, prob)
    for role, clf in models.items():
        raw = clf.predict_proba(test, _source("test"), calibrated=False)
        metrics = results[role]["metrics"]
        metrics["temperature"] = clf.temperature
        results[role]["calibrated_on"] = clf.spec.get("calibration", {}).get("fitted_on", "val")
        metrics["uncalibrated"] = {
            **calibration_scores(y_test, raw),
            "roc_auc": metric_value(y_test, raw, "roc_auc"),
        }
        results[role]["reliability_uncalibrated"] = reliability_bins(y_test, raw)
        if clf.threshold is not None:
            costs = clf.spec["decision"].get("costs")
            metrics["decision"] = decision_scores(y_test, probs[role][:, 1], clf.threshold, costs)


def choose_challenger(
    models: dict[str, Classifier], val: pd.DataFrame, y_val: np.ndarray, primary: str
) -> dict:
    """The role with the best validation scores, with every model's scores.

    Cross-validated ensembles trained on the validation rows, so when every model is one, the
    choice uses their out-of-fold estimates (``ensemble.cv`` of the bundle) instead.
    """
    cv = {role: _cv_scores(clf.spec, primary) for role, clf in models.items()}
    if all(cv.values()):
        role = pick_challenger(cv, primary)
        return {"role": role, "chosen_on": "cross-validation", "metric": primary, "val_scores": cv}
    scores = {
        role: selection_scores(y_val, clf.predict_proba(val, _source("val")), primary)
        for role, clf in models.items()
    }
    role = pick_challenger(scores, primary)
    return {"role": role, "chosen_on": "val", "metric": primary, "val_scores": scores}


def _cv_scores(spec: dict, primary: str) -> dict[str, float] | None:
    """The out-of-fold means behind the challenger choice; None for a model without them."""
    cv = spec.get("ensemble", {}).get("cv") or {}
    keys = dict.fromkeys((primary, "f1_macro", "log_loss"))
    if not all(k in cv for k in keys):
        return None
    return {k: float(cv[k]["mean"]) for k in keys}


def plan_references(named: list[str], preprocessor: Preprocessor) -> tuple[list[str], dict]:
    """What the references named in ``evaluate.reference`` are on this table (logged when not
    what was named): the kinds to fit, each once, and named kind -> why it is skipped.

    On a table with text columns ``logreg`` is ``tfidf_logreg``, ``hgb`` sees the tabular part
    only or is skipped without one; without text ``tfidf_logreg`` is ``logreg``
    (:func:`~sluice.evaluation.scoring.resolve_reference`)."""
    n_text, n_tabular = len(preprocessor.text_columns), preprocessor.n_tabular
    kinds, skipped = [], {}
    for name in dict.fromkeys(named):
        kind, why = resolve_reference(name, n_text, n_tabular)
        if kind is None:
            skipped[name] = why
            log.info("reference %s skipped: %s", name, why)
            continue
        if why:
            shown = name if kind == name else f"{name} fitted as {kind}"
            log.info("reference %s: %s", shown, why)
        kinds.append(kind)
    return list(dict.fromkeys(kinds)), skipped


def reference_features(preprocessor: Preprocessor, df: pd.DataFrame, source: str):
    """What the references see: the base model's preprocessed matrix; on a table with text
    columns, its numeric and one-hot part with each raw text column (missing: empty text)
    after it, as :func:`~sluice.evaluation.scoring.reference_input` lays them out."""
    X = preprocessor.transform(df, source)
    if not preprocessor.text_columns:
        return X
    texts = {c: as_text(df[c]).fillna("").tolist() for c in preprocessor.text_columns}
    return reference_input(X, preprocessor.n_tabular, texts)


def fit_references(
    kinds: list[str],
    preprocessor: Preprocessor,
    train: pd.DataFrame | None,
    y_train: np.ndarray | None,
    seed: int,
    max_rows: int = 0,
) -> dict:
    """kind -> reference fitted on the resampled training rows, through the base model's
    fitted preprocessor (the features the networks see, and raw texts:
    :func:`reference_features`); empty when no kind is named. ``kinds``: as
    :func:`plan_references` resolved them. ``max_rows``: a seeded random sample of at most this
    many rows (0: all)."""
    if not kinds:
        return {}
    assert train is not None and y_train is not None, "references need the training split"
    if max_rows and len(train) > max_rows:
        picked = np.sort(np.random.default_rng(seed).choice(len(train), max_rows, replace=False))
        log.info(
            "references: %d of %d training rows (evaluate.reference_rows)", max_rows, len(train)
        )
        train, y_train = train.iloc[picked], y_train[picked]
    X_train = reference_features(preprocessor, train, _source("train"))
    n_text = len(preprocessor.text_columns)
    fitted = {}
    for kind in track(kinds, "evaluate: fit references", unit="models"):
        fitted[kind] = fit_reference(kind, X_train, y_train, seed, n_text)
        log.info("reference %s fitted on %d rows", kind, len(X_train))
    return fitted


def write_reports(evaluation: Evaluation, model_name: str) -> None:
    """Metrics JSON, plot data for `dvc metrics` / `dvc plots` (deterministic content), and
    what was registered, with the challenger and its comparisons with the references."""
    results = evaluation.results
    with outputs_together():  # all of them or none
        write_json(paths.METRICS, {role: r["metrics"] for role, r in results.items()})
        for role, r in results.items():
            write_json(paths.PLOTS / f"roc_{role}.json", _points(r["roc"], ("fpr", "tpr")))
            write_json(paths.PLOTS / f"pr_{role}.json", _points(r["pr"], ("recall", "precision")))
            write_table(paths.PLOTS / f"confusion_{role}.csv", pd.DataFrame(r["confusion"]))
            write_json(paths.PLOTS / f"reliability_{role}.json", r["reliability"])
            if "reliability_uncalibrated" in r:
                uncalibrated = r["reliability_uncalibrated"]
                write_json(paths.PLOTS / f"reliability_{role}_uncalibrated.json", uncalibrated)
        registered = {"model_name": model_name, "versions": evaluation.versions}
        write_json(paths.REGISTERED, {**registered, "challenger": evaluation.selection})


def _source(name: str) -> str:
    return str(SOURCES[name])


def _points(curve: dict, keys: tuple[str, str]) -> list[dict]:
    xs, ys = (np.asarray(curve[k]) for k in keys)
    return [{keys[0]: float(x), keys[1]: float(y)} for x, y in zip(xs, ys, strict=True)]
