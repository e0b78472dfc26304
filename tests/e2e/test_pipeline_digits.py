"""End-to-end: the real `dvc repro` on digits-lt, then every check in pipeline_checks."""

import pytest
from pipeline_checks import *  # noqa: F403  (the shared checks are collected here)
from pipeline_checks import run_pipeline


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return run_pipeline(tmp_path_factory, "digits-lt")
