"""End-to-end: the real `dvc repro` on breast-cancer, then every check in pipeline_checks."""

import pytest
from pipeline_checks import *  # noqa: F403  (the shared checks are collected here)
from pipeline_checks import check_family_serves, run_pipeline


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return run_pipeline(tmp_path_factory, "breast-cancer")


def test_default_tabm_challenger_is_predicted_and_served(pipeline):
    project, _ = pipeline
    check_family_serves(project, "tabm")


def test_evaluate_is_never_restored_from_the_run_cache(pipeline):
    """Seed 0, seed 1, seed 0 again: DVC restores what its run cache holds (the split), but
    evaluate runs, so reports/registered.json and the registry's challenger agree; a forced
    re-run of evaluate on the same models registers nothing twice."""
    project, _ = pipeline
    client = project.mlflow_client()
    name = project.read_json("reports/registered.json")["model_name"]
    project.set_params({"seed": 1})
    project.run("dvc", "repro")
    project.set_params({"seed": 0})
    result = project.run("dvc", "repro")
    assert "Stage 'split' is cached" in result.stdout  # the run cache is in use
    assert "Stage 'evaluate' is cached" not in result.stdout
    assert "Running stage 'evaluate'" in result.stdout
    registered = project.read_json("reports/registered.json")
    challenger = client.get_model_version_by_alias(name, "challenger")
    assert str(challenger.version) == registered["versions"][registered["challenger"]["role"]]
    before = {v.version for v in client.search_model_versions(f"name='{name}'")}
    project.run("dvc", "repro", "--force", "--single-item", "evaluate")
    again = project.read_json("reports/registered.json")
    assert again["versions"] == registered["versions"]  # the same models: their versions again
    assert {v.version for v in client.search_model_versions(f"name='{name}'")} == before
