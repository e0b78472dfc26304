"""Shared tuning: the tune stage (`dvc repro tune`) and two worker processes (`python -m
stages.tune --worker`) started together finish one Optuna study kept in the team server's
PostgreSQL (`tune.storage`); the stage writes the choice of the whole study. No trial is lost or
run twice, in the study or in MLflow, where the workers' runs nest under the stage's run."""

from __future__ import annotations

import secrets
import subprocess
import sys

import pytest
import yaml
from conftest import make_project

from sluice.tracking.grouping import PARENT_TAG
from sluice.tuning.run import WORKER_TAG

pytestmark = pytest.mark.slow

TRIALS = 12
TUNE = {
    "trials": TRIALS,
    "startup_trials": 3,
    "pruner": "none",
    "space": {"model": ["mlp"], "width": [8, 64], "depth": [1, 2], "imbalance": None},
}


def test_the_stage_and_two_workers_finish_one_study_without_duplicate_or_lost_trials(
    team_server, login, monkeypatch, tmp_path
):
    import optuna
    from optuna.trial import TrialState

    experiment = f"tune-{secrets.token_hex(3)}"
    project = make_project(
        tmp_path / "proj",
        {
            "data": {"name": "breast-cancer"},
            "train": {"epochs": 6, "patience": 6},
            "tune": {**TUNE, "storage": team_server.storage},
            "registry": {"experiment": experiment},
        },
    )
    project.env = team_server.env(project.env)
    project.run("dvc", "repro", "split")
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "stages.tune", "--worker"],
            cwd=project.path,
            env=project.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    project.run("dvc", "repro", "tune")  # the stage, beside the workers
    done = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err[-3000:] for _, err in done]

    report = project.read_json("reports/tune.json")
    monkeypatch.setenv("PGPASSFILE", team_server.exports["PGPASSFILE"])
    study = optuna.load_study(study_name=report["study"], storage=team_server.storage)
    trials = study.get_trials()
    # Each process stops once the study holds TRIALS; others may be finishing a trial then.
    assert TRIALS <= len(trials) <= TRIALS + 2
    assert report["trials"] == len(trials)
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert len({tuple(sorted(t.params.items())) for t in trials}) == len(trials)  # no repeats
    # The choice: the study's best trial, or params.yaml's own values (scored by the stage on
    # the same 2 folds) when no trial beats them clearly; either trains one network per fold.
    choice = yaml.safe_load((project.path / "reports" / "tuned.yaml").read_text())
    chosen = report["chosen"]
    expected = {"resample": {}, "train": {"model": "mlp"}}
    if chosen != "defaults mlp":
        assert chosen == f"trial {report['best_trial']}"
        expected = study.trials[report["best_trial"]].user_attrs["choice"]
    assert choice == {**expected, "train": {**expected["train"], "folds": 2}}

    client = login(team_server)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    (stage,) = [r for r in runs if r.info.run_name == "tune"]
    worker_runs = [r for r in runs if r.data.tags.get(WORKER_TAG) == "true"]
    assert len(worker_runs) == 2
    per_process = [trials_under(runs, stage)]
    for worker in worker_runs:
        assert worker.info.status == "FINISHED"
        assert worker.data.tags[PARENT_TAG] == stage.info.run_id  # nested (or adopted)
        per_process.append(trials_under(runs, worker))
    assert sum(bool(t) for t in per_process) >= 2, per_process  # the study was shared
    assert sorted(sum(per_process, [])) == list(range(len(trials)))  # every trial once


def trials_under(runs: list, parent) -> list[int]:
    """The trial numbers of the trial runs nested directly under ``parent``."""
    nested = [r for r in runs if r.data.tags.get(PARENT_TAG) == parent.info.run_id]
    return sorted(int(r.data.tags["sluice.trial"]) for r in nested if "sluice.trial" in r.data.tags)
