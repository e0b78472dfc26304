"""The one user-facing error type, and the wrapper that turns it into a one-line message."""

from __future__ import annotations

import errno
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


# Why a write fails for reasons outside sluice (the disk, the folder's mount or permissions),
# and what to do about each.
WRITE_ERRNOS = {
    errno.ENOSPC: "free space on that disk",
    errno.EDQUOT: "free space within your disk quota",
    errno.EFBIG: "raise the file size limit (ulimit -f) or free space",
    errno.EROFS: "that file system is read-only: remount it writable or run from a writable copy",
    errno.EACCES: "make that folder writable by you",
    errno.EPERM: "make that folder writable by you",
}
# How libraries that do their own IO (pyarrow, safetensors) spell an OS error in a message.
_ERRNO_IN_TEXT = re.compile(r"(?:\[errno |os error )(\d+)", re.IGNORECASE)


def write_errno(exc: BaseException) -> int | None:
    """The OS error number of a failed write, if it is one of :data:`WRITE_ERRNOS`."""
    number = exc.errno if isinstance(exc, OSError) else None
    if number is None:
        found = _ERRNO_IN_TEXT.search(str(exc))
        number = int(found.group(1)) if found else None
    return number if number in WRITE_ERRNOS else None


def write_failure(path: object, number: int, what: str = "cannot write") -> SluiceError:
    """The one line for a write to ``path`` that the OS refused with ``number``."""
    return SluiceError(
        f"{what} {path}: {os.strerror(number)} ({errno.errorcode[number]}); "
        f"{WRITE_ERRNOS[number]}, then re-run"
    )


# Turn a library's exception into a user-facing one (None: not theirs, keep the traceback).
# An adapter layer registers its own (e.g. sluice.tracking: a tracking server that went away),
# so this base module needs no knowledge of the libraries above it.
_translators: list[Callable[[BaseException], SluiceError | None]] = []


def add_translator(translate: Callable[[BaseException], SluiceError | None]) -> None:
    """Register ``translate`` for :func:`report_errors` (once; later calls are no-ops)."""
    if translate not in _translators:
        _translators.append(translate)


def _translated(exc: BaseException) -> SluiceError | None:
    """A one-line error for an exception that is no bug: a refused write, or a translator's."""
    for translate in _translators:
        found = translate(exc)
        if found is not None:
            return found
    number, where = write_errno(exc), getattr(exc, "filename", None)
    if number is None or (number in (errno.EACCES, errno.EPERM) and not where):
        return None  # refused without a file: not a folder's permissions
    return write_failure(where or f"a file under {os.getcwd()}", number, "cannot read or write")


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


def _configure_logging() -> None:
    """Log records as bare messages on stderr (through rich on a terminal, so that they print
    above progress bars: :mod:`sluice.progress`), every handler masking URL passwords."""
    from sluice.progress import log_handler

    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[log_handler()])
    for handler in logging.getLogger().handlers:
        handler.addFilter(_MaskSecrets())


def report_errors(main: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``main``; a SluiceError becomes ``error: <message>`` on stderr and exit code 1.

    A write the OS refused (a full disk, a read-only folder: :data:`WRITE_ERRNOS`) and what a
    registered translator recognises (a tracking server that went away) are reported the same
    way. Any other exception is a bug and keeps its traceback. Ctrl-C exits with 130 and
    SIGTERM with 143, quietly, after the stage's ``with`` blocks have cleaned up.
    """

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _configure_logging()
        try:
            with _sigterm_raises():
                return main(*args, **kwargs)
        except SluiceError as exc:
            if debugging():
                raise
            _print_error(exc)
            raise SystemExit(1) from None
        except Exception as exc:
            found = None if debugging() else _translated(exc)
            if found is None:
                raise
            _print_error(found)
            raise SystemExit(1) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None
        except Terminated:
            print("terminated", file=sys.stderr)
            raise SystemExit(EXIT_TERMINATED) from None

    return wrapper


def _print_error(exc: SluiceError) -> None:
    print(f"error: {mask_secrets(str(exc))}", file=sys.stderr)
