"""Gated promotion, forced promotion, rollback, status and history against a real store."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from sluice.cli import EXIT_REFUSED, app
from sluice.tracking.registry import aliases, last_promotion, read_history

from .conftest import VERSION

runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, list(args))


def champion(project) -> str | None:
    return aliases(project.name).get("champion")


def champion_moves(project) -> list[dict]:
    return [e for e in read_history(project.name) if e["alias"] == "champion"]


def version_tags(project, version: str) -> dict[str, str]:
    import mlflow

    return mlflow.MlflowClient().get_model_version(project.name, version).tags


def test_first_candidate_that_reaches_the_floors_becomes_champion(project):
    result = cli("promote")  # the challenger: version 2 (good)
    assert result.exit_code == 0, result.output
    assert champion(project) == VERSION["good"]
    (entry,) = champion_moves(project)
    assert entry["action"] == "promote" and entry["from"] is None and entry["to"] == "2"
    assert entry["verdict"]["mode"] == "floors" and entry["verdict"]["passed"] is True
    assert entry["forced"] is False and entry["user"]
    assert "promoted" in result.stdout and "floor roc_auc" in result.stdout


def test_first_candidate_below_the_floors_is_refused(project):
    result = cli("promote", "--version", VERSION["weak"])
    assert result.exit_code == EXIT_REFUSED, result.output
    assert champion(project) is None
    (entry,) = champion_moves(project)
    assert entry["action"] == "refused" and entry["moved"] is False
    assert entry["verdict"]["floors"][0]["ok"] is False
    assert "misses the floor" in result.stdout
    assert version_tags(project, VERSION["weak"])["sluice.gate.passed"] == "false"


def test_better_challenger_wins_the_gate_against_the_champion(project):
    assert cli("promote", "--version", VERSION["weak"], "--force").exit_code == 0
    result = cli("promote")
    assert result.exit_code == 0, result.output
    assert champion(project) == VERSION["good"]
    last = champion_moves(project)[-1]
    v = last["verdict"]
    assert last["from"] == VERSION["weak"] and v["mode"] == "compare" and v["passed"] is True
    assert v["ci_low"] > 0 and v["delta"] == pytest.approx(v["challenger"] - v["champion"])
    assert all(g["ok"] for g in v["guards"])
    tags = version_tags(project, VERSION["good"])
    assert tags["sluice.gate.passed"] == "true" and tags["sluice.gate.forced"] == "false"
    assert json.loads(tags["sluice.gate.verdict"])["delta"] == pytest.approx(v["delta"])


def test_worse_challenger_is_refused_and_the_alias_does_not_move(project):
    assert cli("promote").exit_code == 0
    before = len(read_history(project.name))
    result = cli("promote", "--version", VERSION["weak"])
    assert result.exit_code == EXIT_REFUSED, result.output
    assert champion(project) == VERSION["good"]
    history = read_history(project.name)
    assert len(history) == before + 1
    assert history[-1]["action"] == "refused" and history[-1]["verdict"]["delta"] < 0
    assert "refused" in result.stdout and "below min_delta" in result.stdout


def test_forced_promotion_is_recorded_as_forced_with_its_reason(project):
    assert cli("promote").exit_code == 0
    result = cli("promote", "--version", VERSION["weak"], "--force", "--reason", "hotfix 42")
    assert result.exit_code == 0, result.output
    assert champion(project) == VERSION["weak"]
    last = champion_moves(project)[-1]
    assert last["forced"] is True and last["reason"] == "hotfix 42"
    assert last["verdict"]["passed"] is False  # the gate's opinion is kept
    assert version_tags(project, VERSION["weak"])["sluice.gate.forced"] == "true"
    assert "forced" in cli("history").stdout


def test_promoting_the_champion_again_changes_nothing(project):
    assert cli("promote").exit_code == 0
    before = read_history(project.name)
    result = cli("promote")
    assert result.exit_code == EXIT_REFUSED
    assert "already the champion" in result.stdout
    assert read_history(project.name) == before


def test_rollback_with_no_history_says_so(project):
    result = cli("rollback")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no promotion of lifecycle-test to roll back")
    assert len(result.stderr.strip().splitlines()) == 1


def test_rollback_walks_back_through_the_champions(project):
    assert cli("promote", "--version", VERSION["weak"], "--force").exit_code == 0
    assert cli("promote").exit_code == 0  # 1 -> 2 through the gate
    assert cli("promote", "--version", VERSION["good2"], "--force").exit_code == 0
    assert champion(project) == VERSION["good2"]

    result = cli("rollback", "--reason", "bad canary")
    assert result.exit_code == 0, result.output
    assert champion(project) == VERSION["good"]
    assert cli("rollback").exit_code == 0
    assert champion(project) == VERSION["weak"]
    result = cli("rollback")
    assert result.exit_code == 1 and "first champion" in result.stderr
    assert champion(project) == VERSION["weak"]

    moves = champion_moves(project)
    assert [e["action"] for e in moves] == ["promote"] * 3 + ["rollback"] * 2
    assert moves[3]["reason"] == "bad canary" and moves[3]["undoes"] == moves[2]["seq"]
    assert last_promotion(read_history(project.name))["to"] == VERSION["weak"]


def test_rollback_refuses_when_the_alias_was_moved_outside_sluice(project):
    import mlflow

    assert cli("promote", "--version", VERSION["weak"], "--force").exit_code == 0
    assert cli("promote").exit_code == 0
    mlflow.MlflowClient().set_registered_model_alias(project.name, "champion", VERSION["good2"])
    result = cli("rollback")
    assert result.exit_code == 1 and "moved outside sluice" in result.stderr
    assert champion(project) == VERSION["good2"]


def test_history_lists_every_move_with_seq_and_verdict(project):
    cli("promote", "--version", VERSION["weak"])  # refused by the floors
    cli("promote")
    cli("rollback")  # first champion: nothing recorded
    result = cli("history", "--json")
    assert result.exit_code == 0
    entries = json.loads(result.stdout)
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert [(e["alias"], e.get("action")) for e in entries] == [
        ("challenger", None),
        ("champion", "refused"),
        ("champion", "promote"),
    ]
    table = cli("history", "--alias", "champion").stdout
    assert "refused" in table and "passed" in table and "challenger" not in table


def test_status_shows_versions_aliases_roles_and_metrics(project):
    cli("promote")
    result = cli("status")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for role in ("weak", "good", "good2"):
        assert role in out
    assert "challenger, champion" in out and "roc_auc" in out and "passed" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "--model-name", "nope"], "no registered model named 'nope'"),
        (["promote", "--version", "99"], "not found in the registry"),
        (["promote", "--params", "missing.yaml"], "missing.yaml not found"),
    ],
    ids=["unknown-model", "unknown-version", "missing-params"],
)
def test_mistakes_are_one_line_errors(project, args, message):
    result = cli(*args)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_promote_without_a_test_split_names_the_file(project):
    (project.root / "data" / "processed" / "test.parquet").unlink()
    result = cli("promote")
    assert result.exit_code == 1 and "data/processed/test.parquet not found" in result.stderr
    assert champion(project) is None


def test_real_process_promote_exit_codes(project):
    result = project.run_cli("promote")
    assert result.returncode == 0, result.stderr
    assert "promoted" in result.stdout
    refused = project.run_cli("promote", "--version", VERSION["weak"])
    assert refused.returncode == EXIT_REFUSED and "refused" in refused.stdout
    assert champion(project) == VERSION["good"]


def registry_state(project) -> tuple:
    """Aliases, history and every version's tags: what a failed command must leave alone."""
    import mlflow

    client = mlflow.MlflowClient()
    versions = client.search_model_versions(f"name = '{project.name}'")
    tags = {str(v.version): dict(v.tags) for v in versions}
    return aliases(project.name), read_history(project.name), tags


def test_a_reason_longer_than_the_registry_keeps_is_refused_before_any_write(project):
    from sluice.tracking.history import TAG_VALUE_LIMIT

    assert cli("promote", "--version", VERSION["weak"], "--force").exit_code == 0
    before = registry_state(project)
    result = cli("promote", "--force", "--reason", "x" * TAG_VALUE_LIMIT)
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: the reason is too long") and "nothing was changed" in line
    assert registry_state(project) == before
    # The length the line offers fits exactly (MLflow refuses one character more).
    keep = int(re.search(r"to at most (\d+) characters", line).group(1))
    assert cli("promote", "--force", "--reason", "x" * keep).exit_code == 0
    assert champion(project) == VERSION["good"]
    last = champion_moves(project)[-1]
    assert last["reason"] == "x" * keep and len(json.dumps(last)) == TAG_VALUE_LIMIT


def test_a_rollback_with_a_too_long_reason_changes_nothing(project):
    from sluice.tracking.history import TAG_VALUE_LIMIT

    assert cli("promote", "--version", VERSION["weak"], "--force").exit_code == 0
    assert cli("promote").exit_code == 0
    before = registry_state(project)
    result = cli("rollback", "--reason", "y" * TAG_VALUE_LIMIT)
    assert result.exit_code == 1 and result.stderr.startswith("error: the reason is too long")
    assert registry_state(project) == before
    assert cli("rollback", "--reason", "y" * 100).exit_code == 0
    assert champion(project) == VERSION["weak"]
