"""Run lineage: the tags every run carries, and runs a killed process left RUNNING.

Apart from ``sluice.tracking.store`` (which finds the store) so that the pipeline execution's
grouping (``sluice.tracking.grouping``) sits between the two: store <- grouping <- runs.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from sluice.errors import SluiceError, mask_secrets
from sluice.tracking.grouping import PARENT_TAG, execution_parent
from sluice.tracking.store import connected_experiment, git_commit, process_alive

log = logging.getLogger(__name__)


def run_tags(stage: str) -> dict[str, str]:
    """Lineage tags every run carries: git commit, DVC experiment, stage, the host, pid and
    working directory of the process (a queued experiment's temporary copy, or the project),
    and, inside a DVC stage, the pipeline execution's parent run (``mlflow.parentRunId``, see
    sluice.tracking.grouping; the experiment is the one ``connect`` returned)."""
    tags = {
        "sluice.stage": stage,
        "sluice.host": socket.gethostname(),
        "sluice.pid": str(os.getpid()),
        "sluice.workdir": os.getcwd(),
        "mlflow.source.git.commit": git_commit(),
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        tags["dvc.baseline_rev"] = os.environ["DVC_EXP_BASELINE_REV"]
    # Nested under the pipeline execution's parent run (inside a DVC stage): a run started
    # inside another active run is nested under that one instead (MLflow overrides the tag).
    parent = execution_parent(connected_experiment())
    if parent:
        tags[PARENT_TAG] = parent
    return tags


def fail_stale_runs(experiment_id: str, stage: str) -> None:
    """Mark runs of ``stage`` left RUNNING by a killed process on this host as FAILED."""
    import mlflow

    client = mlflow.MlflowClient()
    host = socket.gethostname()
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"attributes.status = 'RUNNING' and tags.`sluice.stage` = '{stage}' "
        f"and tags.`sluice.host` = '{host}'",
    )
    for run in runs:
        if _is_stale(run.data.tags):
            client.set_terminated(run.info.run_id, status="FAILED")
            log.info(
                "marked run %s of killed process %s as FAILED",
                run.info.run_id,
                run.data.tags["sluice.pid"],
            )


def _is_stale(tags: dict[str, str]) -> bool:
    """The run's process is gone, and no other copy of the project may hold the run open.

    The evaluate stage re-opens training runs (status RUNNING again) to log test metrics, so a
    parallel queued experiment's run whose training process has ended may be RUNNING and alive:
    only runs from this working directory, or from a copy that no longer exists, are stale.
    """
    pid = int(tags.get("sluice.pid", "0") or 0)
    if not pid or process_alive(pid):
        return False
    workdir = tags.get("sluice.workdir")
    return workdir is None or workdir == os.getcwd() or not Path(workdir).exists()


def require_runs(run_ids: dict[str, str]) -> None:
    """Raise one line when a model's training run (``{model folder: run id}``) is not in the
    store in use: the models were trained while MLFLOW_TRACKING_URI named another store, so
    their test metrics and registered versions would have nowhere to go."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    missing = []
    for where, run_id in run_ids.items():
        try:
            client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            missing.append(f"{where} (run {run_id})")
    if missing:
        store = mask_secrets(mlflow.get_tracking_uri())
        raise SluiceError(
            f"the training runs of {', '.join(missing)} are not in the MLflow store {store}: "
            "the models were trained with another store; re-run training with this one "
            "(dvc repro --force train), or set MLFLOW_TRACKING_URI back to the store they were "
            "trained with (nothing was registered)"
        )


def log_epoch_metrics(
    records: list[dict[str, float]], extra: dict[str, float] | None = None
) -> None:
    """Per-epoch records (``{"epoch": n, name: value, ...}``) as metrics of the active run at
    step ``n``, and ``extra`` values at step 0, in as few calls as MLflow allows."""
    import time

    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    points = [
        Metric(k, float(v), now, int(r["epoch"]))
        for r in records
        for k, v in r.items()
        if k != "epoch"
    ]
    points += [Metric(k, float(v), now, 0) for k, v in (extra or {}).items()]
    client, run_id = mlflow.MlflowClient(), mlflow.active_run().info.run_id
    for i in range(0, len(points), 1000):  # MLflow's limit per batch
        client.log_batch(run_id, metrics=points[i : i + 1000])
