"""Checks of a real `dvc repro` on small settings, the way a user would look at the results.

Each ``test_pipeline_<data>.py`` module runs the pipeline once (its ``pipeline`` fixture) and
imports these checks, so that the two datasets can run on different test workers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import Project, make_project
from lifecycle.test_serve import serve_rows

from sluice.model.bundle import load_bundle

pytestmark = pytest.mark.slow

HEADLINE = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "pr_auc", "log_loss")
MODELS = ("base", "finetuned")
REFERENCES = ("logreg", "hgb")  # params.yaml evaluate.reference (tests/conftest.py: logreg)
ROLES = (*MODELS, *REFERENCES)
VERDICTS = {"worse", "better", "no clear difference", "undefined"}


def check_family_serves(project, family: str) -> None:
    """After a `dvc repro` with ``family``: both models are of it, the challenger is registered,
    and once promoted it is scored alike by its bundle, `sluice predict` and a served process."""
    for role in ("base", "finetuned"):
        assert project.read_json(f"models/{role}/model.json")["arch"] == family
    registered = project.read_json("reports/registered.json")
    name, challenger = registered["model_name"], registered["challenger"]["role"]
    version = registered["versions"][challenger]
    client = project.mlflow_client()
    assert client.get_model_version(name, version).tags["sluice.role"] == challenger

    # An earlier check may have promoted this version already: then there is nothing to do.
    promoted = project.run(
        "sluice", "promote", "--version", version, "--force", "--reason", family, check=False
    )
    assert promoted.returncode == 0 or (
        promoted.returncode == 3 and "is already the champion" in promoted.stdout + promoted.stderr
    ), promoted.stdout + promoted.stderr
    assert str(client.get_model_version_by_alias(name, "champion").version) == version
    test = pd.read_parquet(project.path / "data/processed/test.parquet")
    rows = test.drop(columns=["target"]).head(20)
    rows.to_csv(project.path / "rows.csv", index=False)
    project.run("sluice", "predict", "rows.csv", "-o", "preds.csv")
    predicted = pd.read_csv(project.path / "preds.csv")
    expected = load_bundle(project.path / "models" / challenger).predict_proba(rows)
    np.testing.assert_allclose(predicted[["prob_0", "prob_1"]].to_numpy(), expected, atol=1e-6)

    env = {**project.env, "MLFLOW_TRACKING_URI": project.tracking_uri}
    served = serve_rows(project.path, env, f"models:/{name}@champion", rows)
    np.testing.assert_allclose(served[["0", "1"]].to_numpy(), expected, atol=1e-6)


def run_pipeline(tmp_path_factory, dataset: str) -> tuple[Project, str]:
    """One full pipeline run on a built-in dataset, shared by the checks below."""
    params = {
        "data": {"name": dataset},
        "evaluate": {"reference": list(REFERENCES), "figures": True},
    }
    project = make_project(tmp_path_factory.mktemp(dataset) / "proj", params)
    result = project.run("dvc", "repro")
    return project, result.stdout + result.stderr


def test_summary_table_lists_every_model(pipeline):
    project, output = pipeline
    assert "sluice: test split (95 % bootstrap intervals)" in output
    rows = [line.split() for line in output.splitlines() if "│" in line]
    shown = {cells[1] for cells in rows if len(cells) > 1}
    assert set(ROLES) <= shown
    challenger = project.read_json("reports/registered.json")["challenger"]["role"]
    for ref in REFERENCES:  # one plain line per reference, saying how the challenger compares
        (line,) = [x for x in output.splitlines() if f" {ref} on test roc_auc: " in x]
        assert line.startswith(f"challenger {challenger} ")
        assert "95 % interval [" in line


def test_the_challenger_is_judged_against_both_references(pipeline):
    project, output = pipeline
    chosen = project.read_json("reports/registered.json")["challenger"]
    vs = chosen["vs_references"]
    assert list(vs) == list(REFERENCES)
    metrics = project.read_json("reports/metrics.json")
    for ref, c in vs.items():
        assert c["metric"] == "roc_auc" and c["n_boot"] == 50  # FAST_PARAMS bootstrap
        assert c["verdict"] in VERDICTS
        assert c["challenger"] == pytest.approx(metrics[chosen["role"]]["roc_auc"])
        assert c["reference"] == pytest.approx(metrics[ref]["roc_auc"])
        assert c["low"] <= c["high"]
        assert (c["verdict"] == "worse") == (c["high"] < 0)
        worse_line = f"challenger {chosen['role']} is worse than {ref} on test roc_auc"
        assert (worse_line in output) == (c["verdict"] == "worse")
    client = project.mlflow_client()
    experiment = client.get_experiment_by_name("sluice")
    runs = client.search_runs([experiment.experiment_id])
    runs = {r.data.tags["sluice.role"]: r for r in runs if "sluice.role" in r.data.tags}
    run = runs[chosen["role"]]
    worse = [ref for ref, c in vs.items() if c["verdict"] == "worse"]
    assert run.data.tags["sluice.worse_than_reference"] == (",".join(worse) or "none")
    for ref, c in vs.items():
        assert run.data.tags[f"sluice.vs_{ref}"] == c["verdict"]
        assert run.data.metrics[f"test_roc_auc_vs_{ref}_delta"] == pytest.approx(c["delta"])
        assert run.data.metrics[f"test_roc_auc_vs_{ref}_delta_ci_high"] == pytest.approx(c["high"])
    models = {"logreg": "LogisticRegression", "hgb": "HistGradientBoostingClassifier"}
    for ref in REFERENCES:
        assert runs[ref].data.tags["sluice.reference"] == "true"
        assert runs[ref].data.params["model"] == models[ref]
        assert runs[ref].data.params["random_state"] == "0"  # params.seed


def test_metrics_file_has_every_metric_for_every_model(pipeline):
    project, _ = pipeline
    metrics = project.read_json("reports/metrics.json")
    assert set(metrics) == set(ROLES)
    n_classes = len(project.read_json("reports/clean.json")["classes"])
    for role in ROLES:
        m = metrics[role]
        for key in (*HEADLINE, "precision_macro", "recall_macro"):
            assert isinstance(m[key], float), (role, key)
        assert 0.5 < m["roc_auc"] <= 1.0
        assert len(m["per_class"]) == n_classes
        assert len(m["confusion_matrix"]) == n_classes
        lo, hi = m["ci95"]["f1_macro"]
        assert lo <= m["f1_macro"] <= hi


def test_plot_data_is_declared_and_readable_by_dvc(pipeline):
    project, _ = pipeline
    for role in ROLES:
        roc = project.read_json(f"reports/plots/roc_{role}.json")
        assert roc[0]["fpr"] == 0.0 and roc[-1]["tpr"] == 1.0
        assert (project.path / f"reports/plots/confusion_{role}.csv").exists()
    shown = project.run("dvc", "metrics", "show", "--json").stdout
    assert "f1_macro" in shown
    project.run("dvc", "plots", "show", "--json")


def test_every_model_is_a_tracked_run_with_curves_and_plots(pipeline):
    project, _ = pipeline
    client = project.mlflow_client()
    experiment = client.get_experiment_by_name("sluice")
    # MLflow's UI opens a model-training experiment on its runs, not on GenAI traces
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([experiment.experiment_id])
    runs = {r.data.tags["sluice.role"]: r for r in runs if "sluice.role" in r.data.tags}
    assert set(runs) == set(ROLES)
    for role in ROLES:
        run = runs[role]
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.source.git.commit"]
        assert 0.5 < run.data.metrics["test_roc_auc"] <= 1.0
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "eval")}
        assert {"eval/roc.png", "eval/roc.json", "eval/confusion.png", "eval/pr.png"} <= artifacts
    for role in MODELS:
        curve = client.get_metric_history(runs[role].info.run_id, "val_f1_macro")
        assert len(curve) >= 2 and [m.step for m in curve] == sorted(m.step for m in curve)
        inputs = runs[role].inputs.dataset_inputs
        assert {i.dataset.name for i in inputs} >= {"val"}
    assert "params_frozen" in runs["finetuned"].data.params
    assert int(runs["finetuned"].data.params["params_frozen"]) > 0


def test_versions_are_registered_with_roles_and_a_challenger(pipeline):
    project, _ = pipeline
    client = project.mlflow_client()
    registered = project.read_json("reports/registered.json")
    name = registered["model_name"]
    versions = {v.tags["sluice.role"]: v for v in client.search_model_versions(f"name='{name}'")}
    assert set(versions) == set(MODELS)  # references are not registered
    assert {str(v.version) for v in versions.values()} == set(registered["versions"].values())
    for version in versions.values():
        assert float(version.tags["test_roc_auc"]) > 0.5
        assert version.tags["sluice.lineage.train_data_md5"]
        about = version.description  # one paragraph on the version's page
        role, run_id = version.tags["sluice.role"], version.run_id
        assert about.startswith(f"The {role} ") and run_id in about
        assert f"roc_auc {float(version.tags['test_roc_auc']):.4f}" in about
    challenger = client.get_model_version_by_alias(name, "challenger")
    chosen = registered["challenger"]
    assert chosen["chosen_on"] == "val" and challenger.tags["sluice.role"] == chosen["role"]
    # Chosen on validation scores, never on the test scores it then reports.
    scores = chosen["val_scores"]
    metric = chosen["metric"]
    assert scores[chosen["role"]][metric] == max(s[metric] for s in scores.values())
    assert challenger.tags[f"val_{metric}"] == f"{scores[chosen['role']][metric]:.6f}"


def test_second_repro_skips_every_stage(pipeline):
    project, _ = pipeline
    again = project.run("dvc", "repro")
    assert "Data and pipelines are up to date" in again.stdout + again.stderr
    assert "Running stage" not in again.stdout + again.stderr


def test_changed_param_reruns_only_downstream_stages(pipeline):
    project, _ = pipeline
    project.set_params({"evaluate": {"bootstrap": 20}})
    out = project.run("dvc", "repro").stdout
    assert "Running stage 'evaluate'" in out
    for stage in ("clean", "split", "resample", "train", "finetune"):
        assert f"Running stage '{stage}'" not in out


def test_promoted_champion_can_be_fine_tuned_from_the_registry(pipeline):
    project, _ = pipeline
    promoted = project.run("sluice", "promote")
    assert "champion" in promoted.stdout
    client = project.mlflow_client()
    name = project.read_json("reports/registered.json")["model_name"]
    champion = client.get_model_version_by_alias(name, "champion")
    project.set_params({"finetune": {"init_from": f"models:/{name}@champion"}})
    out = project.run("dvc", "repro").stdout
    assert "Running stage 'finetune'" in out and "Running stage 'train'" not in out
    new_version = project.read_json("reports/registered.json")["versions"]["finetuned"]
    tags = client.get_model_version(name, new_version).tags
    assert tags["sluice.lineage.parent_version"] == str(champion.version)
    assert tags["sluice.lineage.init_from"] == f"models:/{name}@champion"
    assert tags["sluice.lineage.git_commit"]
    assert "dvc_md5.train" in " ".join(tags)
