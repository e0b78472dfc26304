"""Aliases and their history, kept in the MLflow registry itself (tags), under a registry lock.

The lock is a registered model named ``<name>.lock``: creating a registered model is atomic in
every MLflow store (a unique key), so only one process holds it, on SQLite, PostgreSQL or a
tracking server alike. History entries are tags ``sluice.history.000001`` ... on the registered
model, each a JSON record of one alias move.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
            client.create_registered_model(lock_name, tags={"sluice.lock_owner": owner},
                                           description="sluice registry lock (transient)")
            break
        except MlflowException as exc:
            if "already exists" not in str(exc).lower() and "ALREADY_EXISTS" not in str(exc):
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


def _break_if_stale(client, lock_name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        held = client.get_registered_model(lock_name)
    except MlflowException:
        return
    age_s = time.time() - held.creation_timestamp / 1000.0
    if age_s > STALE_LOCK_S:
        log.warning("breaking stale registry lock %s (%.0f s old)", lock_name, age_s)
        try:
            client.delete_registered_model(lock_name)
        except MlflowException:
            pass


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

    client = mlflow.MlflowClient()
    current = aliases(name).get(alias)
    seq = len(read_history(name)) + 1
    entry = {
        "seq": seq,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "alias": alias,
        "from": current,
        "to": str(version),
        "user": _user(),
        **record,
    }
    client.set_registered_model_alias(name, alias, str(version))
    client.set_registered_model_tag(name, f"{HISTORY_PREFIX}{seq:06d}", json.dumps(entry))
    return entry


def record_alias_move(name: str, alias: str, version: str, **record: Any) -> dict[str, Any]:
    """Take the registry lock, move ``alias`` and record it."""
    with registry_lock(name):
        return move_alias_locked(name, alias, version, **record)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")
