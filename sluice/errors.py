"""The one user-facing error type, and the wrapper that turns it into a one-line message."""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class SluiceError(Exception):
    """A mistake the user can fix: the message says what, where, and what to do."""


class Terminated(BaseException):
    """SIGTERM, raised where the stage happens to be so that every ``with`` block unwinds.

    An MLflow run then ends as FAILED and temporary files are removed, as on Ctrl-C. It derives
    from BaseException so that no ``except Exception`` swallows it.
    """


EXIT_TERMINATED = 128 + signal.SIGTERM


# Signals whose exception was raised; CPython swallows an exception raised while a finaliser
# or a weakref callback runs ("Exception ignored in ..."), so a Ctrl-C landing there is lost
# unless a loop asks again (:func:`raise_pending_signal`).
_PENDING: list[BaseException] = []


def _raise_terminated(signum: int, frame: object) -> None:
    _PENDING.append(Terminated(signum))
    raise Terminated(signum)


def _raise_interrupted(signum: int, frame: object) -> None:
    _PENDING.append(KeyboardInterrupt())
    raise KeyboardInterrupt


def raise_pending_signal() -> None:
    """Raise again a Ctrl-C or SIGTERM whose first exception was swallowed: long loops call
    this once per step, so a stage never trains on after it was told to stop."""
    if _PENDING:
        raise _PENDING[0]


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` and Ctrl-C KeyboardInterrupt, both
    remembered for :func:`raise_pending_signal` (main thread only; then restored). A Ctrl-C
    that the parent made this process ignore stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    interrupt = signal.getsignal(signal.SIGINT)
    if interrupt is signal.default_int_handler:
        signal.signal(signal.SIGINT, _raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if interrupt is signal.default_int_handler:
            signal.signal(signal.SIGINT, interrupt)
        _PENDING.clear()


def debugging() -> bool:
    """True when the user asked for tracebacks (``SLUICE_DEBUG=1``)."""
    return os.environ.get("SLUICE_DEBUG", "") not in ("", "0", "false")


def report_errors(main: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``main``; a SluiceError becomes ``error: <message>`` on stderr and exit code 1.

    Any other exception is a bug and keeps its traceback. Ctrl-C exits with 130 and SIGTERM
    with 143, quietly, after the stage's ``with`` blocks have cleaned up.
    """

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
        try:
            with _sigterm_raises():
                return main(*args, **kwargs)
        except SluiceError as exc:
            if debugging():
                raise
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None
        except Terminated:
            print("terminated", file=sys.stderr)
            raise SystemExit(EXIT_TERMINATED) from None

    return wrapper
