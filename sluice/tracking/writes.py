"""A registry change as a list of writes, each with the write that undoes it.

:func:`apply_writes` applies them in order; when one fails, the earlier ones are undone newest
first (best effort, and the error says what could not be undone), so the registry is left as it
was, or, when an undo fails too, the one-line error names what remains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sluice.errors import SluiceError
from sluice.tracking.lock import mlflow_cause


@dataclass(frozen=True)
class Write:
    """One registry write, what it is (for messages), and the write that undoes it."""

    what: str
    do: Callable[[], None]
    undo: Callable[[], None]


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
