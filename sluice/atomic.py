"""Atomic, durable writes: an interrupted or refused write leaves the old output or the new one,
never half of one, and never deletes a path sluice did not write."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from sluice.errors import SluiceError, write_errno, write_failure


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
    # A group of one, or one of the running outputs_together() block's outputs.
    with outputs_together(), _staged(path, lambda: _refuse_directory(path), os.replace) as target:
        yield target


@dataclass
class _Staged:
    """An output written inside :func:`outputs_together`, waiting to be moved into place."""

    target: Path  # the flushed temporary
    path: Path
    check: Callable[[], None]  # refuses ``path`` if it became something else meanwhile
    move: Callable[[Path, Path], None]


# The outputs of the running outputs_together() block (None outside one).
_STAGED: ContextVar[list[_Staged] | None] = ContextVar("sluice_staged", default=None)


@contextmanager
def outputs_together() -> Iterator[None]:
    """Write a stage's outputs as one: every :func:`atomic_path` / :func:`atomic_dir` write
    inside the block (``write_table``, ``write_json``, a model bundle) goes to a flushed
    temporary, and only when the block ends without an error are they all moved over their
    paths, one rename each (a single write outside a block is a block of one).

    A failure anywhere (a full disk at the third file, an error between two writes) leaves
    every output as it was, never new splits beside old ones; the temporaries are removed.

    Raises:
        SluiceError: as :func:`atomic_path`, naming the output that could not be written.
    """
    if _STAGED.get() is not None:  # nested: the outer block moves them
        yield
        return
    staged: list[_Staged] = []
    token = _STAGED.set(staged)
    try:
        yield
        for out in staged:
            out.check()  # e.g. a directory made in a file output's place meanwhile
        for out in staged:
            with _refused_writes(out.path):
                out.move(out.target, out.path)
        for out in {out.path.parent: out for out in staged}.values():
            with _refused_writes(out.path):
                _fsync(out.path.parent)
    finally:
        _STAGED.reset(token)
        for out in staged:
            shutil.rmtree(out.target.parent, ignore_errors=True)


@contextmanager
def _staged(
    path: Path, check: Callable[[], None], move: Callable[[Path, Path], None]
) -> Iterator[Path]:
    """A flushed temporary for ``path`` that the running :func:`outputs_together` moves."""
    staged = _STAGED.get()
    assert staged is not None
    with _refused_writes(path):
        target = _new_sibling(path)
        staged.append(_Staged(target, path, check, move))
        yield target
        _fsync_tree(target)


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
    with (
        outputs_together(),
        _staged(path, lambda: _refuse_foreign(path, owned), _swap_in) as target,
    ):
        yield target


def _swap_in(target: Path, path: Path) -> None:
    """Move directory ``target`` to ``path``, exchanging it with an existing one."""
    if path.exists():
        _exchange(target, path)  # the old version is now at ``target`` and goes with it
    else:
        os.replace(target, path)


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


def _new_sibling(path: Path) -> Path:
    """``path``'s name inside a fresh hidden folder beside it (outputs_together removes it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)) / path.name


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
