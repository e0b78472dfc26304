"""No secret is shown: URL passwords are masked in error lines, log lines and logged params."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sluice.config import flatten
from sluice.errors import mask_secrets


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            "postgresql+psycopg://optuna:pa%2Fss@127.0.0.1:5433/optuna",
            "postgresql+psycopg://optuna:***@127.0.0.1:5433/optuna",
        ),
        ("server http://alice:pw@h:5000 down", "server http://alice:***@h:5000 down"),
        ("http://127.0.0.1:5000 and http://bob@h/x", "http://127.0.0.1:5000 and http://bob@h/x"),
        ("a ratio 3:4@noon", "a ratio 3:4@noon"),  # not a URL
    ],
)
def test_mask_secrets(text, masked):
    assert mask_secrets(text) == masked


def test_flattened_params_mask_passwords():
    params = {"tune": {"storage": "postgresql://u:hunter2@127.0.0.1/db", "trials": 3}}
    assert flatten(params) == {
        "tune.storage": "postgresql://u:***@127.0.0.1/db",
        "tune.trials": 3,
    }


def test_error_and_log_lines_of_a_command_mask_passwords():
    code = """
import logging
from sluice.errors import SluiceError, report_errors

@report_errors
def main():
    logging.getLogger("sluice.x").info("connecting to %s", "http://u:hunter2@127.0.0.1:1")
    raise SluiceError("http://u:hunter2@127.0.0.1:1 is not reachable")

main()
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "connecting to http://u:***@127.0.0.1:1",
        "error: http://u:***@127.0.0.1:1 is not reachable",
    ]


def test_a_password_in_tune_storage_is_refused_without_showing_it(tmp_path):
    """params.yaml's values land in dvc.lock and git: the password belongs in PGPASSFILE."""
    from conftest import params_error

    url = "postgresql+psycopg://optuna:hunter2@127.0.0.1:5433/optuna"
    line = params_error(tmp_path, f"tune:\n  storage: {url}\n")
    assert "'tune.storage'" in line and "PGPASSFILE" in line
    assert "hunter2" not in line and "optuna:***@127.0.0.1" in line
