"""The one user-facing error type, and the wrapper that turns it into a one-line message."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import Any


class SluiceError(Exception):
    """A mistake the user can fix: the message says what, where, and what to do."""


def debugging() -> bool:
    """True when the user asked for tracebacks (``SLUICE_DEBUG=1``)."""
    return os.environ.get("SLUICE_DEBUG", "") not in ("", "0", "false")


def report_errors(main: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``main``; a SluiceError becomes ``error: <message>`` on stderr and exit code 1.

    Any other exception is a bug and keeps its traceback. Ctrl-C exits with 130 quietly.
    """

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
        try:
            return main(*args, **kwargs)
        except SluiceError as exc:
            if debugging():
                raise
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper
