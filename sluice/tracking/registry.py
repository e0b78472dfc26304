"""Aliases and their history, kept in the MLflow registry itself (tags), changed under the
registry lock (:mod:`sluice.tracking.lock`).

History entries are tags ``sluice.history.000001`` ... on the registered model, each a JSON record
of one alias move (or of a refused attempt, with ``"moved": false``).

A change is a list of writes applied in order (:func:`apply_writes`): first the history entry, the
record that makes a move undoable; then tags on versions; last the alias, the one write users see.
When a write fails, the earlier ones are undone newest first (best effort, and the error says what
could not be undone), so the registry is left as it was, or with alias, history and tags agreeing.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sluice.errors import SluiceError
from sluice.tracking.lock import is_refusal, mlflow_cause, registry_lock

log = logging.getLogger(__name__)

HISTORY_PREFIX = "sluice.history."
# The longest tag value a registered model keeps: MLflow's SQL schema declares
# registered_model_tags.value as VARCHAR(5000) (SqlRegisteredModelTag in
# mlflow/store/model_registry/dbmodels/models.py). PostgreSQL refuses a longer value, SQLite
# keeps it; MLflow's own check (MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH) lets up to 100,000 through.
TAG_VALUE_LIMIT = 5000


@dataclass(frozen=True)
class RegistryState:
    """A registered model's aliases and history, read in one call."""

    aliases: dict[str, str]
    history: list[dict[str, Any]]


@dataclass(frozen=True)
class Write:
    """One registry write, what it is (for messages), and the write that undoes it."""

    what: str
    do: Callable[[], None]
    undo: Callable[[], None]


def _client():
    import mlflow

    return mlflow.MlflowClient()


def read_state(name: str) -> RegistryState:
    """Aliases (alias -> version) and every recorded alias move of ``name``, oldest first."""
    model = _client().get_registered_model(name)
    entries = sorted((k, v) for k, v in model.tags.items() if k.startswith(HISTORY_PREFIX))
    found = {alias: str(version) for alias, version in (model.aliases or {}).items()}
    return RegistryState(found, [json.loads(v) for _, v in entries])


def read_history(name: str) -> list[dict[str, Any]]:
    """Every recorded alias move of ``name``, oldest first."""
    return read_state(name).history


def aliases(name: str) -> dict[str, str]:
    """Alias -> version of the registered model."""
    return read_state(name).aliases


def new_entry(
    state: RegistryState, alias: str, version: str, record: dict[str, Any]
) -> dict[str, Any]:
    """The next history entry: a move of ``alias`` from its current version to ``version``."""
    seq = max((int(e.get("seq", 0)) for e in state.history), default=0) + 1
    return {
        "seq": seq,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "alias": alias,
        "from": state.aliases.get(alias),
        "to": str(version),
        "user": _user(),
        **record,
    }


def check_entry_fits(entry: dict[str, Any]) -> None:
    """Raise SluiceError, before anything is written, if the registry cannot keep ``entry``."""
    size = len(json.dumps(entry))
    if size <= TAG_VALUE_LIMIT:
        return
    reason = str(entry.get("reason", ""))
    keep = max(len(reason) - (size - TAG_VALUE_LIMIT), 0)
    raise SluiceError(
        f"the reason is too long: the history entry would be {size} characters ({len(reason)} "
        f"of them the reason) and a registry tag keeps at most {TAG_VALUE_LIMIT}; shorten the "
        f"reason (--reason) to at most {keep} characters (nothing was changed)"
    )


def history_write(name: str, entry: dict[str, Any]) -> Write:
    """Write history entry ``entry``; undone by deleting it."""
    client, key = _client(), f"{HISTORY_PREFIX}{entry['seq']:06d}"
    return Write(
        f"history entry #{entry['seq']} (tag {key} of {name})",
        lambda: client.set_registered_model_tag(name, key, json.dumps(entry)),
        lambda: client.delete_registered_model_tag(name, key),
    )


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


def apply_writes(writes: list[Write], action: str) -> None:
    """Apply ``writes`` in order; when one fails, undo the earlier ones and raise SluiceError."""
    from mlflow.exceptions import MlflowException

    for done, write in enumerate(writes):
        try:
            write.do()
        except MlflowException as exc:
            left = _undo(writes[:done])
            raise SluiceError(_failure(action, write, exc, done, left)) from None


def _undo(done: list[Write]) -> list[str]:
    """Undo ``done`` newest first; return what could not be undone."""
    from mlflow.exceptions import MlflowException

    left = []
    for write in reversed(done):
        try:
            write.undo()
        except MlflowException as exc:
            left.append(f"{write.what} ({mlflow_cause(exc)})")
    return left


def _failure(action: str, write: Write, exc: Exception, done: int, left: list[str]) -> str:
    """One line: what failed, and whether the registry is back as it was."""
    head = f"{action} failed at {write.what} ({mlflow_cause(exc)})"
    if not left:
        undone = "; its earlier writes were undone" if done else ""
        return f"{head}{undone}; nothing was changed, try again"
    return (
        f"{head}, and undoing its earlier writes failed too, so these remain: {'; '.join(left)}. "
        "The registry may disagree with itself (see `sluice history` and `sluice status`): "
        "remove what remains by hand, or run the command again"
    )


def record_alias_move(name: str, alias: str, version: str, **record: Any) -> dict[str, Any]:
    """Take the registry lock, record the move of ``alias`` to ``version`` and make it."""
    with registry_lock(name) as lease:
        state = read_state(name)
        entry = new_entry(state, alias, version, record)
        check_entry_fits(entry)
        writes = [
            history_write(name, entry),
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
    client = _client()
    found, token = [], None
    while True:
        page = client.search_model_versions(f"name = '{name}'", page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            break
    return sorted(found, key=lambda v: int(v.version), reverse=True)
