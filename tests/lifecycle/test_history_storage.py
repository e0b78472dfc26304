"""Where the alias history lives, checked through the MLflow API on a real store: each entry a
tag on the version it moved the alias to, none in the registered model's Tags table, the latest
moves a bounded Markdown table in its description; a registry an older sluice wrote (entries as
``sluice.history.*`` model tags) reads the same and is migrated by its next move."""

from __future__ import annotations

import json

import mlflow
from typer.testing import CliRunner

from sluice.cli import app
from sluice.tracking.history import LEGACY_PREFIX, MOVE_PREFIX
from sluice.tracking.history_table import (
    DESCRIPTION_LIMIT,
    HEADING,
    MAX_ROWS,
    REASON_CHARS,
    table_seqs,
)
from sluice.tracking.registry import aliases, read_history, record_alias_move

from .conftest import VERSION, to_old_format

runner = CliRunner()


def cli(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code in (0, 3), result.output
    return result


def model_tags(name: str) -> dict[str, str]:
    return mlflow.MlflowClient().get_registered_model(name).tags


def version_entries(name: str) -> list[tuple[str, dict]]:
    """(version, entry) of every ``sluice.move.*`` version tag, by sequence number."""
    found = []
    for version in mlflow.MlflowClient().search_model_versions(f"name = '{name}'"):
        for key, value in version.tags.items():
            if key.startswith(MOVE_PREFIX):
                found.append((str(version.version), json.loads(value)))
    return sorted(found, key=lambda pair: pair[1]["seq"])


def description(name: str) -> str:
    return mlflow.MlflowClient().get_registered_model(name).description or ""


def test_entries_are_version_tags_and_the_description_shows_the_latest(project):
    cli("promote", "--version", VERSION["weak"])  # refused by the floors
    cli("promote")
    cli("promote", "--version", VERSION["good2"], "--force", "--reason", "a | b\n*c*")
    cli("rollback")
    assert not [k for k in model_tags(project.name) if k.startswith(LEGACY_PREFIX)]
    stored = version_entries(project.name)
    assert all(version == entry["to"] for version, entry in stored)  # kept where it points
    history = json.loads(cli("history", "--json").stdout)
    assert [entry for _, entry in stored] == history
    assert [e["seq"] for e in history] == [1, 2, 3, 4, 5]
    text = description(project.name)
    assert text.startswith(HEADING) and table_seqs(text) == [5, 4, 3, 2, 1]
    assert "| 4 |" in text and "| champion | promote | 2 | 3 | refused, forced |" in text
    assert "| a \\| b \\*c\\* |" in text  # user text cannot break the table


def test_an_old_format_registry_reads_the_same_and_its_next_move_migrates_it(project):
    cli("promote", "--version", VERSION["weak"], "--force", "--reason", "baseline")
    cli("promote")
    shown = cli("history").stdout, cli("history", "--json").stdout
    to_old_format(project.name)
    assert [k for k in model_tags(project.name) if k.startswith(LEGACY_PREFIX)]
    assert not version_entries(project.name) and not description(project.name)
    assert (cli("history").stdout, cli("history", "--json").stdout) == shown

    cli("rollback")  # the last promotion is found in the old-format entries
    assert aliases(project.name)["champion"] == VERSION["weak"]
    assert not [k for k in model_tags(project.name) if k.startswith(LEGACY_PREFIX)]
    history = read_history(project.name)
    assert history[:-1] == json.loads(shown[1])
    assert history[-1]["action"] == "rollback" and history[-1]["seq"] == len(history) == 4
    assert [entry for _, entry in version_entries(project.name)] == history
    assert table_seqs(description(project.name)) == [4, 3, 2, 1]


def test_the_description_stays_within_its_limit_and_keeps_peoples_text(project):
    client = mlflow.MlflowClient()
    client.update_registered_model(project.name, "Owned by the fraud team.")
    moves = 2 * MAX_ROWS
    for i in range(moves):
        version = VERSION["good2"] if i % 2 else VERSION["weak"]
        record_alias_move(project.name, "canary", version, reason=f"{i} " + "r" * 300)
    text = description(project.name)
    assert len(text) <= DESCRIPTION_LIMIT
    assert text.startswith(f"Owned by the fraud team.\n\n{HEADING}\n")
    seqs = table_seqs(text)
    assert 0 < len(seqs) <= MAX_ROWS and seqs == list(range(moves + 1, moves + 1 - len(seqs), -1))
    assert f"| {moves - 1} {'r' * (REASON_CHARS - 2 - len(str(moves - 1)))}… |" in text
    assert len(read_history(project.name)) == moves + 1  # every entry, in full
    assert read_history(project.name)[-1]["reason"] == f"{moves - 1} " + "r" * 300


def test_a_number_is_not_drawn_twice_after_its_version_is_deleted(project):
    record_alias_move(project.name, "canary", VERSION["good2"])  # entry 2, kept on version 3
    mlflow.MlflowClient().delete_model_version(project.name, VERSION["good2"])
    assert [e["seq"] for e in read_history(project.name)] == [1]  # it went with its version
    entry = record_alias_move(project.name, "canary", VERSION["weak"])
    assert entry["seq"] == 3  # the description's table still showed number 2
    assert table_seqs(description(project.name)) == [3, 1]
