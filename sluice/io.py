"""Files at the edges: stage tables and JSON (written atomically, see sluice.atomic), hashes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sluice.atomic import atomic_path
from sluice.errors import SluiceError

if TYPE_CHECKING:  # pandas loads where tables are read or written, not in every stage's start
    import pandas as pd


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
