"""Extra texts for the bilstm's language-model pretraining (``data.unlabelled_path``).

``clean`` reads the unlabelled CSV, normalises its text columns as it normalises the table's
(NFKC, single spaces, a missing text is ""), and writes them beside the cleaned table. So the
CSV is read, and refused in one line, by the first stage, and the tune and train stages depend
on that output: editing the CSV under ``data/raw`` re-runs clean, and tune and train re-run when
the texts changed. The rows never enter the splits: they are only ever pretraining texts.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from sluice.data.columns import as_text
from sluice.data.memory import check_read_memory
from sluice.data.text import normalize_text
from sluice.errors import SluiceError

log = logging.getLogger(__name__)


def normalized_texts(values: pd.Series) -> list[str]:
    """A text column's values as ``clean`` writes them: NFKC, single spaces; missing -> ""."""
    return list(as_text(values).map(normalize_text, na_action="ignore").fillna(""))


def unlabelled_texts(
    path: str | None, text_columns: list[str], max_memory_gb: float | None = None
) -> pd.DataFrame:
    """The unlabelled CSV's ``text_columns``, normalised (no rows when ``path`` is None or the
    table has no text column). Nothing about them goes into the cleaning report, which every
    later stage depends on: new unlabelled texts re-run only the stages that read them.
    The CSV is held to the same memory budget as the table (``data.max_memory_gb``).

    Raises:
        SluiceError: as :func:`read_unlabelled`.
    """
    if path is None:
        return pd.DataFrame({c: pd.Series(dtype=str) for c in text_columns})
    if not text_columns:
        log.info("data.unlabelled_path %s is ignored: the table has no text column", path)
        return pd.DataFrame()
    frame = read_unlabelled(path, text_columns, max_memory_gb)
    texts = pd.DataFrame({c: normalized_texts(frame[c]) for c in text_columns})
    log.info("clean: %d unlabelled texts from %s, for pretraining", len(texts), path)
    return texts


def read_unlabelled(
    path: str, columns: list[str], max_memory_gb: float | None = None
) -> pd.DataFrame:
    """The unlabelled CSV's text columns (named as the training table's), as strings; other
    columns are skipped while it is read.

    Raises:
        SluiceError: one line naming the file (and the column) when it is missing, unreadable,
            not UTF-8, or lacks one of ``columns``; or when reading it would need more memory
            than ``max_memory_gb`` (:func:`sluice.data.memory.check_read_memory`).
    """
    where = f"data.unlabelled_path {path}"
    if not Path(path).is_file():
        raise SluiceError(f"{where}: no such file; give a CSV of texts or set it to null")
    check_read_memory(Path(path), max_memory_gb)
    try:
        frame = pd.read_csv(
            path, dtype=str, encoding="utf-8", keep_default_na=False, usecols=columns.__contains__
        )
    except UnicodeDecodeError as exc:
        raise SluiceError(
            f"{where}: not UTF-8 text (byte {exc.start}); save the file as UTF-8"
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SluiceError(f"{where}: cannot be read as CSV ({reason}); fix the file") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SluiceError(
            f"{where}: no column '{missing[0]}'; the unlabelled CSV needs the training table's "
            f"text columns ({', '.join(repr(c) for c in columns)})"
        )
    return frame[columns]
