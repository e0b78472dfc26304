"""Aliases and their history, kept in the MLflow registry itself, changed under the registry
lock (:mod:`sluice.tracking.lock`).

History entries are JSON tags on model versions, off the registered model's Tags table, and the
latest moves are a table in its description (:mod:`sluice.tracking.history`).

A change is a list of writes applied in order (:func:`apply_writes`): first the history entry, the
record that makes a move undoable (with the description's table); then tags on versions; last
the alias, the one write users see. When a write fails, the earlier ones are undone newest first
(best effort, and the error says what could not be undone), so the registry is left as it was, or
with alias, history and tags agreeing.
"""

from __future__ import annotations

import getpass
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sluice.errors import SluiceError
from sluice.tracking.history import StoredHistory, check_entry_fits, history_writes, read_stored
from sluice.tracking.lock import is_refusal, mlflow_cause, registry_lock
from sluice.tracking.writes import Write, apply_writes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegistryState:
    """A registered model's aliases and history, and where the history is kept."""

    aliases: dict[str, str]
    history: list[dict[str, Any]]
    stored: StoredHistory


def _client():
    import mlflow

    return mlflow.MlflowClient()


def read_state(name: str) -> RegistryState:
    """Aliases (alias -> version) and every recorded alias move of ``name``, oldest first."""
    client = _client()
    model = client.get_registered_model(name)
    stored = read_stored(model, _search_versions(client, name))
    return RegistryState(_aliases(model), stored.entries, stored)


def read_history(name: str) -> list[dict[str, Any]]:
    """Every recorded alias move of ``name``, oldest first."""
    return read_state(name).history


def aliases(name: str) -> dict[str, str]:
    """Alias -> version of the registered model."""
    return _aliases(_client().get_registered_model(name))


def _aliases(model: Any) -> dict[str, str]:
    return {alias: str(version) for alias, version in (model.aliases or {}).items()}


def new_entry(
    state: RegistryState, alias: str, version: str, record: dict[str, Any]
) -> dict[str, Any]:
    """The next history entry: a move of ``alias`` from its current version to ``version``."""
    return {
        "seq": state.stored.last_seq + 1,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "alias": alias,
        "from": state.aliases.get(alias),
        "to": str(version),
        "user": _user(),
        **record,
    }


def entry_writes(name: str, state: RegistryState, entry: dict[str, Any]) -> list[Write]:
    """The writes that record ``entry`` (see :func:`sluice.tracking.history.history_writes`)."""
    return history_writes(_client(), name, state.stored, entry)


def version_tag_writes(
    name: str, version: str, tags: dict[str, Any], previous: dict[str, str]
) -> list[Write]:
    """Set ``tags`` on a version; each undone by restoring its ``previous`` value (or none)."""
    client = _client()
    return [
        _version_tag_write(client, name, str(version), key, str(value), previous.get(key))
        for key, value in tags.items()
    ]


def _version_tag_write(
    client, name: str, version: str, key: str, value: str, previous: str | None
) -> Write:
    def do() -> None:
        client.set_model_version_tag(name, version, key, value)

    def undo() -> None:
        if previous is None:
            client.delete_model_version_tag(name, version, key)
        else:
            client.set_model_version_tag(name, version, key, previous)

    return Write(f"tag {key} of version {version}", do, undo)


def alias_write(name: str, alias: str, version: str, previous: str | None) -> Write:
    """Point ``alias`` at ``version``; undone by pointing it back (or deleting it)."""
    client = _client()

    def undo() -> None:
        if previous is None:
            client.delete_registered_model_alias(name, alias)
        else:
            client.set_registered_model_alias(name, alias, previous)

    return Write(
        f"alias {alias} -> version {version}",
        lambda: client.set_registered_model_alias(name, alias, str(version)),
        undo,
    )


def record_alias_move(name: str, alias: str, version: str, **record: Any) -> dict[str, Any]:
    """Take the registry lock, record the move of ``alias`` to ``version`` and make it."""
    with registry_lock(name) as lease:
        state = read_state(name)
        entry = new_entry(state, alias, version, record)
        check_entry_fits(entry)
        writes = [
            *entry_writes(name, state, entry),
            alias_write(name, alias, version, state.aliases.get(alias)),
        ]
        lease.ensure()
        apply_writes(writes, f"moving alias {alias} of {name} to version {version}")
    return entry


def last_promotion(history: list[dict[str, Any]], alias: str = "champion") -> dict[str, Any] | None:
    """The most recent move of ``alias`` that a rollback has not undone yet (None if none).

    Promotions stack up; each rollback undoes the newest one left, so repeated rollbacks walk
    back through the champions. Entries that did not move the alias are skipped.
    """
    stack: list[dict[str, Any]] = []
    for entry in history:
        if entry.get("alias") != alias or entry.get("moved") is False:
            continue
        if entry.get("action") == "rollback":
            if stack:
                stack.pop()
        else:
            stack.append(entry)
    return stack[-1] if stack else None


def require_model(name: str) -> None:
    """Raise a SluiceError that says what to do when ``name`` is not a registered model."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        _client().get_registered_model(name)
    except MlflowException as exc:
        if is_refusal(exc):
            raise
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise SluiceError(
                f"could not read registered model '{name}' ({mlflow_cause(exc)}); nothing was "
                "changed, try again"
            ) from None
        raise SluiceError(
            f"no registered model named '{name}' in the MLflow store ({mlflow.get_tracking_uri()});"
            " run the pipeline (dvc repro) to register versions, or pass --model-name"
        ) from None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")


def list_versions(name: str) -> list[Any]:
    """Every registered version of ``name`` (ModelVersion objects), newest first."""
    found = _search_versions(_client(), name)
    return sorted(found, key=lambda v: int(v.version), reverse=True)


def _search_versions(client, name: str) -> list[Any]:
    """Every registered version of ``name``, with its tags, in the order the store gives."""
    found, token = [], None
    while True:
        page = client.search_model_versions(f"name = '{name}'", page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            return found
