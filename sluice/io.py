"""Files at the edges: atomic writes, so an interrupted stage never leaves a half-written output."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sluice.errors import SluiceError, write_errno, write_failure

if TYPE_CHECKING:  # pandas loads where tables are read or written, not in every stage's start
    import pandas as pd


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of file ``path``; on success move it durably over ``path``.

    The new file is flushed to disk before the rename and the folder entry after it, so a crash
    leaves the old file or the new one. On failure the temporary is removed and ``path`` untouched.

    Raises:
        SluiceError: ``path`` is an existing directory (never replaced by a file, never deleted);
            or the OS refused the write (a full disk, a read-only folder), naming ``path``.
    """
    path = Path(path)
    _refuse_directory(path)
    with _refused_writes(path), _sibling(path) as target:
        yield target
        _refuse_directory(path)  # made while the caller was writing
        _fsync_tree(target)
        os.replace(target, path)
        _fsync(path.parent)


@contextmanager
def atomic_dir(path: str | Path, owned: Callable[[Path], bool]) -> Iterator[Path]:
    """Yield a temporary sibling for directory ``path``; on success swap it in durably.

    An existing ``path`` is replaced only when ``owned(path)`` says it is an output of the same
    kind (e.g. a model bundle); the swap is one atomic exchange of the two folder entries where
    the file system supports it, so there is no moment without either version.

    Raises:
        SluiceError: ``path`` exists and is not ``owned`` (left untouched); or the OS refused
            the write (a full disk, a read-only folder), naming ``path``.
    """
    path = Path(path)
    _refuse_foreign(path, owned)
    with _refused_writes(path), _sibling(path) as target:
        yield target
        _refuse_foreign(path, owned)
        _fsync_tree(target)
        if path.exists():
            _exchange(target, path)  # the old version is now at ``target`` and goes with it
        else:
            os.replace(target, path)
        _fsync(path.parent)


@contextmanager
def _refused_writes(path: Path) -> Iterator[None]:
    """A write to ``path`` (or its temporary) that the OS refused becomes one line naming
    ``path``; the temporary is gone by then and ``path`` is as it was."""
    try:
        yield
    except Exception as exc:  # OSError, or a library's own (pyarrow, safetensors) naming one
        number = write_errno(exc)
        if number is None:
            raise
        raise write_failure(path, number) from None


def check_writable(folders: list[Path]) -> None:
    """Create and remove a small file in each folder (or its nearest existing parent), so that
    a read-only or full disk stops a stage in one line before it works, not at its end.

    Raises:
        SluiceError: a folder cannot be written (naming it and what to do), or is a file.
    """
    for folder in folders:
        found = folder
        while not found.exists() and found != found.parent:
            found = found.parent
        if not found.is_dir():
            raise SluiceError(
                f"cannot write into {folder}: {found} is not a folder; move it away, then re-run"
            )
        try:
            before = found.stat()
            fd, probe = tempfile.mkstemp(prefix=".sluice-probe.", dir=found)
            try:
                os.write(fd, b"\0" * 4096)  # a full disk refuses data, not always a name
            finally:
                os.close(fd)
                os.unlink(probe)
            # The folder's times as they were: a stage that stops before its work changed nothing
            # (only the folder's owner may set them: another user's shared folder keeps the new).
            with contextlib.suppress(PermissionError):
                os.utime(found, ns=(before.st_atime_ns, before.st_mtime_ns))
        except OSError as exc:
            number = write_errno(exc)
            if number is None:
                raise
            raise write_failure(folder, number, "cannot write into") from None


@contextmanager
def _sibling(path: Path) -> Iterator[Path]:
    """A name in a fresh hidden folder beside ``path``, removed (with what is left) at the end."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp / path.name
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _refuse_directory(path: Path) -> None:
    if path.is_dir():
        raise SluiceError(
            f"{path} is a directory; refusing to replace it with a file (nothing was written): "
            f"give a file path, e.g. {path / 'predictions.csv'}"
        )


def _refuse_foreign(path: Path, owned: Callable[[Path], bool]) -> None:
    if (path.exists() or path.is_symlink()) and (path.is_symlink() or not owned(path)):
        raise SluiceError(
            f"{path} exists and is not an output sluice wrote; refusing to replace it "
            "(nothing was written): move it away or choose another path"
        )


def _exchange(new: Path, old: Path) -> None:
    """Swap two folder entries atomically (Linux ``renameat2(RENAME_EXCHANGE)``).

    Where the call is missing or the file system refuses it, the old entry is moved aside into
    ``new``'s place first: a moment without ``old`` that the atomic exchange avoids.
    """
    if _renameat2 is not None:
        at_fdcwd, rename_exchange = -100, 2
        if _renameat2(at_fdcwd, os.fsencode(new), at_fdcwd, os.fsencode(old), rename_exchange) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), str(old))
    aside = new.with_name(new.name + ".old")
    os.rename(old, aside)
    os.rename(new, old)
    os.rename(aside, new)


def _load_renameat2() -> Callable[..., int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # not glibc >= 2.28, or not Linux
        return None


_renameat2 = _load_renameat2() if sys.platform.startswith("linux") else None


def _fsync_tree(path: Path) -> None:
    """Flush a file, or every file and folder under a directory, to disk."""
    if path.is_dir():
        for root, _dirs, files in os.walk(path):
            for name in files:
                _fsync(Path(root) / name)
            _fsync(Path(root))
    else:
        _fsync(path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file written by an earlier stage."""
    return json.loads(_existing(path).read_text())


def write_table(path: str | Path, frame: pd.DataFrame) -> None:
    """Write a stage's table as Parquet (or CSV when the suffix says so), atomically."""
    with atomic_path(path) as tmp:
        if Path(path).suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            # Dictionary encoding only where values repeat: on float columns it is tried, found
            # useless and dropped, which nearly doubles the time to write a large table.
            from pandas.api.types import is_float_dtype

            floats = {c for c in frame.columns if is_float_dtype(frame[c])}
            dictionary = [str(c) for c in frame.columns if c not in floats]
            frame.to_parquet(tmp, index=False, use_dictionary=dictionary)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a table written by :func:`write_table`."""
    import pandas as pd

    path = _existing(path)
    return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)


def file_md5(path: str | Path) -> str:
    """MD5 of a file's bytes: the same hash DVC records for a file output in dvc.lock."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, used to refuse tampered model files."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise SluiceError(f"{path} not found; run the stage that makes it (dvc repro)")
    return path


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
