"""Each pipeline execution is one MLflow parent run, with the stages' runs nested under it.

A `dvc repro` (tune with two trials, base, fine-tuned, one reference) on tiny data, then a DVC
experiment that re-runs only evaluate: two parents. Then the rules that tie the separate stage
processes of one execution together, against a throwaway SQLite store: later stages join the
open parent, a failed run ends it as FAILED, a killed one is found by the next execution.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import make_project

from sluice.tracking.grouping import EXECUTION_TAG, PARENT_TAG

PARAMS = {
    "data": {"name": "breast-cancer"},
    "tune": {
        "trials": 2,
        "startup_trials": 1,
        "warmup_epochs": 1,
        "space": {"model": ["mlp"], "width": [8, 32], "depth": [1, 1], "imbalance": None},
    },
    "evaluate": {"reference": ["logreg"]},
}


def all_runs(project) -> list:
    client = project.mlflow_client()
    return client.search_runs([client.get_experiment_by_name("sluice").experiment_id])


def parents(runs: list) -> list:
    return sorted(
        (r for r in runs if EXECUTION_TAG in r.data.tags), key=lambda r: r.info.start_time
    )


def children(runs: list, parent) -> dict[str, object]:
    found = [r for r in runs if r.data.tags.get(PARENT_TAG) == parent.info.run_id]
    return {r.info.run_name: r for r in found}


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("grouped") / "proj", PARAMS)
    project.run("dvc", "repro")
    first = {
        "metrics": project.read_json("reports/metrics.json"),
        "registered": project.read_json("reports/registered.json"),
        "commit": project.run("git", "rev-parse", "HEAD").stdout.strip(),
    }
    project.run("dvc", "exp", "run", "-n", "second", "-S", "evaluate.bootstrap=20")
    return project, first


@pytest.mark.slow
def test_a_repro_is_one_parent_run_holding_every_model_reference_and_trial(grouped):
    project, first = grouped
    runs = all_runs(project)
    repro = parents(runs)[0]
    assert repro.info.status == "FINISHED"
    assert repro.info.run_name == f"repro {first['commit'][:7]}"
    assert repro.data.tags["mlflow.source.git.commit"] == first["commit"]
    nested = children(runs, repro)
    assert set(nested) == {"tune", "base", "finetuned", "logreg"}
    assert all(r.info.status == "FINISHED" for r in nested.values())
    trials = children(runs, nested["tune"])  # three levels: execution, study, trials
    assert sorted(trials) == ["defaults mlp", "trial 0", "trial 1"]
    # 114 validation rows: the trials were scored by cross-validation over train + val, beside
    # params.yaml's own values, and the choice trains one network per fold.
    report = project.read_json("reports/tune.json")
    assert report["scored_on"] == "2-fold cross-validation over train + val (455 rows)"
    assert set(report["defaults"]) == {"mlp"} and report["chosen"] in trials
    assert trials[report["chosen"]].data.tags["sluice.chosen"] == "true"
    for role in ("base", "finetuned"):
        ensemble = project.read_json(f"models/{role}/model.json")["ensemble"]
        assert ensemble["folds"] == ensemble["members"] == 2
    # The challenger's test metrics and every param in effect (the tuned ones included).
    role = first["registered"]["challenger"]["role"]
    assert repro.data.tags["sluice.challenger"] == role
    assert repro.data.metrics["test_roc_auc"] == pytest.approx(first["metrics"][role]["roc_auc"])
    assert "test_roc_auc_ci_low" in repro.data.metrics
    assert repro.data.params["data.name"] == "breast-cancer"
    assert repro.data.params["train.lr"] == nested["base"].data.params["train.lr"]
    # Registered versions still point at the model's own run, not at the parent.
    client = project.mlflow_client()
    name = first["registered"]["model_name"]
    for model, version in first["registered"]["versions"].items():
        assert client.get_model_version(name, version).run_id == nested[model].info.run_id
    assert repro.data.tags["sluice.challenger_run_id"] == nested[role].info.run_id
    # evaluate.figures false (the tests' setting): each run keeps the curves' data, no PNG
    for run in (nested["finetuned"], nested["logreg"]):
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "eval")}
        assert {"eval/roc.json", "eval/pr.json", "eval/reliability.json"} <= artifacts
        assert not {a for a in artifacts if a.endswith(".png")}


@pytest.mark.slow
def test_a_dvc_experiment_is_a_second_parent_named_after_it(grouped):
    project, _ = grouped
    runs = all_runs(project)
    repro, experiment = parents(runs)
    assert experiment.info.run_name == "second" == experiment.data.tags["dvc.exp_name"]
    assert experiment.info.status == "FINISHED"
    assert experiment.data.params["evaluate.bootstrap"] == "20"
    # Only evaluate re-ran: the experiment holds its reference; the models stay where they ran.
    assert set(children(runs, experiment)) == {"logreg"}
    assert set(children(runs, repro)) == {"tune", "base", "finetuned", "logreg"}


STAGE = """
import os, sys
import mlflow
from sluice.tracking.runs import run_tags
from sluice.tracking.store import connect

experiment_id = connect("sluice")
with mlflow.start_run(experiment_id=experiment_id, run_name=sys.argv[1], tags=run_tags("train")):
    if sys.argv[1] == "killed":
        os._exit(9)  # as kill -9: no clean-up at all
    if sys.argv[1] == "failed":
        raise SystemExit(1)
"""


def clean_env(tmp_path, **extra: str) -> dict[str, str]:
    """This process's environment without MLflow or DVC settings; the store in ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    return {**env, "DVC_ROOT": str(tmp_path), **extra}


def test_stage_processes_join_one_parent_until_a_run_fails_or_is_killed(tmp_path):
    import mlflow

    for name in ("ok", "ok again", "failed", "killed", "next", "outside dvc"):
        env = clean_env(tmp_path, **({} if name == "outside dvc" else {"DVC_STAGE": "train"}))
        subprocess.run(
            [sys.executable, "-c", STAGE, name], cwd=tmp_path, env=env, check=False, timeout=120
        )
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("sluice").experiment_id])
    one, two, three = parents(runs)
    assert set(children(runs, one)) == {"ok", "ok again", "failed"}
    assert one.info.status == "FAILED" and "failed" in one.data.tags["sluice.failed_because"]
    assert set(children(runs, two)) == {"killed"}
    assert two.info.status == "FAILED"
    assert "killed process" in two.data.tags["sluice.failed_because"]
    assert set(children(runs, three)) == {"next"} and three.info.status == "RUNNING"
    (outside,) = [r for r in runs if r.info.run_name == "outside dvc"]  # a stage run by hand
    assert PARENT_TAG not in outside.data.tags
