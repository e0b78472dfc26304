"""Queued experiments run two at a time (`dvc queue start -j 2`), each in its own temporary copy
under .dvc/tmp/exps, and all land in the one MLflow store at the repository root."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import make_project, run_queue

pytestmark = pytest.mark.slow

SEEDS = (1, 2)  # two queued experiments, run at the same time by two workers
# The smallest settings that still run every stage, on the built-in breast-cancer data.
TINY = {
    "data": {"name": "breast-cancer"},
    "train": {"epochs": 2, "patience": 2},
    "finetune": {"epochs": 1, "patience": 1},
    "evaluate": {"bootstrap": 0, "reference": []},
}


def test_queued_experiments_run_in_parallel_into_the_root_store(tmp_path):
    project = make_project(tmp_path / "proj", TINY)
    for seed in SEEDS:
        project.run("dvc", "exp", "run", "--queue", "-S", f"seed={seed}")
    states = run_queue(project, jobs=2, timeout_s=480)
    logs = {name: project.run("dvc", "queue", "logs", name, check=False).stdout for name in states}
    assert list(states.values()) == ["Success"] * len(SEEDS), logs
    assert not [name for name, log in logs.items() if "database is locked" in log]

    client = project.mlflow_client()  # the store at the project root, nowhere else
    experiment = client.get_experiment_by_name("sluice")
    runs = client.search_runs([experiment.experiment_id])
    assert {r.info.status for r in runs} == {"FINISHED"}
    by_exp = {}
    for run in runs:  # the models' runs (each experiment's parent run has no role)
        if "sluice.role" in run.data.tags:
            by_exp.setdefault(run.data.tags["dvc.exp_name"], set()).add(
                run.data.tags["sluice.role"]
            )
    assert by_exp == {name: {"base", "finetuned"} for name in states}
    seeds = sorted(int(r.data.params["seed"]) for r in runs if r.info.run_name == "base")
    assert seeds == list(SEEDS)
    assert len(client.search_model_versions("name = 'sluice-classifier'")) == 2 * len(SEEDS)
    assert experiment.artifact_location == (project.path / "mlartifacts").as_uri()
    assert not list((project.path / ".dvc" / "tmp").rglob("mlflow.db"))


def test_parallel_first_runs_create_one_store_without_racing(tmp_path):
    """Three processes open a store that does not exist yet at the same moment (as the first
    stages of parallel queued experiments do): all get the same experiment, none fails."""
    code = "from sluice.tracking.store import connect; print(connect('sluice'))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["DVC_ROOT"] = str(tmp_path)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    assert [r[0] for r in results] == [0] * 3, [r[2][-2000:] for r in results]
    assert {r[1].strip() for r in results} == {"1"}
