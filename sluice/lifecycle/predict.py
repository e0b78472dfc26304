"""Batch prediction: a raw CSV in, a CSV of predicted labels and class probabilities out.

Output columns: the ``keep`` columns, ``predicted`` (for a binary model that carries a decision
threshold, the positive class where its probability reaches the threshold, else the most probable
class), then ``prob_<class>`` per class: the model's calibrated probabilities.

The input is read in chunks (memory stays flat for any file size) and only the model's feature
columns (plus any ``keep`` columns) are parsed; other columns are ignored. The output is written
to a temporary sibling and renamed at the end, so a failed run never leaves a partial file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

from sluice.atomic import atomic_path
from sluice.data.datasets import decode_error_message
from sluice.errors import SluiceError
from sluice.model.bundle import PREDICTED, Classifier
from sluice.progress import Phase

log = logging.getLogger(__name__)

PROB_PREFIX = "prob_"


def output_columns(classifier: Classifier, keep: Sequence[str] = ()) -> list[str]:
    """Columns of the output: ``keep`` columns, ``predicted``, then ``prob_<class>`` per class."""
    return [*keep, PREDICTED, *(f"{PROB_PREFIX}{c}" for c in classifier.classes)]


def score_frame(
    classifier: Classifier, frame: pd.DataFrame, keep: Sequence[str] = (), source: str = "input"
) -> pd.DataFrame:
    """Predicted label (under the model's decision threshold, if it has one) and one probability
    column per class for each row of ``frame``."""
    prob = classifier.predict_proba(frame, source)  # (n, K)
    out = frame[list(keep)].reset_index(drop=True)
    out[PREDICTED] = classifier.predict_labels(prob)
    for i, name in enumerate(classifier.classes):
        out[f"{PROB_PREFIX}{name}"] = prob[:, i]
    return out


def predict_csv(
    classifier: Classifier,
    input_path: str | Path,
    output_path: str | Path,
    chunk_size: int = 50_000,
    keep: Sequence[str] = (),
    progress: bool = True,
) -> int:
    """Score every row of ``input_path`` into ``output_path``; return the number of rows.

    Args:
        classifier: the model (raw feature columns in, probabilities out).
        input_path: CSV with the training feature columns; extra columns are ignored.
        output_path: CSV to write (atomically).
        chunk_size: rows read and scored at a time.
        keep: input columns copied to the output first (e.g. an id column).
        progress: show the rows scored on stderr (a bar on a terminal, else log lines).

    Raises:
        SluiceError: unreadable input, missing feature or ``keep`` columns (named), bad values.
    """
    input_path = Path(input_path)
    _check_columns(classifier, input_path, keep)
    rows = 0
    with atomic_path(output_path) as tmp, tmp.open("w", newline="") as fh:
        with Phase(f"predict {input_path.name}", unit="rows", show=progress) as bar:
            for chunk in _chunks(classifier, input_path, keep, chunk_size):
                if chunk.empty:  # a header-only file still yields one empty chunk
                    continue
                source = f"{input_path} (rows {rows + 1}-{rows + len(chunk)})"
                score_frame(classifier, chunk, keep, source).to_csv(
                    fh, header=rows == 0, index=False
                )
                rows += len(chunk)
                bar.advance(len(chunk))
        if rows == 0:
            pd.DataFrame(columns=output_columns(classifier, keep)).to_csv(fh, index=False)
    log.debug("scored %d rows of %s into %s", rows, input_path, output_path)
    return rows


def _check_columns(classifier: Classifier, path: Path, keep: Sequence[str]) -> None:
    """Refuse a file missing feature columns (named, by the preprocessor) or ``keep`` columns."""
    header = next(_read(path, nrows=0))
    classifier.preprocessor.transform(header, str(path))  # raises naming the missing columns
    missing = [c for c in keep if c not in header.columns]
    if missing:
        raise SluiceError(f"{path}: --keep column(s) {', '.join(map(repr, missing))} not found")


def _chunks(
    classifier: Classifier, path: Path, keep: Sequence[str], chunk_size: int
) -> Iterator[pd.DataFrame]:
    """The needed columns in chunks; categorical, text and kept columns stay strings, as in
    training."""
    features = classifier.feature_columns
    usecols = list(dict.fromkeys([*features, *keep]))
    pre = classifier.preprocessor
    text = {c: str for c in [*pre.categorical, *pre.text_columns, *keep]}
    yield from _read(path, usecols=usecols, dtype=text, chunksize=chunk_size)


def _read(path: Path, **kwargs) -> Iterator[pd.DataFrame]:
    """``pd.read_csv`` as an iterator of frames, with one-line errors naming the file."""
    if not path.is_file():
        raise SluiceError(f"{path} not found (or not a file); give the CSV to score")
    try:
        if "chunksize" not in kwargs:
            yield pd.read_csv(path, **kwargs)
            return
        with pd.read_csv(path, **kwargs) as reader:
            yield from reader
    except pd.errors.EmptyDataError:
        raise SluiceError(f"{path} is empty; give a CSV with a header row") from None
    except pd.errors.ParserError as exc:
        first = str(exc).strip().splitlines()[0]
        raise SluiceError(f"{path} is not a well-formed CSV ({first})") from None
    except UnicodeDecodeError as exc:
        raise SluiceError(decode_error_message(path, exc)) from None
