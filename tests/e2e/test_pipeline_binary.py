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
