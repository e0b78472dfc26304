"""End-to-end: `train.nproc: 2` through the real `dvc repro` (torchrun, gloo on 127.0.0.1).

One project: the pipeline with 2 processes, then again with 1 (train, finetune and evaluate
re-run) for comparison; then the train stage alone again, plainly and with a rank killed.
"""

from __future__ import annotations

import pytest
from conftest import Project, make_project

pytestmark = pytest.mark.slow

EPOCHS = 6
PARAMS = {
    "data": {"name": "breast-cancer"},
    "train": {"nproc": 2, "epochs": EPOCHS, "patience": EPOCHS, "checkpoint_every": 2},
}
# Two processes against one on test: different batch-norm statistics and dropout draws; on
# this data seeds alone move ROC AUC by about 0.005 and accuracy by 0.02.
TOLERANCE = {"roc_auc": 0.02, "accuracy": 0.04, "f1_macro": 0.04}


def runs_of(project: Project, role: str) -> list:
    client = project.mlflow_client()
    experiment = client.get_experiment_by_name("sluice")
    runs = client.search_runs(
        [experiment.experiment_id], f"tags.`sluice.role` = '{role}'", order_by=["start_time"]
    )
    return [r for r in runs if "sluice.reference" not in r.data.tags]


def weights_sha(project: Project) -> str:
    return project.read_json("models/base/model.json")["weights_sha256"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("dp") / "proj", PARAMS)
    output = project.run("dvc", "repro").stderr
    parallel = {
        "output": output,
        "metrics": project.read_json("reports/metrics.json"),
        "runs": {role: runs_of(project, role) for role in ("base", "finetuned")},
        "sha": weights_sha(project),
    }
    project.set_params({"train": {"nproc": 1}})
    project.run("dvc", "repro")
    single = project.read_json("reports/metrics.json")
    project.set_params({"train": {"nproc": 2}})  # the stage runs below train with 2 again
    return project, parallel, single


def test_both_stages_ran_under_torchrun_with_one_run_per_model(pipeline):
    project, parallel, _ = pipeline
    assert "train: 2 data-parallel processes under torchrun" in parallel["output"]
    assert "finetune: 2 data-parallel processes under torchrun" in parallel["output"]
    for role, runs in parallel["runs"].items():
        assert len(runs) == 1, role
        (run,) = runs
        assert run.info.status == "FINISHED"
        assert run.data.params["train.nproc"] == "2"
        steps = project.mlflow_client().get_metric_history(run.info.run_id, "train_loss")
        expected = EPOCHS if role == "base" else 2  # FAST_PARAMS finetune.epochs
        assert sorted(m.step for m in steps) == list(range(1, expected + 1))
    assert not list((project.path / ".sluice/checkpoints").glob("*"))


def test_test_metrics_are_within_tolerance_of_one_process(pipeline):
    _, parallel, single = pipeline
    for role in ("base", "finetuned"):
        for metric, tolerance in TOLERANCE.items():
            got, alone = parallel["metrics"][role][metric], single[role][metric]
            assert abs(got - alone) <= tolerance, (role, metric, got, alone)


def test_the_same_seed_gives_identical_weights(pipeline):
    project, parallel, _ = pipeline
    project.stage("train")
    assert weights_sha(project) == parallel["sha"]


def test_a_rank_killed_mid_training_is_restarted_and_resumes_in_the_same_run(pipeline):
    project, parallel, _ = pipeline
    before = {r.info.run_id for r in runs_of(project, "base")}
    env = {**project.env, "SLUICE_TEST_FAIL_RANK_AT_EPOCH": "1:4"}  # after epoch 2's checkpoint
    out = Project(project.path, env).stage("train")
    assert "failed (exitcode: 1) local_rank: 1" in out.stderr
    assert "resuming from checkpoint at epoch 2" in out.stderr
    (run,) = [r for r in runs_of(project, "base") if r.info.run_id not in before]
    assert run.info.status == "FINISHED"
    assert run.data.tags["sluice.resumed_from_epoch"] == "2"
    client = project.mlflow_client()
    for metric in ("train_loss", "val_loss", "lr"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
        assert sorted(steps) == list(range(1, EPOCHS + 1)), metric  # none twice
    assert weights_sha(project) == parallel["sha"]  # the resume is exact
