"""The SQLite tracking store: its file, and one line (not a traceback) when the disk refuses to
grow or write it.

MLflow reaches SQLite through SQLAlchemy, which wraps ``sqlite3.OperationalError`` (and MLflow
may wrap that again): the cause is found by its message anywhere in the exception's chain.
"""

from __future__ import annotations

from pathlib import Path

from sluice.errors import SluiceError

# SQLite's messages for SQLITE_FULL and SQLITE_READONLY, and what to do about each.
_REFUSALS = {
    "database or disk is full": ("the disk is full (SQLITE_FULL)", "free space on that disk"),
    "attempt to write a readonly database": (
        "it is read-only (SQLITE_READONLY)",
        "make the file and its folder writable by you",
    ),
}


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:`` URI (None for any other store)."""
    if not uri.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    return Path(database) if database and database != ":memory:" else None


def store_refused(exc: BaseException) -> SluiceError | None:
    """The one-line error for a write the SQLite store in use refused (None: another failure).
    Registered by :func:`sluice.tracking.store.use_store`."""
    import mlflow

    path = sqlite_path(mlflow.get_tracking_uri())
    if path is None:
        return None
    for message in _chain_messages(exc):
        for text, (why, fix) in _REFUSALS.items():
            if text in message:
                return SluiceError(
                    f"cannot write the MLflow store {path}: {why}; {fix}, then re-run the "
                    "stage (a run it left RUNNING is then marked FAILED)"
                )
    return None


def _chain_messages(exc: BaseException) -> list[str]:
    """The messages of ``exc`` and of every exception it was raised from or during."""
    seen, messages = set(), []
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        messages.append(str(current))
        current = current.__cause__ or current.__context__
    return messages
