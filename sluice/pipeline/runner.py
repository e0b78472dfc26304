"""The one training path behind the train and finetune stages: data in, tracked run, bundle out."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sluice import paths
from sluice.atomic import outputs_together
from sluice.config import EvaluateConfig, Params, TrainConfig, flatten
from sluice.evaluation import calibration
from sluice.io import file_md5, write_table
from sluice.model.bundle import save_bundle
from sluice.model.inference import predict_logits
from sluice.model.nets import count_parameters
from sluice.model.preprocess import Preprocessor, encode_labels
from sluice.model.training import FitResult, FitSettings, fit
from sluice.progress import Phase

log = logging.getLogger(__name__)


@dataclass
class TrainingJob:
    """What differs between training and fine-tuning; everything else is shared."""

    role: str  # "base" or "finetuned"
    net: torch.nn.Module
    spec: dict[str, Any]  # arch, args, classes, preprocessor (+ lineage)
    train_path: Path
    val_path: Path
    target: str
    settings: FitSettings
    run_params: dict[str, Any]
    extra_tags: dict[str, str]
    # An ensemble (sluice.pipeline.ensembling.EnsembleTraining) trains its members itself.
    ensemble: Any = None
    # Language-model pretraining of the text parts first (sluice.pipeline.pretraining).
    pretrain: Any = None


def fit_settings(cfg: TrainConfig, seed: int, image_shape, class_weights=None, **overrides):
    """FitSettings from the train section, with fine-tuning's overrides (lr, epochs, ...)."""
    base = {k: v for k, v in cfg.model_dump().items() if k in FitSettings.__dataclass_fields__}
    base.update(seed=seed, image_shape=image_shape, class_weights=class_weights, **overrides)
    return FitSettings(**base)


def run_training(job: TrainingJob, params: Params) -> None:
    """Train ``job.net`` in one MLflow run, calibrate it on the validation split, then write
    its bundle and per-epoch history.

    The store is checked first, so an unreachable tracking server fails before any work. A run
    that does not complete (an error, Ctrl-C, SIGTERM) ends as FAILED; one left RUNNING by a
    killed process is marked FAILED here. Training resumes from this job's last checkpoint.

    Under torchrun (``train.nproc`` > 1) rank 0 alone does all this; a restarted rank 0 goes
    on in the run its first attempt started. The other ranks train their shards, nothing else.
    """
    import mlflow

    from sluice.errors import SluiceError
    from sluice.model.distributed import current_world
    from sluice.pipeline.launch import attempt_tags, restarted_run
    from sluice.tracking.runs import fail_stale_runs, run_tags
    from sluice.tracking.store import connect

    world = current_world()
    if world.size > 1 and job.ensemble is not None:
        raise SluiceError("ensemble members train in one process; set train.nproc: 1")
    if not world.is_main:
        _fit_shard(job, params)
        return
    experiment_id = connect(params.registry.experiment)
    fail_stale_runs(experiment_id, job.role)
    torch.set_num_threads(params.train.threads)
    train_df, val_df = pd.read_parquet(job.train_path), pd.read_parquet(job.val_path)
    data = _arrays(job, train_df, val_df)
    # Hashed once: the checkpoint key, the dataset inputs and the lineage all use these.
    md5 = {path: file_md5(path) for path in (job.train_path, job.val_path)}
    checkpoint = _checkpoint_path(job, md5)
    _remove_torn_checkpoint_writes(checkpoint)
    tags = {**run_tags(job.role), "sluice.role": job.role, **job.extra_tags, **attempt_tags()}
    resumed = restarted_run(experiment_id, job.role)  # torchrun restarted this job
    new_run = {"experiment_id": experiment_id, "run_name": job.role}
    with mlflow.start_run(**({"run_id": resumed} if resumed else new_run), tags=tags) as run:
        if resumed is None:  # a restarted attempt's run has these already
            mlflow.log_params(flatten(job.run_params))
            _log_dataset(job.train_path, md5[job.train_path], train_df, job.target, "training")
            _log_dataset(job.val_path, md5[job.val_path], val_df, job.target, "validation")
            mlflow.log_params({f"params_{k}": v for k, v in count_parameters(job.net).items()})
        if job.pretrain is not None and not checkpoint.exists():  # a resumed fit has its weights
            job.pretrain.run(job.net, job.settings, experiment_id)
        if job.ensemble is None:
            result = _fit_logged(job, data, checkpoint)
            job.net.load_state_dict(result.state_dict)  # the best epoch's weights
            fitted = calibrate(job.net, data[2], data[3], job.spec["classes"], params.evaluate)
        else:
            result, fitted = job.ensemble.fit(job, data, checkpoint, params)
        _log_calibration(fitted)
        _write_outputs(job, result, run.info.run_id, md5[job.train_path], fitted)
        from sluice.pipeline.costing import record_cost

        record_cost(paths.MODELS[job.role], val_df, params.evaluate.latency_repeats)
    checkpoint.unlink(missing_ok=True)


def _fit_shard(job: TrainingJob, params: Params) -> None:
    """A data-parallel rank other than 0: its part of every training step, and nothing else
    (rank 0 talks to MLflow, writes checkpoints and outputs)."""
    torch.set_num_threads(params.train.threads)
    train_df, val_df = pd.read_parquet(job.train_path), pd.read_parquet(job.val_path)
    md5 = {path: file_md5(path) for path in (job.train_path, job.val_path)}
    data = _arrays(job, train_df, val_df)
    checkpoint = _checkpoint_path(job, md5)
    if job.pretrain is not None and not checkpoint.exists():  # as rank 0 does, untracked
        job.pretrain.fit(job.net, job.settings)
    fit(job.net, data, len(job.spec["classes"]), job.settings, None, checkpoint)


def _arrays(job: TrainingJob, train_df: pd.DataFrame, val_df: pd.DataFrame) -> tuple:
    """(X_train, y_train, X_val, y_val) through the job's fitted preprocessor."""
    pre = Preprocessor.from_dict(job.spec["preprocessor"])
    classes = job.spec["classes"]
    return (
        pre.transform(train_df, str(job.train_path)),
        encode_labels(train_df[job.target], classes, str(job.train_path)),
        pre.transform(val_df, str(job.val_path)),
        encode_labels(val_df[job.target], classes, str(job.val_path)),
    )


def _fit_logged(job: TrainingJob, data: tuple, checkpoint: Path) -> FitResult:
    """Fit with per-epoch logging; a resumed fit also logs the epochs its checkpoint restored."""
    import mlflow

    started = time.perf_counter()
    logged = _last_logged_epoch()  # > 0 in a run that a restarted attempt goes on in
    with _EpochLogger(job.role, job.settings.epochs, logged) as on_epoch:
        result = fit(job.net, data, len(job.spec["classes"]), job.settings, on_epoch, checkpoint)
    if result.resumed_from:
        _log_restored_epochs(
            [r for r in result.history[: result.resumed_from] if r["epoch"] > logged]
        )
        mlflow.set_tag("sluice.resumed_from_epoch", str(result.resumed_from))
    mlflow.log_metrics(
        {"best_epoch": result.best_epoch, "train_seconds": time.perf_counter() - started}
    )
    return result


def _last_logged_epoch() -> int:
    """The last epoch the active run has metrics for (0 for a new run)."""
    import mlflow

    run_id = mlflow.active_run().info.run_id
    steps = [m.step for m in mlflow.MlflowClient().get_metric_history(run_id, "train_loss")]
    return max(steps, default=0)


def _log_restored_epochs(records: list[dict[str, float]]) -> None:
    """Per-epoch metrics of epochs trained before a resume, so the run's curves are complete."""
    from sluice.tracking.runs import log_epoch_metrics

    log_epoch_metrics(records)


def calibrate(
    net: torch.nn.Module, X_val, y_val, classes: list[str], cfg: EvaluateConfig
) -> dict[str, dict]:
    """Temperature scaling and, for a binary model, the decision threshold, both fitted on the
    validation split: the rows early stopping watched, so the test split stays untouched.

    The threshold (``evaluate.threshold``: f1, youden or cost with ``evaluate.costs``) is chosen
    on the calibrated probability of ``classes[1]``; multi-class models (and ``argmax``) decide
    by the most probable class. Returns ``{"calibration", "decision"}`` for the bundle's spec.
    """
    logits = predict_logits(net, torch.from_numpy(X_val)).double().numpy()  # (n, C) | (n, k, C)
    return calibrate_logits(logits, y_val, classes, cfg, "val")


def calibrate_logits(
    logits: np.ndarray, y_val, classes: list[str], cfg: EvaluateConfig, fitted_on: str
) -> dict[str, dict]:
    """:func:`calibrate` on given logits, ``fitted_on`` naming their rows (``val``, or
    ``out_of_fold`` for a cross-validated ensemble)."""
    found = calibration.fit_temperature(logits, y_val)
    prob = calibration.proba(logits, found.temperature)
    fitted = {
        "method": "temperature",
        "fitted_on": fitted_on,
        "temperature": found.temperature,
        "val_before": calibration.calibration_scores(y_val, calibration.proba(logits)),
        "val_after": calibration.calibration_scores(y_val, prob),
        **({"note": found.note} if found.note else {}),
    }
    if len(classes) != 2 or cfg.threshold == "argmax":
        decision = {"rule": "argmax", "threshold": None}
    else:
        costs = cfg.costs.model_dump() if cfg.threshold == "cost" else None
        chosen = calibration.choose_threshold(y_val, prob[:, 1], cfg.threshold, costs)
        decision = {**chosen, "positive_class": classes[1], "fitted_on": fitted_on}
    log.info(
        "calibrated on %s: temperature %.4f (log loss %.4f -> %.4f), decision %s",
        fitted_on,
        found.temperature,
        found.nll_before,
        found.nll_after,
        "argmax" if decision["threshold"] is None else f"p >= {decision['threshold']:.4f}",
    )
    return {"calibration": fitted, "decision": decision}


def _log_calibration(fitted: dict[str, dict]) -> None:
    """Validation log loss, ECE and Brier before and after temperature scaling, the temperature
    and the decision threshold, into the active run."""
    import mlflow

    cal, decision = fitted["calibration"], fitted["decision"]
    metrics = {"temperature": cal["temperature"]}
    for when, key in (("uncalibrated", "val_before"), ("calibrated", "val_after")):
        metrics |= {f"val_{k}_{when}": v for k, v in cal[key].items()}
    if decision["threshold"] is not None:
        metrics["decision_threshold"] = decision["threshold"]
        metrics |= {f"val_decision_{k}": v for k, v in decision["val"].items() if k != "threshold"}
    mlflow.log_metrics(metrics)
    mlflow.set_tag("sluice.decision_rule", decision["rule"])


def _write_outputs(
    job: TrainingJob, result: FitResult, run_id: str, train_md5: str, fitted: dict[str, dict]
) -> None:
    """The bundle (best weights, spec with calibration and decision, lineage), then the
    per-epoch history; both or neither."""
    lineage = {"run_id": run_id, "train_data_md5": train_md5}
    spec = {
        **job.spec,
        **fitted,
        "role": job.role,
        "best_epoch": result.best_epoch,
        "lineage": {**job.spec.get("lineage", {}), **lineage},
    }
    with outputs_together():
        save_bundle(paths.MODELS[job.role], job.net, spec)
        write_table(paths.TRAIN_HISTORY[job.role], pd.DataFrame(result.history))


class _EpochLogger:
    """Send each epoch's metrics to MLflow in one batch and advance the ``train <role>`` phase
    (its bar shows the loss and validation macro F1)."""

    def __init__(self, role: str, epochs: int, logged: int = 0) -> None:
        self.role, self.epochs = role, epochs
        self.logged = logged  # epochs already in the run (an earlier attempt's): not again
        self.bar = Phase(f"train {role}", epochs, "epochs")

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __call__(self, record: dict[str, float]) -> None:
        import mlflow

        step = int(record["epoch"])
        self.bar.update(step, loss=record["train_loss"], val_f1=record["val_f1_macro"])
        if step <= self.logged:
            return
        mlflow.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=step)

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)


def _log_dataset(path: Path, md5: str, df: pd.DataFrame, target: str, context: str) -> None:
    """Dataset lineage: the file, its DVC-compatible md5, and its schema."""
    import mlflow

    with warnings.catch_warnings():
        # MLflow registers two equivalent local-file source types and warns on every path.
        warnings.filterwarnings("ignore", message="The specified dataset source can be")
        dataset = mlflow.data.from_pandas(
            df.head(0), source=str(path), targets=target, name=path.stem, digest=md5
        )
    mlflow.log_input(dataset, context=context)


def _checkpoint_path(job: TrainingJob, md5: dict[Path, str]) -> Path:
    """Checkpoints are keyed by everything that shapes training, so a stale one is never used."""
    key = json.dumps(
        [
            asdict(job.settings),
            job.spec["arch"],
            job.spec["args"],
            job.run_params,
            md5[job.train_path],
            md5[job.val_path],
        ],
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return paths.CHECKPOINTS / f"{job.role}-{digest}.pt"


def _remove_torn_checkpoint_writes(checkpoint: Path) -> None:
    """Delete temporaries of checkpoint writes that a kill cut short.

    Checkpoints are written to ``.<name>.<pid>.tmp`` and renamed (sluice.model.training), so a torn
    write never replaces a checkpoint, but its temporary would otherwise stay forever.
    """
    for tmp in checkpoint.parent.glob(f".{checkpoint.name}.*.tmp"):
        tmp.unlink(missing_ok=True)
        log.info("removed %s, left by an interrupted checkpoint write", tmp)
