"""The tune stage's use case: an Optuna study over the search space in params, tracked in MLflow.

One parent MLflow run (``tune``) holds the study; each trial is a nested run with its choice,
per-epoch curve, validation score and whether it was pruned. The best trial's choice goes to
``reports/tuned.yaml``, which resample, train and finetune lay over params.yaml. A worker
process (``python -m stages.tune --worker``) adds trials to a shared study in its own run.

Reproducible: a seeded TPE sampler, one trial at a time, seeded training at a fixed thread
count, so the same data and params give the same trials and the same choice. A
``tune.timeout`` that cuts a study short makes the number of trials, and so the choice,
depend on the machine's speed.
"""

from __future__ import annotations

import logging
import time

from sluice import paths
from sluice.config import Params, TuneSpace
from sluice.data.columns import feature_types
from sluice.data.splitting import sorted_labels
from sluice.errors import SluiceError
from sluice.io import file_md5, read_json, read_table
from sluice.tracking.grouping import PARENT_TAG
from sluice.tuning.choice import skip_reason, study_name, write_choice, write_skipped
from sluice.tuning.selection import study_result
from sluice.tuning.study import new_study, optimize, wait_for_running_trials

log = logging.getLogger(__name__)

WORKER_TAG = "sluice.tune_worker"  # on the run of a `python -m stages.tune --worker` process


def run_tuning(params: Params) -> None:
    """Run the study (or skip it), log it to MLflow and write the choice and its report."""
    prepared = _prepare(params)
    if isinstance(prepared, str):
        write_skipped(prepared)
        return
    _study_in_a_run(params, *prepared)


def run_worker(params: Params) -> int:
    """Add trials to the shared study (``tune.storage``) until it holds ``tune.trials``.

    Another process, on this machine or another one, with the same params and data (the same
    study name): its trials are tracked in one ``tune worker`` run, nested under the tune
    stage's run when that is open (the stage adopts it otherwise). Writes no files: the tune
    stage writes the choice from the whole study. Returns the number of trials it ran.
    """
    if params.tune.storage is None:
        raise SluiceError(
            "tune.storage is null in params.yaml, so there is no shared study to work on; set "
            "it to a database URL that every worker reaches (e.g. the team server's "
            "postgresql+psycopg://... that `make server` prints)"
        )
    prepared = _prepare(params)
    if isinstance(prepared, str):
        raise SluiceError(f"the tune stage skips this study ({prepared}): nothing to work on")
    import mlflow
    import torch

    from sluice.tracking.runs import run_tags
    from sluice.tracking.store import connect

    name, objective = prepared
    experiment_id = connect(params.registry.experiment)
    torch.set_num_threads(params.train.threads)
    study = new_study(params, name, worker=True)
    tags = {**run_tags("tune"), "sluice.study": name, WORKER_TAG: "true"}
    stage_run = _open_stage_run(experiment_id, name)
    if stage_run:
        tags[PARENT_TAG] = stage_run
    before = len(study.get_trials(deepcopy=False))
    with mlflow.start_run(experiment_id=experiment_id, run_name="tune worker", tags=tags):
        mlflow.log_params({"seed": params.seed, "study": name, "trials": params.tune.trials})
        optimize(study, objective, params)
    ran = len(study.get_trials(deepcopy=False)) - before
    log.info("tune worker: study %s now holds %d trials", name, before + ran)
    return ran


def _prepare(params: Params):
    """The study's name and objective, or why the study does not run."""
    report = read_json(paths.CLEAN_REPORT)
    types = feature_types(report)
    reason = skip_reason(params, types)
    if reason:
        return reason
    from sluice.data.resampling import check_text_method
    from sluice.model.nets import image_shape_for
    from sluice.tuning.data import TuneData
    from sluice.tuning.space import study_space
    from sluice.tuning.trial import Objective

    space, left_out = study_space(params.tune.space, types, image_shape_for(len(types)) is not None)
    default_arch = _default_arch(params, types, space)
    if space.imbalance is None:  # every trial resamples as params.yaml says: refused before any
        check_text_method(params.resample.method, types)
    data = TuneData(
        train=read_table(paths.SPLITS["train"]),
        val=read_table(paths.SPLITS["val"]),
        target=report["target"],
        types=types,
        classes=sorted_labels(list(report["classes"])),
    )
    if params.data.unlabelled_path:  # clean's copy of its texts, for a bilstm trial that pretrains
        data.unlabelled = read_table(paths.UNLABELLED)
    data.cross_validate(params.tune.cv_folds, params.tune.cv_below_rows, params.seed)
    log.info("tune: trials are scored on %s", data.scored_on)
    data_md5 = [file_md5(paths.SPLITS[s]) for s in ("train", "val")]
    if not data.unlabelled.empty:  # a pretraining trial reads them
        data_md5.append(file_md5(paths.UNLABELLED))
    name = study_name(params, data_md5)
    return name, Objective(params, data, space, default_arch, left_out)


def _default_arch(params: Params, types: dict[str, str], space: TuneSpace) -> str:
    """The family trials train when the study does not search one: ``train.model`` resolved
    for these columns (a family train cannot build is refused here, before any trial)."""
    if space.model is not None:
        return space.model[0]  # every trial and default candidate names its family
    from sluice.model.nets import choose_arch
    from sluice.tuning.space import text_columns

    all_numeric = all(t == "numeric" for t in types.values())
    return choose_arch(params.train.model, len(types), all_numeric, text_columns(types))


def _study_in_a_run(params: Params, name: str, objective) -> None:
    """Run the study inside the parent MLflow run; outputs are written before it ends, so a
    failure leaves the run FAILED and no choice file."""
    import mlflow
    import torch

    from sluice.config import flatten
    from sluice.tracking.runs import fail_stale_runs, run_tags
    from sluice.tracking.store import connect

    experiment_id = connect(params.registry.experiment)
    fail_stale_runs(experiment_id, "tune")
    torch.set_num_threads(params.train.threads)
    study = new_study(params, name)
    if not study.get_trials(deepcopy=False):  # a fresh study tries params.yaml's values first
        study.enqueue_trial(objective.default_point())
    tags = {**run_tags("tune"), "sluice.study": name}
    started = time.perf_counter()
    with mlflow.start_run(experiment_id=experiment_id, run_name="tune", tags=tags) as run:
        tune = params.tune.model_dump(exclude={"space", "storage"})
        space = {f"space.{k}": str(v) for k, v in params.tune.space.model_dump().items()}
        mlflow.log_params({"seed": params.seed, "study": name, **tune, **space})
        cross_validated = len(objective.data.parts) > 1
        defaults = objective.score_defaults() if cross_validated else None
        optimize(study, objective, params)
        if params.tune.storage is not None:  # a shared study: the workers' trials count too
            wait_for_running_trials(study)
            _adopt_worker_runs(experiment_id, name, run.info.run_id)
        choice, report, best_run = study_result(study, objective.metric, name, defaults)
        if cross_validated:
            choice = train_on_folds(choice, params, len(objective.data.parts))
        report["timed_out"] = report["trials"] < params.tune.trials  # then machine-dependent
        report["scored_on"] = objective.data.scored_on
        if objective.left_out:
            report["left_out"] = objective.left_out
            mlflow.set_tag("sluice.left_out", str(objective.left_out))
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
    log.info("tune: chose %s, %s", report["chosen"], flatten(choice))


def train_on_folds(choice: dict, params: Params, folds: int) -> dict:
    """A cross-validated study's choice trains what its trials scored: one network per fold of
    train + val (``train.folds``), unless params.yaml asks for folds itself or trains in
    several processes (which ensembles cannot)."""
    if params.train.folds > 1 or params.train.nproc > 1:
        return choice
    return {**choice, "train": {**choice.get("train", {}), "folds": folds}}


def _open_stage_run(experiment_id: str, name: str) -> str | None:
    """The tune stage's run of study ``name`` if it is open (a worker nests under it)."""
    import mlflow

    runs = mlflow.MlflowClient().search_runs(
        [experiment_id],
        filter_string=f"tags.`sluice.study` = '{name}' and attributes.status = 'RUNNING' "
        "and attributes.run_name = 'tune'",
    )
    return runs[0].info.run_id if runs else None


def _adopt_worker_runs(experiment_id: str, name: str, run_id: str) -> None:
    """Nest the study's worker runs that started before this stage's run under it."""
    import mlflow

    client = mlflow.MlflowClient()
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`sluice.study` = '{name}' and tags.`{WORKER_TAG}` = 'true'",
    )
    for run in runs:
        if PARENT_TAG not in run.data.tags:
            client.set_tag(run.info.run_id, PARENT_TAG, run_id)


def _note(report: dict) -> str:
    metric = report["metric"]
    return (
        f"Chosen by the tune stage: {report['chosen']} of study {report['study']}\n"
        f"({report['complete']} complete, {report['pruned']} pruned trials), "
        f"{metric} {report[f'chosen_val_{metric}']:.4f} on {report['scored_on']}"
        f"{'; stopped by tune.timeout' if report.get('timed_out') else ''}.\n"
        "Written by dvc repro: set the study up in the tune: section of params.yaml."
    )
