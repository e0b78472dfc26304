"""Training an ensemble inside the train or finetune stage's one MLflow run.

A cross-validated ensemble (``train.folds`` k > 1) pools the natural training split with the
validation split, cuts the pool into k stratified folds and trains one network per fold on the
other k - 1 folds, with early stopping on its own held-out fold. Only a fold's training part is
resampled (``resample`` section), never its held-out rows: the resample stage's file rebalances
the training split alone, and its rows (or SMOTE neighbours of them) would reach held-out folds,
so it is not used here. The held-out scores are the cross-validation estimate (mean and standard
deviation logged), and the out-of-fold logits, each row scored by the networks that never trained
on it, fit the temperature and the decision threshold: the validation rows are training rows of
k - 1 members, on which the ensemble is over-confident.

A seed ensemble (``train.ensemble_seeds`` m > 1) trains m networks per fold with seeds derived
from ``seed``; with ``folds: 1`` they all train on the (resampled) training split, stop early on
validation and are calibrated on it, as a single network is.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sluice import paths
from sluice.config import Params
from sluice.errors import SluiceError
from sluice.io import file_md5
from sluice.model.ensemble import members_of, stack_out_of_fold, stratified_folds
from sluice.model.inference import predict_logits
from sluice.model.preprocess import Preprocessor, encode_labels
from sluice.model.training import FitResult, fit
from sluice.pipeline.runner import (
    TrainingJob,
    _log_dataset,
    _remove_torn_checkpoint_writes,
    calibrate,
    calibrate_logits,
)
from sluice.progress import Phase

log = logging.getLogger(__name__)

CV_SCORES = ("f1_macro", "roc_auc", "log_loss", "balanced_accuracy", "accuracy")


@dataclass(frozen=True)
class EnsembleTraining:
    """How the members of ``job.net`` (an ``Ensemble``) are trained; member i belongs to fold
    ``i // (members / folds)`` and trains with ``seeds[i]``."""

    folds: int
    seeds: list[int]
    fold_seed: int  # shuffles the folds; the same folds again for fine-tuning
    train_natural_path: Path  # folds > 1: pooled with the validation split
    resample: dict[str, Any] | None = None  # folds > 1: resample() arguments for training parts
    class_weights: bool = False  # folds > 1: inverse-frequency loss weights per training part

    def spec(self) -> dict[str, Any]:
        """The bundle's ``ensemble`` entry (what rebuilds and fine-tunes the members)."""
        return {
            "members": len(self.seeds),
            "folds": self.folds,
            "seeds": self.seeds,
            "fold_seed": self.fold_seed,
        }

    def fit(
        self, job: TrainingJob, data: tuple, checkpoint: Path, params: Params
    ) -> tuple[FitResult, dict[str, Any]]:
        """Train every member in turn (each keeps its best epoch), then calibrate the whole.

        ``data`` are the arrays of ``job.train_path`` and ``job.val_path``, which the members
        use when ``folds`` is 1. Returns the ensemble's result (per-epoch means over members)
        and ``{"calibration", "decision", "ensemble"}`` for the bundle's spec.
        """
        import mlflow

        started = time.perf_counter()
        nets, classes = members_of(job.net), job.spec["classes"]
        per_fold = len(nets) // self.folds
        mlflow.set_tag("sluice.ensemble", f"{self.folds} folds x {per_fold} seeds")
        results, parts, scores = [], [], []
        pool, y_pool, folds = self._pool(job) if self.folds > 1 else (None, None, [(None, None)])
        with Phase(f"train {job.role}", len(nets), "members") as bar:
            for fold, (train_rows, held_out) in enumerate(folds):
                fold_data, weights = data, job.settings.class_weights
                if held_out is not None:
                    fold_data, weights = self._fold_arrays(job, pool, train_rows, held_out)
                members = range(fold * per_fold, (fold + 1) * per_fold)
                for i in members:
                    results.append(
                        self._fit_member(job, i, nets[i], fold_data, weights, checkpoint)
                    )
                    bar.advance()
                if held_out is not None:
                    logits = _stacked_logits([nets[i] for i in members], fold_data[2])
                    parts.append((held_out, logits))
                    scores.append(_fold_scores(fold_data[3], logits, classes, fold))
        if self.folds > 1:
            oof = stack_out_of_fold(parts, len(y_pool))
            fitted = calibrate_logits(oof, y_pool, classes, params.evaluate, "out_of_fold")
        else:
            fitted = calibrate(job.net, data[2], data[3], classes, params.evaluate)
        seconds = time.perf_counter() - started
        summary = self._summary(results, scores, seconds)
        for i in range(len(nets)):
            _member_checkpoint(checkpoint, i).unlink(missing_ok=True)
        return _combined(job.net, results), {**fitted, "ensemble": summary}

    def _pool(self, job: TrainingJob) -> tuple[pd.DataFrame, np.ndarray, list]:
        """Train + val (natural rows), their labels and the stratified folds over them; the
        natural training split joins the run's dataset inputs (what the folds train on)."""
        frames = [pd.read_parquet(self.train_natural_path), pd.read_parquet(job.val_path)]
        if self.train_natural_path != job.train_path:  # not logged by the runner already
            md5 = file_md5(self.train_natural_path)
            _log_dataset(self.train_natural_path, md5, frames[0], job.target, "training")
        pool = pd.concat(frames, ignore_index=True)
        y = encode_labels(pool[job.target], job.spec["classes"], self._source(job))
        return pool, y, stratified_folds(y, self.folds, self.fold_seed, job.spec["classes"])

    def _source(self, job: TrainingJob) -> str:
        return f"{self.train_natural_path} + {job.val_path}"

    def _fold_arrays(
        self, job: TrainingJob, pool: pd.DataFrame, train_rows, held_out
    ) -> tuple[tuple, Any]:
        """(X_train, y_train, X_held_out, y_held_out) of one fold through the job's
        preprocessor, and the fold's class weights; only the training part is resampled."""
        from sluice.data.resampling import class_weights, resample

        pre = Preprocessor.from_dict(job.spec["preprocessor"])
        classes, source = job.spec["classes"], self._source(job)
        part, rest = pool.iloc[train_rows].reset_index(drop=True), pool.iloc[held_out]
        if self.resample is not None:
            part, info = resample(part, job.target, **self.resample)
            log.info("fold resampled: %s -> %s", info["counts_before"], info["counts_after"])
        weights = None
        if self.class_weights:
            weights = class_weights(part[job.target].astype(str), classes)
        arrays = (
            pre.transform(part, source),
            encode_labels(part[job.target], classes, source),
            pre.transform(rest, source),
            encode_labels(rest[job.target], classes, source),
        )
        return arrays, weights

    def _fit_member(self, job, i: int, net, data: tuple, weights, checkpoint: Path) -> FitResult:
        """One member: fitted on its rows, left holding its best epoch's weights."""
        import mlflow

        settings = replace(job.settings, seed=self.seeds[i], class_weights=weights)
        path = _member_checkpoint(checkpoint, i)
        _remove_torn_checkpoint_writes(path)
        started = time.perf_counter()
        with _MemberLogger(job.role, i, len(self.seeds), settings.epochs) as on_epoch:
            result = fit(net, data, len(job.spec["classes"]), settings, on_epoch, path)
        net.load_state_dict(result.state_dict)
        mlflow.log_metrics(
            {
                f"member{i}/best_epoch": result.best_epoch,
                f"member{i}/train_seconds": time.perf_counter() - started,
            }
        )
        if result.resumed_from:
            mlflow.set_tag(f"sluice.member{i}.resumed_from_epoch", str(result.resumed_from))
        return result

    def _summary(self, results: list[FitResult], scores: list[dict], seconds: float) -> dict:
        """The bundle's ``ensemble`` entry with best epochs and the cross-validation scores;
        also logged to the run (``cv_<metric>_mean`` / ``_std``, one ``cv_<metric>`` per fold)."""
        import mlflow

        best = [r.best_epoch for r in results]
        summary = {**self.spec(), "best_epochs": best, "train_seconds": seconds}
        metrics = {"train_seconds": seconds, "best_epoch": statistics.median(best)}
        if scores:
            cv = {}
            for name in CV_SCORES:
                values = [s[name] for s in scores]
                mean, std = float(np.nanmean(values)), float(np.nanstd(values))
                cv[name] = {"mean": mean, "std": std, "folds": values}
                metrics |= {f"cv_{name}_mean": mean, f"cv_{name}_std": std}
            summary["cv"] = cv
            log.info(
                "cross-validation (%d folds): macro F1 %.4f ± %.4f, ROC AUC %.4f ± %.4f",
                self.folds,
                cv["f1_macro"]["mean"],
                cv["f1_macro"]["std"],
                cv["roc_auc"]["mean"],
                cv["roc_auc"]["std"],
            )
        mlflow.log_metrics(metrics)
        return summary


def _member_checkpoint(checkpoint: Path, i: int) -> Path:
    return checkpoint.with_name(f"{checkpoint.stem}-member{i}{checkpoint.suffix}")


def _stacked_logits(nets: list[torch.nn.Module], X: np.ndarray) -> np.ndarray:
    """(n, members * k, C) logits of several networks on the same rows."""
    parts = [predict_logits(net, torch.from_numpy(X)).double().numpy() for net in nets]
    return np.concatenate([p if p.ndim == 3 else p[:, None, :] for p in parts], axis=1)


def _fold_scores(y: np.ndarray, logits: np.ndarray, classes: list[str], fold: int) -> dict:
    """A fold's held-out scores (its networks' averaged probabilities), logged at step ``fold``."""
    import mlflow

    from sluice.evaluation.calibration import proba
    from sluice.evaluation.metrics import compute_metrics

    found = compute_metrics(y, proba(logits), classes)
    scores = {name: float(found[name]) for name in CV_SCORES}
    mlflow.log_metrics({f"cv_{k}": v for k, v in scores.items()}, step=fold)
    return scores


def _combined(net: torch.nn.Module, results: list[FitResult]) -> FitResult:
    """The ensemble as one result: its weights, and per epoch the mean of the members still
    training then (what ``reports/train/<role>.csv`` plots)."""
    frames = [pd.DataFrame(r.history) for r in results]
    history = pd.concat(frames).groupby("epoch", as_index=False).mean()
    history["members"] = pd.concat(frames).groupby("epoch").size().to_numpy()
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    best = int(statistics.median_low(r.best_epoch for r in results))
    return FitResult(state, history.to_dict("records"), best, max(r.resumed_from for r in results))


class _MemberLogger:
    """One member's per-epoch metrics as ``member<i>/<metric>`` (one batch per epoch) and its
    ``train <role> member <i>/<n>`` phase, with the loss and validation macro F1."""

    def __init__(self, role: str, index: int, members: int, epochs: int) -> None:
        self.bar = Phase(f"train {role} member {index + 1}/{members}", epochs, "epochs")
        self.index = index

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __call__(self, record: dict[str, float]) -> None:
        import mlflow

        step = int(record["epoch"])
        metrics = {f"member{self.index}/{k}": v for k, v in record.items() if k != "epoch"}
        mlflow.log_metrics(metrics, step=step)
        self.bar.update(step, loss=record["train_loss"], val_f1=record["val_f1_macro"])

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)


def plan_ensemble(
    params: Params,
    spec: dict[str, Any],
    feature_types: dict[str, str],
    folds: int,
    resampled: bool,
    class_weights: bool = False,
    nproc: int = 1,
) -> EnsembleTraining | None:
    """How to train the members of a model whose spec holds ``ensemble`` (None: one network).

    Args:
        folds: 1 (members share the job's training rows) or the cross-validation folds.
        resampled: folds > 1: resample each fold's training part with the resample section.
        class_weights: folds > 1: inverse-frequency loss weights per fold's training part.
        nproc: fine-tuning's processes; an ensemble trains its members in one process.
    """
    info = spec.get("ensemble", {})
    if int(info.get("members", 1)) == 1:
        return None
    if nproc > 1:
        raise SluiceError(
            f"finetune.nproc (or train.nproc) is {nproc}, but the start model is an ensemble of "
            f"{info['members']} networks, which fine-tunes in one process; set finetune.nproc: 1"
        )
    sampler = params.resample
    resample = None
    if folds > 1 and resampled and sampler.method != "none":
        resample = {
            "feature_types": feature_types,
            "method": sampler.method,
            "k_neighbors": sampler.k_neighbors,
            "seed": params.seed,
            "gan": sampler.gan.model_dump(exclude={"threads"}),
            "knn_block": sampler.knn_block,
            "max_categories": params.data.max_categories,
            "max_memory_gb": sampler.max_memory_gb,
        }
    return EnsembleTraining(
        folds=folds,
        seeds=[int(s) for s in info["seeds"]],
        fold_seed=int(info.get("fold_seed", params.seed)),
        train_natural_path=paths.SPLITS["train"],
        resample=resample,
        class_weights=class_weights and folds > 1,
    )
