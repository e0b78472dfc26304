"""The one user-facing error type, and the wrapper that turns it into a one-line message."""

from __future__ import annotations

import functools
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class SluiceError(Exception):
    """A mistake the user can fix: the message says what, where, and what to do."""


# ``scheme://user:password@host``: the password of a URL (tracking server, database).
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):[^@/\s]+@")


def mask_secrets(text: str) -> str:
    """``text`` with every URL's password replaced by ``***``, so that no message, log line
    or tracked param shows one: ``postgresql://u:***@127.0.0.1/db``."""
    return _URL_PASSWORD.sub(r"\1:***@", text)


class _MaskSecrets(logging.Filter):
    """Masks URL passwords in every log record a handler emits."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class Terminated(BaseException):
    """SIGTERM, raised where the stage happens to be so that every ``with`` block unwinds.

    An MLflow run then ends as FAILED and temporary files are removed, as on Ctrl-C. It derives
    from BaseException so that no ``except Exception`` swallows it.
    """


EXIT_TERMINATED = 128 + signal.SIGTERM


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (main thread only; then restored)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
        for handler in logging.getLogger().handlers:
            handler.addFilter(_MaskSecrets())
        try:
            with _sigterm_raises():
                return main(*args, **kwargs)
        except SluiceError as exc:
            if debugging():
                raise
            print(f"error: {mask_secrets(str(exc))}", file=sys.stderr)
            raise SystemExit(1) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None
        except Terminated:
            print("terminated", file=sys.stderr)
            raise SystemExit(EXIT_TERMINATED) from None

    return wrapper
