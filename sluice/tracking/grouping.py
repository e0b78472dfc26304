"""One MLflow parent run per pipeline execution, with every stage's runs nested under it.

DVC runs each stage in its own process, so the stages of one execution find their parent by a
key they share:

- in a DVC experiment (``dvc exp run``, queued or not: DVC sets ``DVC_EXP_NAME``), the
  experiment's name and baseline commit; the parent is named after the experiment;
- in a plain ``dvc repro``, the host and the workspace (``DVC_ROOT``).

The first stage that tracks anything opens the parent (status RUNNING); later stages of the same
execution join it, and the evaluate stage ends it (:func:`finish_execution`). An open parent is
not joined but ended as FAILED when one of its runs failed, or is RUNNING although its process on
this host is gone (a killed stage): the execution it belonged to did not complete. A stage whose
own run fails also ends the parent as FAILED when its process exits. Stages run outside DVC
(``DVC_STAGE`` unset) are not grouped.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import math
import os
import socket
import time
from typing import Any

from sluice.config import flatten
from sluice.errors import SluiceError
from sluice.tracking.store import (
    check_reachable,
    git_commit,
    process_alive,
    project_root,
    server_refusals,
)

log = logging.getLogger(__name__)

EXECUTION_TAG = "sluice.execution"  # on parent runs only: a hash of the execution's key
PARENT_TAG = "mlflow.parentRunId"  # how MLflow (and its UI) nests a run under another
_ENDED = ("FAILED", "KILLED")
_parents: dict[tuple[str, str, str], str] = {}  # (store, experiment, key) -> parent run id


def execution_key() -> str | None:
    """What the stages of one execution share (None outside a DVC stage: not grouped)."""
    if not os.environ.get("DVC_STAGE"):
        return None
    name = os.environ.get("DVC_EXP_NAME")
    if name:
        return f"experiment:{name}@{os.environ.get('DVC_EXP_BASELINE_REV', '')}"
    return f"workspace:{socket.gethostname()}:{project_root()}"


def execution_parent(experiment_id: str | None) -> str | None:
    """The id of this execution's parent run in ``experiment_id``, opened on first use.

    The same id for every call of the process; None when the stage is not grouped.
    """
    key = execution_key()
    if key is None or experiment_id is None:
        return None
    import mlflow

    cache_key = (mlflow.get_tracking_uri(), experiment_id, key)
    if cache_key not in _parents:
        with server_refusals(f"opening the pipeline's parent run in experiment {experiment_id}"):
            _parents[cache_key] = _open_parent(mlflow.MlflowClient(), experiment_id, key)
        atexit.register(_fail_if_a_run_failed, _parents[cache_key], os.getpid())
    return _parents[cache_key]


def _open_parent(client, experiment_id: str, key: str) -> str:
    """Join the execution's open parent, or start one (ending broken ones as FAILED)."""
    ident = _ident(key)
    for run in _open_runs(client, experiment_id, key):
        why = _broken(client, run)
        if why is None:
            log.info("joining pipeline run %s (%s)", run.info.run_name, run.info.run_id)
            return run.info.run_id
        client.set_tag(run.info.run_id, "sluice.failed_because", why)
        client.set_terminated(run.info.run_id, status="FAILED")
        log.info("pipeline run %s ended as FAILED: %s", run.info.run_id, why)
    name = os.environ.get("DVC_EXP_NAME") or f"repro {git_commit()[:7] or 'workspace'}".strip()
    tags = {
        EXECUTION_TAG: ident,
        "sluice.execution_key": key,
        "sluice.host": socket.gethostname(),
        "sluice.workspace": str(project_root()),
        "sluice.started_by": os.environ.get("DVC_STAGE", ""),
        "mlflow.source.git.commit": git_commit(),
    }
    for tag, variable in (
        ("dvc.exp_name", "DVC_EXP_NAME"),
        ("dvc.baseline_rev", "DVC_EXP_BASELINE_REV"),
    ):
        if os.environ.get(variable):
            tags[tag] = os.environ[variable]
    run = client.create_run(experiment_id, run_name=name, tags=tags)
    log.info("pipeline run %s (%s) opened", name, run.info.run_id)
    return run.info.run_id


def _ident(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _open_runs(client, experiment_id: str, key: str) -> list:
    """The execution's parent runs still RUNNING, newest first."""
    return client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{EXECUTION_TAG}` = '{_ident(key)}' and attributes.status = 'RUNNING'",
        order_by=["attributes.start_time DESC"],
    )


def _broken(client, parent) -> str | None:
    """Why an open parent's execution cannot have completed (None: it may still be going on)."""
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'",
    )
    host = socket.gethostname()
    for child in children:
        tags, status = child.data.tags, child.info.status
        if status in _ENDED:
            return f"its run {child.info.run_name} ended {status}"
        pid = int(tags.get("sluice.pid", "0") or 0)
        if (
            status == "RUNNING"
            and tags.get("sluice.host") == host
            and pid
            and not process_alive(pid)
        ):
            return f"its run {child.info.run_name} was left RUNNING by killed process {pid}"
    return None


def _fail_if_a_run_failed(parent_id: str, pid: int) -> None:
    """At exit: a run this process started under the parent failed, so the execution did."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if os.getpid() != pid or not _reachable(mlflow.get_tracking_uri()):  # a forked child
        return
    client = mlflow.MlflowClient()
    try:
        parent = client.get_run(parent_id)
        if parent.info.status != "RUNNING":
            return
        children = client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}' and tags.`sluice.pid` = '{pid}'",
        )
        failed = [c for c in children if c.info.status in _ENDED]
        if failed:
            client.set_tag(parent_id, "sluice.failed_because", f"{failed[0].info.run_name} failed")
            client.set_terminated(parent_id, status="FAILED")
    except (MlflowException, OSError) as exc:  # the store went away: the next run repairs it
        log.warning("could not check pipeline run %s at exit: %s", parent_id, exc)


def fail_execution(experiment_id: str | None, why: str) -> None:
    """End this execution's parent as FAILED, if it has one open (a stage failed).

    Called while an error is on its way out: a store that cannot be reached now only gets a
    warning (the next execution ends the parent instead), so the error itself is reported.
    """
    key = execution_key()
    if key is None or experiment_id is None:
        return
    import mlflow
    from mlflow.exceptions import MlflowException

    if not _reachable(mlflow.get_tracking_uri()):
        return
    client = mlflow.MlflowClient()
    known = _parents.get((mlflow.get_tracking_uri(), experiment_id, key))
    try:
        found = (
            [known] if known else [r.info.run_id for r in _open_runs(client, experiment_id, key)]
        )
        for parent in found:
            client.set_tag(parent, "sluice.failed_because", why[:4000])
            client.set_terminated(parent, status="FAILED")
    except (MlflowException, OSError) as exc:
        log.warning("could not end the pipeline run as FAILED: %s", str(exc).splitlines()[0])


def finish_execution(
    experiment_id: str, metrics: dict[str, Any], params: dict[str, Any], tags: dict[str, str]
) -> str | None:
    """End this execution's parent as FINISHED with the challenger's test ``metrics`` (finite
    numbers only), the flattened ``params`` and ``tags``, and the git commit. Returns its id."""
    parent = execution_parent(experiment_id)
    if parent is None:
        return None
    import mlflow
    from mlflow.entities import Metric, Param, RunTag

    client = mlflow.MlflowClient()
    now = int(time.time() * 1000)
    values = [
        Metric(k, float(v), now, 0)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    ]
    logged = client.get_run(parent).data.params  # a joined parent may hold some already
    given = [Param(k, str(v)[:6000]) for k, v in flatten(params).items() if k not in logged]
    labels = [RunTag(k, v) for k, v in {**tags, "mlflow.source.git.commit": git_commit()}.items()]
    client.log_batch(parent, metrics=values, params=given, tags=labels)
    client.set_terminated(parent, status="FINISHED")
    return parent


def _reachable(uri: str) -> bool:
    """Whether the store answers now (a server that went away would make MLflow's client
    retry for minutes; the next execution repairs what is left open)."""
    try:
        check_reachable(uri)
    except SluiceError as exc:
        log.warning("pipeline run left as it is: %s", exc)
        return False
    return True
