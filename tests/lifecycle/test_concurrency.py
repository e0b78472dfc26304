"""Two real `sluice promote` processes at once on one SQLite store stay consistent."""

from __future__ import annotations

import subprocess

import mlflow
import pytest
from typer.testing import CliRunner

from sluice.cli import EXIT_REFUSED, app
from sluice.tracking.registry import aliases, read_history

from .conftest import BIN, VERSION


@pytest.mark.slow
def test_concurrent_promotions_leave_one_consistent_champion(project):
    assert (
        CliRunner().invoke(app, ["promote", "--version", VERSION["weak"], "--force"]).exit_code == 0
    )
    # Both candidates beat the weak champion; only the lock makes the second one face the first.
    procs = [
        subprocess.Popen(
            [str(BIN / "sluice"), "promote", "--version", VERSION[role]],
            cwd=project.root,
            env=project.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for role in ("good", "good2")
    ]
    results = [(p.wait(timeout=180), *p.communicate()) for p in procs]
    codes = [code for code, _, _ in results]
    assert set(codes) <= {0, EXIT_REFUSED}, results
    assert 0 in codes, results

    history = read_history(project.name)
    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))
    champion_entries = [e for e in history if e["alias"] == "champion"]
    assert len(champion_entries) == 1 + len(procs)  # the forced one + one per process
    moves = [e for e in champion_entries if e.get("moved", True)]
    assert len(moves) == 1 + codes.count(0)
    for before, after in zip(moves, moves[1:], strict=False):
        assert after["from"] == before["to"]  # each gate faced the champion of its moment
    assert aliases(project.name)["champion"] == moves[-1]["to"]
    client = mlflow.MlflowClient()
    for entry in champion_entries[1:]:
        verdict = entry["verdict"]
        assert verdict["mode"] == "compare" and verdict["passed"] is entry.get("moved", True)
        faced = client.get_model_version(project.name, entry["from"]).tags["test_roc_auc"]
        assert verdict["champion"] == pytest.approx(float(faced), abs=1e-6)
    assert not client.search_registered_models(f"name = '{project.name}.lock'")
