"""Runs left RUNNING by a killed stage are marked FAILED by the next run of that stage, and only
those: a run that another live copy of the project (a parallel queued experiment) holds open is
left alone."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from sluice.tracking.runs import fail_stale_runs
from sluice.tracking.store import connect


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_runs_of_gone_processes_in_this_copy_are_failed(tmp_path, monkeypatch):
    import mlflow

    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        # set, then delete: the deletion is undone (mlflow.set_tracking_uri exports the variable)
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    here, live_copy = os.getcwd(), tmp_path / "exps" / "other"
    live_copy.mkdir(parents=True)
    dead = str(_dead_pid())
    cases = {
        "killed here": ("base", dead, here),
        "killed in a removed copy": ("base", dead, str(tmp_path / "exps" / "gone")),
        "open in a live copy": ("base", dead, str(live_copy)),
        "still running": ("base", str(os.getpid()), here),
        "another stage": ("finetuned", dead, here),
    }
    experiment_id = connect("sluice")
    client = mlflow.MlflowClient()
    ids = {}
    for name, (stage, pid, workdir) in cases.items():
        tags = {
            "sluice.stage": stage,
            "sluice.host": socket.gethostname(),
            "sluice.pid": pid,
            "sluice.workdir": workdir,
        }
        ids[name] = client.create_run(experiment_id, tags=tags, run_name=name).info.run_id

    fail_stale_runs(experiment_id, "base")
    statuses = {name: client.get_run(run_id).info.status for name, run_id in ids.items()}
    assert statuses == {
        "killed here": "FAILED",
        "killed in a removed copy": "FAILED",
        "open in a live copy": "RUNNING",
        "still running": "RUNNING",
        "another stage": "RUNNING",
    }
