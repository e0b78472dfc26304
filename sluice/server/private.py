"""Files only their owner may read, written so that they never are anything else."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sluice.errors import SluiceError


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read: a new 0600 file renamed over ``path``.

    A file that existed with wider permissions is replaced, never reused, and an interrupted
    write leaves the old one.

    Raises:
        SluiceError: the file is not 0600 after writing (checked, not assumed).
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    mode = path.stat().st_mode & 0o777
    if mode != 0o600:
        raise SluiceError(
            f"{path} has permissions {mode:o} right after it was written as 600; keep the "
            "server's folder on a file system that honours permissions"
        )
