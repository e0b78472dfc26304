"""One tuning trial: resample the training split, build and fit a network, score it, track it.

A trial goes through the same steps as the resample and train stages (``apply_tuned``,
``resample``, ``new_model``, ``fit_settings``, ``fit``), so the trial that wins scores on
validation what the train stage then reproduces. Validation rows are never resampled. What it
trains and scores on, the validation split or folds of train + val, is ``sluice.tuning.data``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from sluice.config import Params, TuneSpace, flatten
from sluice.data.resampling import class_weights, resample
from sluice.model.factory import new_model
from sluice.model.preprocess import Preprocessor, encode_labels
from sluice.model.training import fit, predict_proba
from sluice.pipeline.pretraining import plan_pretraining
from sluice.pipeline.runner import fit_settings
from sluice.progress import Phase
from sluice.tuned import apply_tuned
from sluice.tuning.data import TuneData
from sluice.tuning.space import default_point, suggest_choice

log = logging.getLogger(__name__)


@dataclass
class Objective:
    """Optuna's objective: one trial -> ``tune.metric`` on validation of its best epoch.

    Resampled training parts are kept per (method, part) and transformed arrays per (method,
    part, preprocessing), so a study resamples and transforms each variant once. With several
    parts (cross-validation) the score is the mean over the held-out parts, and the pruner
    watches every part's curve (see ``_Reporter``). ``space`` is ``tune.space`` narrowed to
    the table (``sluice.tuning.space.study_space``): its ``model`` the families searched, and
    ``left_out`` what the narrowing dropped, for the study's report.
    """

    params: Params
    data: TuneData
    space: TuneSpace
    default_arch: str
    left_out: dict[str, Any] = field(default_factory=dict)
    _resampled: dict[tuple[str, int, int], pd.DataFrame] = field(default_factory=dict)
    _arrays: dict[tuple[str, str], tuple] = field(default_factory=dict)

    @property
    def metric(self) -> str:
        return self.params.tune.metric

    @property
    def families(self) -> list[str] | None:
        """The families the study searches (None: ``train.model`` stays)."""
        return self.space.model

    def __call__(self, trial: optuna.Trial) -> float:
        p = self.params
        choice = suggest_choice(trial, self.space, self.families, p, self.default_arch)
        scored = self._score(
            trial, choice, f"trial {trial.number}", {"sluice.trial": str(trial.number)}
        )
        if scored is None:
            raise optuna.TrialPruned(f"pruned at epoch {trial.user_attrs['epochs_run']}")
        return scored["scores"][self.metric]

    def default_point(self) -> dict[str, Any]:
        """params.yaml's values as the study's first point (``space.default_point``)."""
        return default_point(self.space, self.families, self.params, self.default_arch)

    def score_defaults(self) -> list[dict[str, Any]]:
        """params.yaml's own values, once per model family the study searches (on a table with
        text, the text families), scored on the same parts as the trials (never pruned): the
        candidates a trial must clearly beat (``sluice.tuning.selection``)."""
        families = self.families or [None]
        scored = []
        for family in families:
            choice = {"resample": {}, "train": {"model": family} if family else {}}
            shown = family or self.default_arch
            fixed = optuna.trial.FixedTrial({})
            result = self._score(fixed, choice, f"defaults {shown}", {"sluice.defaults": shown})
            scored.append({**result, "family": shown})
            log.info("tune: defaults %s %.4f", shown, result["scores"][self.metric])
        return scored

    def _score(
        self, trial: optuna.Trial, choice: dict, run_name: str, tags: dict[str, str]
    ) -> dict[str, Any] | None:
        """Train and score ``choice`` in a nested MLflow run; None when the pruner stopped it.

        Returns ``{"choice", "scores", "fold_scores", "mlflow_run_id"}`` (also kept as the
        trial's user attributes).
        """
        import mlflow

        from sluice.tracking.runs import run_tags

        trial.set_user_attr("choice", choice)
        curve: list[dict[str, float]] = []
        started = time.perf_counter()
        experiment_id = mlflow.active_run().info.experiment_id  # the study's parent run
        with mlflow.start_run(
            experiment_id=experiment_id,
            run_name=run_name,
            nested=True,
            tags={**run_tags("tune"), **tags},
        ) as run:
            trial.set_user_attr("mlflow_run_id", run.info.run_id)
            number = {"trial": trial.number} if "sluice.trial" in tags else {}
            mlflow.log_params({**number, **flatten(choice)})
            try:
                scores, best_epoch, folds = self._train(
                    trial, apply_tuned(self.params, choice), curve, f"tune {run_name}"
                )
            except optuna.TrialPruned:
                scores, best_epoch, folds = None, 0, []
            log_trial(curve, scores, best_epoch, time.perf_counter() - started)
        trial.set_user_attr("epochs_run", len(curve))
        if scores is None:
            return None
        trial.set_user_attr("scores", scores)
        trial.set_user_attr("fold_scores", folds)
        return {
            "choice": choice,
            "scores": scores,
            "fold_scores": folds,
            "mlflow_run_id": run.info.run_id,
        }

    def _train(
        self,
        trial: optuna.Trial,
        p: Params,
        curve: list[dict[str, float]],
        label: str = "tune trial",
    ) -> tuple[dict[str, float], int, list[float]]:
        """The held-out scores of the trial's best epoch (means over the parts), that epoch
        (the first part's), and each part's ``tune.metric``; ``label`` names its phase."""
        sign = 1.0 if p.tune.metric == "log_loss" else -1.0  # the study's direction
        runs, best_epoch = [], 0
        parts = len(self.data.parts)
        with Phase(label, parts * p.train.epochs, "epochs") as bar:
            for part in range(parts):
                kept = curve if part == 0 else None
                report = _Reporter(trial, sign, kept, offset=part * p.train.epochs, bar=bar)
                scores, epoch = self._train_part(part, p, report)
                runs.append(scores)
                best_epoch = best_epoch or epoch
        means = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
        return means, best_epoch, [r[self.metric] for r in runs]

    def _train_part(self, part: int, p: Params, report: _Reporter) -> tuple[dict[str, float], int]:
        d = self.data
        fit_rows = d.parts[part][0]
        frame = self._resample(p.resample.method, p.resample.k_neighbors, part)
        with threadpool_limits(limits=1, user_api="blas"):
            net, spec = new_model(
                p.train, d.types, d.classes, fit_rows, p.data.max_categories, p.seed
            )
        arrays = self._transform(p.resample.method, p.resample.k_neighbors, part, frame, spec)
        weights = None
        if p.resample.class_weights:
            weights = class_weights(frame[d.target].astype(str), d.classes)
        settings = fit_settings(p.train, p.seed, spec["args"].get("image_shape"), weights)
        if spec["arch"] == "bilstm":  # language-model pretraining first, as train does
            pretrain = plan_pretraining(p, spec, fit_rows, d.unlabelled, None)
            if pretrain is not None:
                pretrain.fit(net, settings)
        result = fit(net, arrays, len(d.classes), settings, report)
        net.load_state_dict(result.state_dict)  # the best epoch, as train keeps it
        scores = validation_scores(net, arrays[2], arrays[3], len(d.classes), self.metric)
        return scores, result.best_epoch

    def _resample(self, method: str, k: int, part: int) -> pd.DataFrame:
        if (method, k, part) not in self._resampled:
            d = self.data
            with threadpool_limits(limits=1, user_api="blas"):
                frame, _ = resample(
                    d.parts[part][0],
                    d.target,
                    d.types,
                    method,
                    k,
                    self.params.seed,
                    knn_block=self.params.resample.knn_block,
                    max_categories=self.params.data.max_categories,
                    max_memory_gb=self.params.resample.max_memory_gb,
                )
            self._resampled[(method, k, part)] = frame
        return self._resampled[(method, k, part)]

    def _transform(self, method: str, k: int, part: int, frame: pd.DataFrame, spec: dict) -> tuple:
        """(X_train, y_train, X_val, y_val) of one part, as the train stage builds them."""
        state = json.dumps(spec["preprocessor"], sort_keys=True).encode()
        key = (f"{method}/{k}/{part}", hashlib.sha256(state).hexdigest())
        if key not in self._arrays:
            d, pre = self.data, Preprocessor.from_dict(spec["preprocessor"])
            held_out = d.parts[part][1]
            with threadpool_limits(limits=1, user_api="blas"):
                self._arrays[key] = (
                    pre.transform(frame, "resampled training split"),
                    encode_labels(frame[d.target], d.classes, "resampled training split"),
                    pre.transform(held_out, "validation split"),
                    encode_labels(held_out[d.target], d.classes, "validation split"),
                )
        return self._arrays[key]


class _Reporter:
    """Per-epoch callback of ``fit``: keep the curve, report the validation loss to the pruner
    (negated in a study that maximises), stop the trial when told.

    Fold f of a cross-validated trial reports epoch e at step ``offset + e`` with offset
    f x epochs: every trial has the same folds, so a step compares like with like, and the
    pruner can stop a trial in any fold. Only the first fold's curve is kept (``curve`` None
    for the others).
    """

    def __init__(
        self,
        trial: optuna.Trial,
        sign: float,
        curve: list[dict[str, float]] | None,
        offset: int = 0,
        bar: Phase | None = None,
    ):
        self.trial, self.sign, self.curve, self.offset = trial, sign, curve, offset
        self.bar = bar  # the trial's phase: epochs of all its parts

    def __call__(self, record: dict[str, float]) -> None:
        if self.curve is not None:
            self.curve.append(record)
        if self.bar is not None:
            self.bar.update(self.offset + int(record["epoch"]), val_loss=record["val_loss"])
        self.trial.report(self.sign * record["val_loss"], self.offset + int(record["epoch"]))
        if self.trial.should_prune():
            raise optuna.TrialPruned()


def validation_scores(
    net: torch.nn.Module, X_val: np.ndarray, y_val: np.ndarray, n_classes: int, metric: str
) -> dict[str, float]:
    """``metric``, macro F1 and log loss on validation: what ranks trials (ties: F1, then log
    loss, as evaluate ranks its models)."""
    from sklearn.metrics import log_loss

    from sluice.evaluation.metrics import metric_value

    prob = predict_proba(net, torch.from_numpy(X_val), dtype=torch.float64).numpy()
    with threadpool_limits(limits=1, user_api="blas"):
        scores = {m: metric_value(y_val, prob, m) for m in {metric, "f1_macro"} - {"log_loss"}}
        scores["log_loss"] = float(log_loss(y_val, prob, labels=list(range(n_classes))))
    return {k: (v if math.isfinite(v) else float("nan")) for k, v in sorted(scores.items())}


def log_trial(
    curve: list[dict[str, float]], scores: dict | None, best_epoch: int, seconds: float
) -> None:
    """The trial's per-epoch curve (batched), its validation scores and whether it was pruned."""
    import mlflow

    from sluice.tracking.runs import log_epoch_metrics

    summary = {"epochs_run": len(curve), "trial_seconds": seconds}
    if scores is not None:
        summary |= {f"val_{k}": v for k, v in scores.items()}
        summary |= {"best_epoch": best_epoch, "best_val_loss": curve[best_epoch - 1]["val_loss"]}
    log_epoch_metrics(curve, summary)
    pruned = scores is None
    mlflow.set_tags(
        {"sluice.pruned": str(pruned).lower(), "optuna.state": "PRUNED" if pruned else "COMPLETE"}
    )
