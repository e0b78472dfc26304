"""Aliases and their history, kept in the MLflow registry itself (tags), under a registry lock.

The lock is a registered model named ``<name>.lock``: creating a registered model is atomic in
every MLflow store (a unique key), so only one process holds it, on SQLite, PostgreSQL or a
tracking server alike. History entries are tags ``sluice.history.000001`` ... on the registered
model, each a JSON record of one alias move (or of a refused attempt, with ``"moved": false``).
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

from sluice.errors import SluiceError

log = logging.getLogger(__name__)

HISTORY_PREFIX = "sluice.history."
STALE_LOCK_S = 300.0


@contextmanager
def registry_lock(name: str, timeout_s: float = 120.0) -> Iterator[None]:
    """Hold the registry lock of model ``name`` for the duration of the block."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    lock_name = f"{name}.lock"
    owner = f"{socket.gethostname()}:{os.getpid()}"
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            client.create_registered_model(
                lock_name,
                tags={"sluice.lock_owner": owner},
                description="sluice registry lock (transient)",
            )
            break
        except MlflowException as exc:
            if not _lock_taken(exc):
                raise
            _break_if_stale(client, lock_name)
            if time.monotonic() > deadline:
                raise SluiceError(
                    f"registry lock {lock_name} is held by another process; try again, or delete "
                    "that registered model if its owner died"
                ) from None
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
    try:
        yield
    finally:
        client.delete_registered_model(lock_name)


def _lock_taken(exc) -> bool:
    """Creating the lock failed because another process holds it, or released it meanwhile:
    MLflow's SQL store looks the existing model up to report the clash, and on a busy server
    it may already be gone (RESOURCE_DOES_NOT_EXIST)."""
    text = str(exc)
    return (
        "already exists" in text.lower()
        or "ALREADY_EXISTS" in text
        or exc.error_code == "RESOURCE_DOES_NOT_EXIST"
    )


def _break_if_stale(client, lock_name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        held = client.get_registered_model(lock_name)
    except MlflowException:
        return
    age_s = time.time() - held.creation_timestamp / 1000.0
    if age_s > STALE_LOCK_S:
        log.warning("breaking stale registry lock %s (%.0f s old)", lock_name, age_s)
        with suppress(MlflowException):
            client.delete_registered_model(lock_name)


def read_history(name: str) -> list[dict[str, Any]]:
    """Every recorded alias move of ``name``, oldest first."""
    import mlflow

    model = mlflow.MlflowClient().get_registered_model(name)
    entries = [(k, v) for k, v in model.tags.items() if k.startswith(HISTORY_PREFIX)]
    return [json.loads(v) for _, v in sorted(entries)]


def aliases(name: str) -> dict[str, str]:
    """Alias -> version of the registered model."""
    import mlflow

    model = mlflow.MlflowClient().get_registered_model(name)
    return {alias: str(version) for alias, version in (model.aliases or {}).items()}


def move_alias_locked(name: str, alias: str, version: str, **record: Any) -> dict[str, Any]:
    """Point ``alias`` at ``version`` and append the move to the history (lock already held)."""
    import mlflow

    entry = _new_entry(name, alias, version, record)
    mlflow.MlflowClient().set_registered_model_alias(name, alias, str(version))
    _write_entry(name, entry)
    return entry


def record_event_locked(name: str, alias: str, version: str, **record: Any) -> dict[str, Any]:
    """Append a history entry that does *not* move ``alias`` (e.g. a refused promotion)."""
    entry = _new_entry(name, alias, version, {"moved": False, **record})
    _write_entry(name, entry)
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
        mlflow.MlflowClient().get_registered_model(name)
    except MlflowException:
        raise SluiceError(
            f"no registered model named '{name}' in the MLflow store ({mlflow.get_tracking_uri()});"
            " run the pipeline (dvc repro) to register versions, or pass --model-name"
        ) from None


def set_version_tags(name: str, version: str, tags: dict[str, Any]) -> None:
    """Set tags on one registered version (values as strings)."""
    import mlflow

    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))


def _new_entry(name: str, alias: str, version: str, record: dict[str, Any]) -> dict[str, Any]:
    seq = max((int(e.get("seq", 0)) for e in read_history(name)), default=0) + 1
    return {
        "seq": seq,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "alias": alias,
        "from": aliases(name).get(alias),
        "to": str(version),
        "user": _user(),
        **record,
    }


def _write_entry(name: str, entry: dict[str, Any]) -> None:
    import mlflow

    key = f"{HISTORY_PREFIX}{entry['seq']:06d}"
    mlflow.MlflowClient().set_registered_model_tag(name, key, json.dumps(entry))


def record_alias_move(name: str, alias: str, version: str, **record: Any) -> dict[str, Any]:
    """Take the registry lock, move ``alias`` and record it."""
    with registry_lock(name):
        return move_alias_locked(name, alias, version, **record)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")


def list_versions(name: str) -> list[Any]:
    """Every registered version of ``name`` (ModelVersion objects), newest first."""
    import mlflow

    client = mlflow.MlflowClient()
    found, token = [], None
    while True:
        page = client.search_model_versions(f"name = '{name}'", page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            break
    return sorted(found, key=lambda v: int(v.version), reverse=True)
