"""Grouped runs against the team server: two queued experiments at the same time, each one parent
run with its models and reference nested under it, every version and history entry once; and a
user who may only read is stopped with one line before any stage trains."""

from __future__ import annotations

import secrets

import pytest
from conftest import make_project, run_queue

from sluice.tracking.grouping import EXECUTION_TAG, PARENT_TAG

from .conftest import lines

pytestmark = pytest.mark.slow

SEEDS = (1, 2)  # two queued experiments, run at the same time by two workers
TINY = {  # every stage, as small as it gets
    "data": {"name": "breast-cancer"},
    "train": {"epochs": 2, "patience": 2},
    "finetune": {"epochs": 1, "patience": 1},
    "evaluate": {"bootstrap": 0, "reference": ["logreg"]},
}


def test_queued_experiments_each_land_once_under_their_own_parent(team_server, login, tmp_path):
    from sluice.tracking.registry import read_history

    tag = secrets.token_hex(3)
    registry = {"experiment": f"queue-{tag}", "model_name": f"queue-{tag}"}
    project = make_project(tmp_path / "proj", {**TINY, "registry": registry})
    project.env = team_server.env(project.env)
    for seed in SEEDS:
        project.run("dvc", "exp", "run", "--queue", "-n", f"q{seed}", "-S", f"seed={seed}")
    states = run_queue(project, jobs=2)
    logs = {name: project.run("dvc", "queue", "logs", name, check=False).stdout for name in states}
    assert states == {f"q{seed}": "Success" for seed in SEEDS}, logs

    client = login(team_server)
    runs = client.search_runs([client.get_experiment_by_name(registry["experiment"]).experiment_id])
    parents = {r.info.run_name: r for r in runs if EXECUTION_TAG in r.data.tags}
    assert set(parents) == set(states)
    model_runs = {}
    for name, parent in parents.items():
        assert parent.info.status == "FINISHED"
        assert parent.data.tags["dvc.exp_name"] == name
        assert parent.data.params["seed"] == name.removeprefix("q")
        nested = [r for r in runs if r.data.tags.get(PARENT_TAG) == parent.info.run_id]
        assert sorted(r.info.run_name for r in nested) == ["base", "finetuned", "logreg"]
        assert {r.data.tags["dvc.exp_name"] for r in nested} == {name}
        assert {r.info.status for r in nested} == {"FINISHED"}
        model_runs |= {r.info.run_id: r for r in nested if r.info.run_name != "logreg"}
        assert parent.data.tags["sluice.challenger_run_id"] in model_runs
    assert len(runs) == len(SEEDS) * 4  # parents and their three runs, nothing twice or extra

    versions = client.search_model_versions(f"name = '{registry['model_name']}'")
    assert sorted(v.run_id for v in versions) == sorted(model_runs)  # one per model run
    history = read_history(registry["model_name"])
    assert sorted(e["seq"] for e in history) == list(range(1, len(SEEDS) + 1))
    challengers = {e["to"] for e in history if e["alias"] == "challenger"}
    assert len(challengers) == len(SEEDS) and challengers <= {v.version for v in versions}


def test_a_user_who_may_only_read_gets_one_line_before_training(team_server, login, tmp_path):
    from mlflow.server.auth.client import AuthServiceClient

    admin = login(team_server)
    tag = secrets.token_hex(3)
    experiment = f"readonly-{tag}"
    experiment_id = admin.create_experiment(experiment)
    user, password = f"reader-{tag}", secrets.token_urlsafe(16)
    AuthServiceClient(team_server.uri).create_user(user, password)  # default permission: READ
    project = make_project(tmp_path / "proj", {**TINY, "registry": {"experiment": experiment}})
    project.env = team_server.env(project.env, user, password)
    result = project.run("dvc", "repro", check=False)
    assert result.returncode != 0
    (line,) = [x for x in lines(result.stderr) if x.startswith("error:")]
    assert f"denied user '{user}' permission (HTTP 403)" in line
    assert f"writing runs in experiment '{experiment}' (it has READ)" in line
    assert "Traceback" not in result.stderr + result.stdout
    assert not (project.path / "models" / "base").exists()
    assert admin.search_runs([experiment_id]) == []


def test_the_write_check_follows_grants_and_lets_admins_through(team_server, login, monkeypatch):
    import mlflow
    from mlflow.server.auth.client import AuthServiceClient

    from sluice.errors import SluiceError
    from sluice.tracking.store import connect

    login(team_server)
    tag = secrets.token_hex(3)
    auth = AuthServiceClient(team_server.uri)
    logins = {name: secrets.token_urlsafe(16) for name in (f"owner-{tag}", f"editor-{tag}")}
    for name, password in logins.items():
        auth.create_user(name, password)

    def as_user(name: str) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", name)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", logins.get(name, team_server.password))

    as_user(f"owner-{tag}")  # the owner's experiment: nobody else has a grant on it
    experiment_id = mlflow.MlflowClient().create_experiment(f"owned-{tag}")
    as_user(f"editor-{tag}")
    with pytest.raises(SluiceError, match=r"\(it has READ\)"):
        connect(f"owned-{tag}")
    as_user("admin")
    assert connect(f"owned-{tag}") == experiment_id  # admins write anywhere
    auth.grant_user_permission(f"editor-{tag}", "experiment", experiment_id, "EDIT")
    as_user(f"editor-{tag}")
    assert connect(f"owned-{tag}") == experiment_id
