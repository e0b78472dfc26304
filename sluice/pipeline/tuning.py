"""The tune stage's use case: an Optuna study over the search space in params, tracked in MLflow.

One parent MLflow run (``tune``) holds the study; each trial is a nested run with its choice,
per-epoch curve, validation score and whether it was pruned. The best trial's choice goes to
``reports/tuned.yaml``, which resample, train and finetune lay over params.yaml.

Reproducible: a seeded TPE sampler, one trial at a time, seeded training at a fixed thread
count, so the same data and params give the same trials and the same choice. A
``tune.timeout`` that cuts a study short makes the number of trials, and so the choice,
depend on the machine's speed.
"""

from __future__ import annotations

import logging
import math
import time

from sluice import paths
from sluice.config import Params
from sluice.data.columns import feature_types
from sluice.data.splitting import sorted_labels
from sluice.errors import SluiceError
from sluice.io import file_md5, read_json, read_table
from sluice.pipeline.tune_choice import (
    skip_reason,
    study_families,
    study_name,
    write_choice,
    write_skipped,
)

log = logging.getLogger(__name__)


def run_tuning(params: Params) -> None:
    """Run the study (or skip it), log it to MLflow and write the choice and its report."""
    report = read_json(paths.CLEAN_REPORT)
    types = feature_types(report)
    reason = skip_reason(params, types)
    if reason:
        write_skipped(reason)
        return
    from sluice.model.nets import choose_arch, image_shape_for
    from sluice.pipeline.tune_trial import Objective, TuneData

    all_numeric = all(t == "numeric" for t in types.values())
    default_arch = choose_arch(params.train.model, len(types), all_numeric)
    families = study_families(params.tune.space, image_shape_for(len(types)) is not None)
    data = TuneData(
        train=read_table(paths.SPLITS["train"]),
        val=read_table(paths.SPLITS["val"]),
        target=report["target"],
        types=types,
        classes=sorted_labels(list(report["classes"])),
    )
    name = study_name(params, [file_md5(paths.SPLITS[s]) for s in ("train", "val")])
    _study_in_a_run(params, name, Objective(params, data, families, default_arch))


def _study_in_a_run(params: Params, name: str, objective) -> None:
    """Run the study inside the parent MLflow run; outputs are written before it ends, so a
    failure leaves the run FAILED and no choice file."""
    import mlflow
    import torch

    from sluice.pipeline.tune_trial import flatten
    from sluice.tracking.store import connect, fail_stale_runs, run_tags

    experiment_id = connect(params.registry.experiment)
    fail_stale_runs(experiment_id, "tune")
    torch.set_num_threads(params.train.threads)
    study = new_study(params, name)
    tags = {**run_tags("tune"), "sluice.study": name}
    started = time.perf_counter()
    with mlflow.start_run(experiment_id=experiment_id, run_name="tune", tags=tags):
        tune = params.tune.model_dump(exclude={"space", "storage"})
        space = {f"space.{k}": str(v) for k, v in params.tune.space.model_dump().items()}
        mlflow.log_params({"seed": params.seed, "study": name, **tune, **space})
        optimize(study, objective, params)
        choice, report, best_run = study_result(study, objective.metric, name)
        report["timed_out"] = report["trials"] < params.tune.trials  # then machine-dependent
        mlflow.log_params({f"chosen.{k}": v for k, v in flatten(choice).items()})
        mlflow.log_metrics(
            {
                **{k: float(v) for k, v in report.items() if isinstance(v, int | float)},
                "tune_seconds": time.perf_counter() - started,
            }
        )
        mlflow.log_dict(choice, "tuned.yaml")
        if best_run:
            mlflow.MlflowClient().set_tag(best_run, "sluice.chosen", "true")
        write_choice(choice, _note(report), report)
    log.info("tune: chose trial %d, %s", report["best_trial"], flatten(choice))


def new_study(params: Params, name: str):
    """A study with a seeded TPE sampler and a median pruner on the per-epoch score.

    ``tune.storage`` null keeps it in memory; a storage URL (e.g. PostgreSQL) continues the
    study of the same name, so workers sharing it share its trials.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = params.tune
    sampler = optuna.samplers.TPESampler(seed=params.seed, n_startup_trials=cfg.startup_trials)
    pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    if cfg.pruner == "median":
        pruner = optuna.pruners.MedianPruner(
            n_startup_trials=cfg.startup_trials, n_warmup_steps=cfg.warmup_epochs
        )
    return optuna.create_study(
        storage=cfg.storage,
        sampler=sampler,
        pruner=pruner,
        study_name=name,
        direction="minimize" if cfg.metric == "log_loss" else "maximize",
        load_if_exists=cfg.storage is not None,
    )


def optimize(study, objective, params: Params) -> None:
    """Run trials until the study holds ``tune.trials`` finished ones (or the timeout)."""
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    left = params.tune.trials - len(study.get_trials(deepcopy=False, states=finished))
    if left <= 0:
        return
    study.optimize(
        objective,
        n_trials=left,
        timeout=params.tune.timeout or None,
        callbacks=[MaxTrialsCallback(params.tune.trials, states=finished), _log_trial],
    )
    done = len(study.get_trials(deepcopy=False, states=finished))
    if done < params.tune.trials:
        log.warning(
            "tune: tune.timeout (%g s) stopped the study after %d of %d trials: the choice "
            "depends on this machine's speed; raise the timeout or lower tune.trials to make "
            "it reproducible",
            params.tune.timeout,
            done,
            params.tune.trials,
        )


def study_result(study, metric: str, name: str) -> tuple[dict, dict, str | None]:
    """The best trial's choice, and the study's summary for reports/tune.json.

    The best trial has the best ``metric``; ties go to the better macro F1, then the lower log
    loss, then the earlier trial (ROC AUC often ties on small validation splits).
    """
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise SluiceError(
            f"tune: study {name} has no complete trial; raise tune.timeout or tune.trials"
        )
    sign = -1.0 if metric == "log_loss" else 1.0
    best = max(complete, key=lambda t: _rank(t.user_attrs["scores"], metric, sign, t.number))
    report = {
        "study": name,
        "metric": metric,
        "trials": len(complete) + sum(t.state == TrialState.PRUNED for t in trials),
        "complete": len(complete),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "best_trial": best.number,
        "best_value": best.value,
        **{f"best_val_{k}": v for k, v in best.user_attrs["scores"].items()},
    }
    return best.user_attrs["choice"], report, best.user_attrs.get("mlflow_run_id")


def _rank(scores: dict[str, float], metric: str, sign: float, number: int) -> tuple:
    keys = (sign * scores[metric], scores["f1_macro"], -scores["log_loss"])
    return (*(-math.inf if math.isnan(v) else v for v in keys), -number)


def _note(report: dict) -> str:
    return (
        f"Chosen by the tune stage: trial {report['best_trial']} of study {report['study']}\n"
        f"({report['complete']} complete, {report['pruned']} pruned trials), "
        f"validation {report['metric']} {report['best_value']:.4f}"
        f"{'; stopped by tune.timeout' if report.get('timed_out') else ''}.\n"
        "Written by dvc repro: set the study up in the tune: section of params.yaml."
    )


def _log_trial(study, trial) -> None:
    """One line per finished trial (Optuna's own log is set to warnings only)."""
    from optuna.trial import TrialState

    from sluice.pipeline.tune_trial import flatten

    choice = flatten(trial.user_attrs.get("choice", {}))
    if trial.state == TrialState.PRUNED:
        log.info("tune: trial %d pruned at epoch %s %s", trial.number, trial.last_step, choice)
    elif trial.state == TrialState.COMPLETE:
        log.info("tune: trial %d %.4f %s", trial.number, trial.value, choice)
